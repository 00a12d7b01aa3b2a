//! Calendar helpers the domain crate does not have: dates from days, RFC 3339 parsing and
//! birthday arithmetic. All instants are [`Micros`] (UTC).

use bakkal_domain::time::{days_from_civil, parse_date, Micros, MICROS_PER_DAY, MICROS_PER_SECOND};

/// Civil date `(year, month, day)` for days since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The UTC date of an instant.
pub fn date_of(t: Micros) -> (i64, u32, u32) {
    civil_from_days(t.div_euclid(MICROS_PER_DAY))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Days since the epoch of this year's occurrence of `month-day`; 29 February falls on
/// 28 February in common years.
fn anniversary(year: i64, m: u32, d: u32) -> i64 {
    let d = if m == 2 && d == 29 && !is_leap(year) {
        28
    } else {
        d
    };
    days_from_civil(year as i32, m, d)
}

/// Facts about a birth date (`YYYY-MM-DD`) at `now`: `(is_today, days_until_next, age)`.
/// `None` when the date does not parse.
pub fn birthday(birth_date: &str, now: Micros) -> Option<(bool, i64, i64)> {
    let (by, bm, bd) = parse_date(birth_date)?;
    let (y, m, d) = date_of(now);
    let today = days_from_civil(y as i32, m, d);
    let this_year = anniversary(y, bm, bd);
    let until = if this_year >= today {
        this_year - today
    } else {
        anniversary(y + 1, bm, bd) - today
    };
    let had_birthday = today >= this_year;
    let age = (y - by as i64 - if had_birthday { 0 } else { 1 }).max(0);
    Some((until == 0, until, age))
}

/// Parse `YYYY-MM-DD` or RFC 3339 (`2026-01-02T10:00:00Z`, `...+03:00`, fractional seconds
/// allowed) into micros.
pub fn parse_timestamp(s: &str) -> Option<Micros> {
    let s = s.trim();
    let (y, m, d) = parse_date(s.get(..10)?)?;
    let day = days_from_civil(y, m, d) * MICROS_PER_DAY;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(day);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let b = rest.as_bytes();
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let num = |r: &str| -> Option<i64> {
        r.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| r.parse().ok())?
    };
    let (hh, mm, ss) = (num(&rest[0..2])?, num(&rest[3..5])?, num(&rest[6..8])?);
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut rest = &rest[8..];
    let mut frac = 0i64;
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let digits = &r[..n.min(6)];
        frac = num(digits)? * 10i64.pow(6 - digits.len() as u32);
        rest = &r[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = &rest[1..];
            if o.len() != 5 || o.as_bytes()[2] != b':' {
                return None;
            }
            sign * (num(&o[0..2])? * 3600 + num(&o[3..5])? * 60)
        }
    };
    Some(day + ((hh * 3600 + mm * 60 + ss) - offset) * MICROS_PER_SECOND + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for z in [-1000, 0, 11_017, 20_000, 20_513] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y as i32, m, d), z);
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-02"), Some(MICROS_PER_DAY));
        assert_eq!(
            parse_timestamp("1970-01-01T00:00:01Z"),
            Some(MICROS_PER_SECOND)
        );
        assert_eq!(parse_timestamp("1970-01-01T03:00:00+03:00"), Some(0));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00.5Z"), Some(500_000));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00"), None);
        assert_eq!(parse_timestamp("nope"), None);
    }

    #[test]
    fn birthdays() {
        let now = parse_timestamp("2026-03-10T12:00:00Z").unwrap();
        assert_eq!(birthday("1990-03-10", now), Some((true, 0, 36)));
        assert_eq!(birthday("1990-03-11", now), Some((false, 1, 35)));
        assert_eq!(birthday("1990-03-09", now), Some((false, 364, 36)));
        // Leap-day birthdays are celebrated on 28 February in common years.
        let feb = parse_timestamp("2027-02-28T00:00:00Z").unwrap();
        assert_eq!(birthday("2000-02-29", feb), Some((true, 0, 27)));
        assert_eq!(birthday("bad", now), None);
    }
}
