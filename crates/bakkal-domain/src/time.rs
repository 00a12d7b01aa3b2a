//! Time as bakkal stores it: microseconds since the Unix epoch (UTC), in an `i64`.

use std::time::{SystemTime, UNIX_EPOCH};

pub const MICROS_PER_SECOND: i64 = 1_000_000;
pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Microseconds since the Unix epoch.
pub type Micros = i64;

pub fn now_micros() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The earliest time a business fact (an order placed, an interaction, a consent given) may
/// carry: 1970-01-01T00:00:00Z.
pub const BUSINESS_TIME_FLOOR: Micros = 0;
/// How far past "now" such a time may be, for clocks that run a little ahead: 5 minutes.
pub const FUTURE_TOLERANCE: Micros = 5 * 60 * MICROS_PER_SECOND;

/// A time at which something happened, checked against `now`: not before
/// [`BUSINESS_TIME_FLOOR`], not more than [`FUTURE_TOLERANCE`] ahead. `Err` says what is wrong.
pub fn happened(t: Micros, now: Micros) -> Result<Micros, &'static str> {
    happened_by(t, now.saturating_add(FUTURE_TOLERANCE))
}

/// [`happened`] with the latest acceptable time given (the server's clock plus a tolerance
/// the operator chose).
pub fn happened_by(t: Micros, latest: Micros) -> Result<Micros, &'static str> {
    if t < BUSINESS_TIME_FLOOR {
        Err("must not be before 1970-01-01T00:00:00Z")
    } else if t > latest {
        Err("must not be in the future (ahead of the server's clock by more than its tolerance, 5 minutes unless set)")
    } else {
        Ok(t)
    }
}

/// Whole days from `from` to `to`, never negative.
pub fn days_between(from: Micros, to: Micros) -> i64 {
    ((to - from) / MICROS_PER_DAY).max(0)
}

/// A calendar date `YYYY-MM-DD`, checked for a real day (leap years included).
pub fn parse_date(s: &str) -> Option<(i32, u32, u32)> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i32 = s[0..4].parse().ok()?;
    let m: u32 = s[5..7].parse().ok()?;
    let d: u32 = s[8..10].parse().ok()?;
    if !(1..=12).contains(&m) || d == 0 || y < 1850 {
        return None;
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    (d <= days[(m - 1) as usize]).then_some((y, m, d))
}

/// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y } as i64;
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("2024-02-29"), Some((2024, 2, 29)));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2023-13-01"), None);
        assert_eq!(parse_date("23-01-01"), None);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn business_times_are_neither_ancient_nor_future() {
        let now = 1_800_000_000 * MICROS_PER_SECOND;
        assert_eq!(happened(now, now), Ok(now));
        assert!(happened(now + FUTURE_TOLERANCE, now).is_ok());
        assert!(happened(now + FUTURE_TOLERANCE + 1, now).is_err());
        assert!(happened(0, now).is_ok());
        assert!(happened(-1, now).is_err());
    }

    #[test]
    fn day_differences() {
        assert_eq!(days_between(0, 3 * MICROS_PER_DAY + 5), 3);
        assert_eq!(days_between(10, 0), 0);
    }
}
