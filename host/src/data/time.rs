//! ISO-8601 timestamps ↔ Unix seconds, without allocation (the ingest hot path parses one per row).

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction][Z|±HH:MM|±HHMM]` (a space may replace `T`; no zone
/// means UTC) into Unix seconds, fraction dropped. `None` when it is not such a timestamp.
pub fn parse_iso8601(s: &[u8]) -> Option<i64> {
    if s.len() < 19 || s[4] != b'-' || s[7] != b'-' || !(s[10] == b'T' || s[10] == b' ') || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(&s[0..4])? as i64, digits(&s[5..7])?, digits(&s[8..10])?);
    let (h, mi, se) = (digits(&s[11..13])?, digits(&s[14..16])?, digits(&s[17..19])?);
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let [b'.', r @ ..] = rest {
        let n = r.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        rest = &r[n..];
    }
    let offset = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), hh @ ..] => {
            let (oh, om) = match hh {
                [a, b, b':', c, d] | [a, b, c, d] => (digits(&[*a, *b])?, digits(&[*c, *d])?),
                [a, b] => (digits(&[*a, *b])?, 0),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let o = i64::from(oh * 3600 + om * 60);
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + se) - offset)
}

/// [`parse_iso8601`], with a shorter path for LastFM-1K's own form, `YYYY-MM-DDTHH:MM:SSZ`
/// (the ingest's per-row parse); anything else, or a value out of range, goes to the general
/// parser, so the result is always the same.
#[inline]
pub fn parse_iso8601_lastfm(s: &[u8]) -> Option<i64> {
    if let Ok(b) = <&[u8; 20]>::try_from(s) {
        if b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':' && b[19] == b'Z' {
            let d = |i: usize| u32::from(b[i].wrapping_sub(b'0'));
            let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18].iter().fold(0u32, |bad, &i| bad | u32::from(d(i) > 9));
            if digits == 0 {
                let y = d(0) * 1000 + d(1) * 100 + d(2) * 10 + d(3);
                let (mo, day) = (d(5) * 10 + d(6), d(8) * 10 + d(9));
                let (h, mi, se) = (d(11) * 10 + d(12), d(14) * 10 + d(15), d(17) * 10 + d(18));
                let y = i64::from(y);
                if (1..=12).contains(&mo) && day != 0 && day <= days_in_month(y, mo) && h <= 23 && mi <= 59 && se <= 60 {
                    return Some(days_from_civil(y, mo, day) * 86_400 + i64::from(h * 3600 + mi * 60 + se));
                }
            }
        }
    }
    parse_iso8601(s)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` into `out` (LastFM-1K's form).
pub fn format_iso8601(t: i64, out: &mut Vec<u8>) {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let (h, mi, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    use std::io::Write;
    let _ = write!(out, "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lastfm_and_variants() {
        assert_eq!(parse_iso8601(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso8601(b"2009-05-04T23:08:57Z"), Some(1_241_478_537));
        assert_eq!(parse_iso8601(b"2009-05-04 23:08:57"), Some(1_241_478_537));
        assert_eq!(parse_iso8601(b"2009-05-04T23:08:57.123Z"), Some(1_241_478_537));
        assert_eq!(parse_iso8601(b"2009-05-05T01:08:57+02:00"), Some(1_241_478_537));
        assert_eq!(parse_iso8601(b"2009-05-04T22:08:57-0100"), Some(1_241_478_537));
        for bad in [&b"2009-13-04T23:08:57Z"[..], b"2009-02-29T00:00:00Z", b"2009-05-04", b"garbage", b"2009-05-04T23:08:57Q", b"2009-05-04T24:00:00Z", b""] {
            assert_eq!(parse_iso8601(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_iso8601(b"2008-02-29T00:00:00Z"), Some(1_204_243_200));
    }

    #[test]
    fn lastfm_path_agrees_with_the_general_parser() {
        let mut cases: Vec<Vec<u8>> = [
            "2009-05-04T23:08:57Z",
            "1970-01-01T00:00:00Z",
            "2008-02-29T00:00:00Z",
            "2009-02-29T00:00:00Z",
            "2000-02-29T12:00:00Z",
            "1900-02-29T12:00:00Z",
            "2009-13-04T23:08:57Z",
            "2009-00-04T23:08:57Z",
            "2009-05-00T23:08:57Z",
            "2009-04-31T23:08:57Z",
            "2009-05-04T24:00:00Z",
            "2009-05-04T23:60:00Z",
            "2009-05-04T23:59:60Z",
            "2009-05-04T23:59:61Z",
            "2009-05-04 23:08:57Z",
            "2009-05-04T23:08:57z",
            "2009-05-04T23:08:57",
            "2009-05-04T23:08:5/Z",
            "2009-05-04T23:08:57+00",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "2009-05-04T2:308:57Z",
            "2009/05/04T23:08:57Z",
            "",
        ]
        .iter()
        .map(|c| c.as_bytes().to_vec())
        .collect();
        for t in (0..400).map(|k| k * 7_919_993 - 1_000_000_000) {
            let mut s = Vec::new();
            format_iso8601(t, &mut s);
            cases.push(s);
        }
        for c in &cases {
            assert_eq!(parse_iso8601_lastfm(c), parse_iso8601(c), "{}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn format_round_trips() {
        for t in [0i64, 1_241_478_537, 1_204_243_200, 951_782_400, -86_400, 4_102_444_799] {
            let mut s = Vec::new();
            format_iso8601(t, &mut s);
            assert_eq!(parse_iso8601(&s), Some(t), "{}", String::from_utf8_lossy(&s));
        }
    }
}
