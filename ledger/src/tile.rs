//! C2SP tlog-tiles (<https://c2sp.org/tlog-tiles>) path arithmetic and entry
//! bundles, so the log can be mirrored and audited by generic tile clients.
//!
//! Tiles have height 8: a tile at tile-level `L` holds up to 256 consecutive
//! node hashes of tree level `8 * L`.

/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels per tile level.
pub const TILE_HEIGHT: u8 = 8;
/// Highest tile level whose nodes exist in a tree of at most 2^64 - 1 leaves.
pub const MAX_TILE_LEVEL: u8 = 7;

/// Why a tile path or entry bundle was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum TileError {
    /// The path is not a canonical tile or entries path.
    #[error("invalid tile path {path:?}: {reason}")]
    BadPath {
        /// Offending path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An entry bundle does not parse.
    #[error("malformed entry bundle: {0}")]
    BadBundle(&'static str),
    /// An entry is too long for the u16 length prefix.
    #[error("entry of {0} bytes does not fit a bundle (max 65535)")]
    EntryTooLong(usize),
}

/// A parsed tile path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TilePath {
    /// `tile/<L>/<N>[.p/<W>]`: hashes of tree level `8L`.
    Hashes {
        /// Tile level `L`.
        level: u8,
        /// Tile index `N`.
        index: u64,
        /// Number of hashes (256 for a full tile).
        width: u64,
    },
    /// `tile/entries/<N>[.p/<W>]`: an entry bundle.
    Entries {
        /// Bundle index `N`.
        index: u64,
        /// Number of entries (256 for a full bundle).
        width: u64,
    },
}

/// Zero-padded 3-digit groups, all but the last prefixed with `x`:
/// `1234067 -> "x001/x234/067"`, `5 -> "005"`.
pub fn encode_index(n: u64) -> String {
    let mut groups = vec![n % 1000];
    let mut rest = n / 1000;
    while rest > 0 {
        groups.push(rest % 1000);
        rest /= 1000;
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .rev()
        .enumerate()
        .map(|(i, g)| {
            if i == last {
                format!("{g:03}")
            } else {
                format!("x{g:03}")
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn partial_suffix(width: u64) -> String {
    if width < TILE_WIDTH {
        format!(".p/{width}")
    } else {
        String::new()
    }
}

/// `tile/<L>/<N>`, or `tile/<L>/<N>.p/<W>` when `width < 256`
/// (`width` should be in `1..=256`).
pub fn tile_path(level: u8, index: u64, width: u64) -> String {
    format!(
        "tile/{level}/{}{}",
        encode_index(index),
        partial_suffix(width)
    )
}

/// `tile/entries/<N>`, or `tile/entries/<N>.p/<W>` when `width < 256`.
pub fn entries_path(index: u64, width: u64) -> String {
    format!(
        "tile/entries/{}{}",
        encode_index(index),
        partial_suffix(width)
    )
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Parses both the hash-tile and entries forms, full or partial. Rejects
/// non-canonical encodings (missing zero padding, leading `x000` groups,
/// leading zeros in `L` or `W`), `W` outside `1..=255`, and `L > 7`.
pub fn parse_tile_path(path: &str) -> Result<TilePath, TileError> {
    let bad = |reason| TileError::BadPath {
        path: path.to_owned(),
        reason,
    };
    let rest = path
        .strip_prefix("tile/")
        .ok_or_else(|| bad("must start with tile/"))?;
    let (kind, rest) = rest.split_once('/').ok_or_else(|| bad("missing index"))?;
    let level = if kind == "entries" {
        None
    } else {
        if !is_digits(kind) || (kind.len() > 1 && kind.starts_with('0')) {
            return Err(bad("level must be a canonical decimal number"));
        }
        let l: u8 = kind.parse().map_err(|_| bad("level out of range"))?;
        if l > MAX_TILE_LEVEL {
            return Err(bad("level out of range"));
        }
        Some(l)
    };
    let (index_part, width) = match rest.split_once(".p/") {
        None => (rest, TILE_WIDTH),
        Some((idx, w)) => {
            if !is_digits(w) || w.starts_with('0') {
                return Err(bad("partial width must be a canonical decimal number"));
            }
            let w: u64 = w.parse().map_err(|_| bad("partial width out of range"))?;
            if !(1..TILE_WIDTH).contains(&w) {
                return Err(bad("partial width must be in 1..=255"));
            }
            (idx, w)
        }
    };
    let groups: Vec<&str> = index_part.split('/').collect();
    let last = groups.len() - 1;
    let mut index: u64 = 0;
    for (i, g) in groups.iter().enumerate() {
        let digits = if i == last {
            *g
        } else {
            g.strip_prefix('x')
                .ok_or_else(|| bad("index groups before the last must start with x"))?
        };
        if digits.len() != 3 || !is_digits(digits) {
            return Err(bad("index groups must be exactly 3 digits"));
        }
        if i == 0 && last > 0 && digits == "000" {
            return Err(bad("index has a leading zero group"));
        }
        let v: u64 = digits.parse().expect("3 digits");
        index = index
            .checked_mul(1000)
            .and_then(|x| x.checked_add(v))
            .ok_or_else(|| bad("index overflows u64"))?;
    }
    Ok(match level {
        Some(level) => TilePath::Hashes {
            level,
            index,
            width,
        },
        None => TilePath::Entries { index, width },
    })
}

/// Like [`encode_entry_bundle`] but reports entries longer than 65535 bytes.
pub fn try_encode_entry_bundle(entries: &[&[u8]]) -> Result<Vec<u8>, TileError> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
    for e in entries {
        let len = u16::try_from(e.len()).map_err(|_| TileError::EntryTooLong(e.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Each entry as big-endian u16 length followed by its bytes.
///
/// # Panics
/// If an entry is longer than 65535 bytes (never the case for
/// [`crate::leaf::LeafRecord`] encodings); see [`try_encode_entry_bundle`].
pub fn encode_entry_bundle(entries: &[&[u8]]) -> Vec<u8> {
    try_encode_entry_bundle(entries).expect("entry longer than 65535 bytes")
}

/// Inverse of [`encode_entry_bundle`]; rejects truncated input.
pub fn decode_entry_bundle(bytes: &[u8]) -> Result<Vec<Vec<u8>>, TileError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let [a, b, tail @ ..] = rest else {
            return Err(TileError::BadBundle("truncated length prefix"));
        };
        let len = u16::from_be_bytes([*a, *b]) as usize;
        if tail.len() < len {
            return Err(TileError::BadBundle("truncated entry"));
        }
        out.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    Ok(out)
}
