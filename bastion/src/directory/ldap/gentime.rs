//! LDAP GeneralizedTime (RFC 4517 3.3.13), as OpenLDAP's ppolicy writes
//! `pwdEndTime`: read into seconds since 1970, with anything malformed or
//! out of range refused (`None`) rather than guessed. Pure: no I/O.

use std::ops::Range;

/// `YYYYMMDDHH[MM[SS]][.fff](Z|±HH[MM])` → seconds since 1970.
pub fn parse_generalized_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    let num = |r: Range<usize>| digits(s, r);
    let year = num(0..4)?;
    let month = num(4..6)?;
    let day = num(6..8)?;
    let hour = num(8..10)?;
    let mut i = 10;
    let mut minute = 0;
    let mut second = 0;
    if b.get(i).is_some_and(u8::is_ascii_digit) {
        minute = num(i..i + 2)?;
        i += 2;
        if b.get(i).is_some_and(u8::is_ascii_digit) {
            second = num(i..i + 2)?;
            i += 2;
        }
    }
    if matches!(b.get(i), Some(b'.') | Some(b',')) {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = zone_offset(s, i)?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// The decimal number in `s[r]`, if that range holds ASCII digits only.
fn digits(s: &str, r: Range<usize>) -> Option<i64> {
    let part = s.get(r)?;
    if part.bytes().all(|c| c.is_ascii_digit()) {
        part.parse().ok()
    } else {
        None
    }
}

/// The zone that ends `s`, starting at byte `i`: `Z`, or `±HH[MM]` → seconds
/// east of UTC.
fn zone_offset(s: &str, i: usize) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: Range<usize>| digits(s, r);
    match b.get(i) {
        Some(b'Z') if i + 1 == b.len() => Some(0),
        Some(&sign @ (b'+' | b'-')) => {
            let oh = num(i + 1..i + 3)?;
            let om = if b.len() == i + 5 {
                num(i + 3..i + 5)?
            } else if b.len() == i + 3 {
                0
            } else {
                return None;
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            Some(if sign == b'+' { off } else { -off })
        }
        _ => None,
    }
}

/// Days in month `m` of year `y`, leap years as the Gregorian calendar has them.
fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-06-01T00:00:00Z
    const NOW: i64 = 1_717_200_000;

    #[test]
    fn generalized_time() {
        assert_eq!(parse_generalized_time("19700101000000Z"), Some(0));
        assert_eq!(parse_generalized_time("20240601000000Z"), Some(NOW));
        assert_eq!(parse_generalized_time("2024060100Z"), Some(NOW));
        assert_eq!(parse_generalized_time("202406010000Z"), Some(NOW));
        assert_eq!(parse_generalized_time("20240601000000.123Z"), Some(NOW));
        assert_eq!(parse_generalized_time("20240601020000+0200"), Some(NOW));
        assert_eq!(parse_generalized_time("20240531220000-02"), Some(NOW));
        assert_eq!(parse_generalized_time("20240229120000Z"), Some(1_709_208_000));
        assert_eq!(parse_generalized_time("20230229120000Z"), None);
        assert_eq!(parse_generalized_time("20241301000000Z"), None);
        assert_eq!(parse_generalized_time("20240601000000"), None);
        assert_eq!(parse_generalized_time("20240601000000ZZ"), None);
        assert_eq!(parse_generalized_time("2024"), None);
        assert_eq!(parse_generalized_time("20240601000000.Z"), None);
        assert_eq!(parse_generalized_time("２０２４0601000000Z"), None);
    }
}
