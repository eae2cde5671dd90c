//! RFC 3339 UTC timestamps for humans, without a calendar dependency.

/// Now, in nanoseconds since the Unix epoch.
pub fn now_unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Parses an RFC 3339 UTC time (`2026-11-22T01:02:03Z`, fractional seconds
/// allowed) or a plain integer of nanoseconds since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i64>() {
        return Ok(n);
    }
    let bad = || format!("{t:?} is neither RFC 3339 UTC (2026-11-22T01:02:03Z) nor nanoseconds");
    let t = t.strip_suffix('Z').ok_or_else(bad)?;
    let (date, time) = t.split_once('T').ok_or_else(bad)?;
    let d: Vec<&str> = date.split('-').collect();
    let (secs_part, frac) = time.split_once('.').unwrap_or((time, ""));
    let h: Vec<&str> = secs_part.split(':').collect();
    if d.len() != 3 || h.len() != 3 || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let (y, mo, da) = (num(d[0])?, num(d[1])?, num(d[2])?);
    let (hh, mm, ss) = (num(h[0])?, num(h[1])?, num(h[2])?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || hh > 23 || mm > 59 || ss > 60 {
        return Err(bad());
    }
    let nanos = if frac.is_empty() {
        0
    } else {
        num(&format!("{frac:0<9}"))?
    };
    let days = days_from_civil(y, mo, da);
    Ok((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000_000 + nanos)
}

/// Inverse of `civil_from_days`.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-22T01:02:03.456Z` for nanoseconds since the Unix epoch.
pub fn rfc3339(unix_nanos: i64) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let millis = unix_nanos.rem_euclid(1_000_000_000) / 1_000_000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A duration on the command line: seconds ("900"), or a number with
/// `s`, `m`, `h` or `d` ("15m", "1h"). Zero and overflow are refused.
pub fn parse_duration_secs(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: u64 = digits.trim().parse().ok()?;
    let per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.checked_mul(per).filter(|&s| s > 0)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_795_309_323_456_000_000),
            "2026-11-22T01:02:03.456Z"
        );
        assert_eq!(rfc3339(-1_000_000_000), "1969-12-31T23:59:59.000Z");
    }

    #[test]
    fn parse_round_trips_and_refuses_garbage() {
        use super::parse_time;
        for t in [
            0,
            951_782_400_000_000_000,
            1_795_309_323_456_000_000,
            -1_000_000_000,
        ] {
            assert_eq!(parse_time(&rfc3339(t)).unwrap(), t);
        }
        assert_eq!(parse_time("12345").unwrap(), 12345);
        assert_eq!(
            parse_time("2026-11-22T01:02:03Z").unwrap(),
            1_795_309_323_000_000_000
        );
        for bad in [
            "",
            "yesterday",
            "2026-11-22",
            "2026-13-01T00:00:00Z",
            "2026-11-22T01:02:03+01:00",
            "2026-11-22T01:02:03.1234567890Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_on_the_command_line() {
        assert_eq!(super::parse_duration_secs("900"), Some(900));
        assert_eq!(super::parse_duration_secs("15m"), Some(900));
        assert_eq!(super::parse_duration_secs("1h"), Some(3600));
        assert_eq!(super::parse_duration_secs("2d"), Some(172_800));
        for bad in ["", "0", "h", "1w", "-1", "1.5h", "99999999999999999999d"] {
            assert_eq!(super::parse_duration_secs(bad), None, "{bad:?}");
        }
    }
}
