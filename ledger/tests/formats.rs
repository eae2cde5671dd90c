//! Tile paths, entry bundles and leaf records.

use vigil_ledger::leaf::{body_commitment, LeafError, LeafRecord};
use vigil_ledger::tile::{
    decode_entry_bundle, encode_entry_bundle, encode_index, entries_path, parse_tile_path,
    tile_path, try_encode_entry_bundle, TilePath,
};

#[test]
fn index_encoding() {
    assert_eq!(encode_index(0), "000");
    assert_eq!(encode_index(5), "005");
    assert_eq!(encode_index(999), "999");
    assert_eq!(encode_index(1000), "x001/000");
    assert_eq!(encode_index(1234067), "x001/x234/067");
    assert_eq!(tile_path(0, 1234067, 256), "tile/0/x001/x234/067");
    assert_eq!(tile_path(1, 2, 8), "tile/1/002.p/8");
    assert_eq!(entries_path(1234067, 256), "tile/entries/x001/x234/067");
    assert_eq!(entries_path(0, 1), "tile/entries/000.p/1");
}

#[test]
fn tile_path_round_trip() {
    for index in [0u64, 1, 999, 1000, 1234067, 1_000_000, u64::MAX] {
        for width in [1u64, 8, 255, 256] {
            for level in [0u8, 1, 7] {
                let p = tile_path(level, index, width);
                assert_eq!(
                    parse_tile_path(&p).unwrap(),
                    TilePath::Hashes {
                        level,
                        index,
                        width
                    },
                    "{p}"
                );
            }
            let p = entries_path(index, width);
            assert_eq!(
                parse_tile_path(&p).unwrap(),
                TilePath::Entries { index, width },
                "{p}"
            );
        }
    }
}

#[test]
fn bad_tile_paths_rejected() {
    for p in [
        "",
        "tile",
        "tile/0",
        "tile/0/",
        "tiles/0/000",
        "tile/00/000",
        "tile/01/000",
        "tile/8/000",
        "tile/256/000",
        "tile/-1/000",
        "tile/x/000",
        "tile/0/0",
        "tile/0/0000",
        "tile/0/00a",
        "tile/0/x000/001",
        "tile/0/x001",
        "tile/0/001/002",
        "tile/0/x1/002",
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/0/000.p/08",
        "tile/0/000.p/",
        "tile/0/000.p/8/",
        "tile/0/000.p",
        "tile/0/x018/x446/x744/x073/x709/x551/616",
        "tile/0/x001/x000/x000/x000/x000/x000/x000/000",
        "tile/entries/",
        "tile/entries/0",
        "tile/entries/000.p/999",
        "tile/data/000",
        "/tile/0/000",
    ] {
        assert!(parse_tile_path(p).is_err(), "{p:?} accepted");
    }
}

#[test]
fn entry_bundles() {
    let entries: Vec<&[u8]> = vec![b"", b"a", &[7u8; 300]];
    let b = encode_entry_bundle(&entries);
    assert_eq!(&b[..5], &[0, 0, 0, 1, b'a']);
    assert_eq!(decode_entry_bundle(&b).unwrap(), entries);
    assert_eq!(decode_entry_bundle(&[]).unwrap(), Vec::<Vec<u8>>::new());
    assert!(decode_entry_bundle(&b[..b.len() - 1]).is_err());
    assert!(decode_entry_bundle(&[0]).is_err());
    assert!(decode_entry_bundle(&[0, 2, 1]).is_err());
    assert!(try_encode_entry_bundle(&[&vec![0u8; 70_000]]).is_err());
}

fn sample() -> LeafRecord {
    LeafRecord {
        event_id: [0xab; 16],
        time_unix_nanos: -42,
        kind: "pg.query".into(),
        commitment: body_commitment(&[1; 32], b"select 1"),
        position: None,
    }
}

#[test]
fn leaf_round_trip_and_layout() {
    let r = sample();
    let b = r.encode();
    assert_eq!(b.len(), 1 + 16 + 8 + 1 + 8 + 32);
    assert_eq!(b[0], 1);
    assert_eq!(&b[17..25], &(-42i64).to_be_bytes());
    assert_eq!(b[25], 8);
    assert_eq!(LeafRecord::decode(&b).unwrap(), r);
    // Version 2: the stream position follows the commitment.
    let position = vigil_ledger::stream_position("0190a0a0-0000-7000-8000-000000000001", 3);
    let v2 = LeafRecord {
        position: Some(position),
        ..sample()
    };
    let b2 = v2.encode();
    assert_eq!(b2.len(), b.len() + 32);
    assert_eq!(b2[0], 2);
    assert_eq!(&b2[b.len()..], &position);
    assert_eq!(LeafRecord::decode(&b2).unwrap(), v2);
    // A version 1 leaf with 32 more bytes, or a version 2 leaf without
    // them, is refused: the version says which layout it is.
    let mut v1_long = b.clone();
    v1_long.extend_from_slice(&position);
    assert!(LeafRecord::decode(&v1_long).is_err());
    let mut v2_short = b.clone();
    v2_short[0] = 2;
    assert!(LeafRecord::decode(&v2_short).is_err());
    // Positions differ by stream and by number, and a stream id cannot be
    // shifted into the number.
    assert_ne!(
        position,
        vigil_ledger::stream_position("0190a0a0-0000-7000-8000-000000000001", 4)
    );
    assert_ne!(
        position,
        vigil_ledger::stream_position("0190a0a0-0000-7000-8000-000000000002", 3)
    );
    assert_ne!(
        vigil_ledger::stream_position("a", 0),
        vigil_ledger::stream_position("", 0)
    );
    let max = LeafRecord {
        kind: "k".repeat(64),
        ..sample()
    };
    assert_eq!(LeafRecord::decode(&max.encode()).unwrap(), max);
    let empty_kind = LeafRecord {
        kind: String::new(),
        ..sample()
    };
    assert_eq!(
        LeafRecord::decode(&empty_kind.encode()).unwrap(),
        empty_kind
    );
    assert!(LeafRecord {
        kind: "k".repeat(65),
        ..sample()
    }
    .try_encode()
    .is_err());
}

#[test]
fn leaf_decode_rejects_malformed() {
    let good = sample().encode();
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        b
    };
    let cases: Vec<(&str, Vec<u8>, LeafError)> = vec![
        ("empty", vec![], LeafError::Truncated(0)),
        (
            "version 0",
            with(&|b| b[0] = 0),
            LeafError::UnsupportedVersion(0),
        ),
        (
            "version 3",
            with(&|b| b[0] = 3),
            LeafError::UnsupportedVersion(3),
        ),
        (
            "version 2 without its position",
            with(&|b| b[0] = 2),
            LeafError::Truncated(good.len()),
        ),
        ("header only", good[..26].to_vec(), LeafError::Truncated(26)),
        (
            "short commitment",
            good[..good.len() - 1].to_vec(),
            LeafError::Truncated(good.len() - 1),
        ),
        (
            "trailing byte",
            with(&|b| b.push(0)),
            LeafError::TrailingBytes(1),
        ),
        (
            "kind len too long",
            with(&|b| b[25] = 65),
            LeafError::KindTooLong(65),
        ),
        (
            "kind len overruns",
            with(&|b| b[25] = 9),
            LeafError::Truncated(good.len()),
        ),
        (
            "kind len underruns",
            with(&|b| b[25] = 7),
            LeafError::TrailingBytes(1),
        ),
        (
            "kind not utf8",
            with(&|b| b[26] = 0xff),
            LeafError::KindNotUtf8,
        ),
    ];
    for (name, bytes, want) in cases {
        assert_eq!(LeafRecord::decode(&bytes), Err(want), "{name}");
    }
}

#[test]
fn commitment_is_salted_sha256() {
    use sha2::{Digest, Sha256};
    let want: [u8; 32] = Sha256::new()
        .chain_update([9u8; 32])
        .chain_update(b"body")
        .finalize()
        .into();
    assert_eq!(body_commitment(&[9; 32], b"body"), want);
    assert_ne!(body_commitment(&[8; 32], b"body"), want);
}
