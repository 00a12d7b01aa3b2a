//! Business hours: a weekly opening schedule in one IANA time zone, with holidays, and the two
//! questions SLA clocks ask of it: "when has this much business time passed?" (`add`) and "how
//! much business time lies between these instants?" (`between`).
//!
//! Rules (the contract the service desk relies on):
//! - A business day is a local calendar date whose ISO weekday is in `week_days` (1 = Monday …
//!   7 = Sunday) and that is not a holiday. Its business interval is `[open, close)` local time.
//! - `open` and `close` are `HH:MM` (24-hour). `close` may be `24:00` (the end of the day), so
//!   `00:00`–`24:00` is a whole day. `open` must be before `close`: **overnight shifts are not
//!   supported** (a schedule crossing midnight is rejected; model it as two desks or as
//!   `00:00`–`24:00`).
//! - Daylight saving time: local times are resolved in the zone on each date. A local time that
//!   does not exist (the spring-forward gap) means the first instant after the gap; a local time
//!   that happens twice (the autumn fold) means its first occurrence. So a 09:00–18:00 day is 9
//!   real hours on every date in Europe/Berlin, and a 00:00–24:00 day is 23 or 25 hours on the
//!   two transition dates.
//! - Holidays are local dates `YYYY-MM-DD`; a holiday is closed all day.
//! - Instants are [`Micros`] (UTC). Results past the year 9999 saturate to `Micros::MAX`.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::time::{Micros, MICROS_PER_SECOND};

/// How business hours are written in requests and stored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BusinessHoursSpec {
    /// IANA time zone, e.g. `Europe/Istanbul`.
    pub time_zone: String,
    /// ISO weekdays the desk is open: 1 = Monday … 7 = Sunday.
    pub week_days: Vec<u32>,
    /// Opening time `HH:MM`.
    pub open: String,
    /// Closing time `HH:MM`, or `24:00` for the end of the day.
    pub close: String,
    /// Closed local dates, `YYYY-MM-DD`.
    pub holidays: Vec<String>,
}

/// A validated schedule, ready to compute with.
#[derive(Debug, Clone, PartialEq)]
pub struct BusinessHours {
    tz: Tz,
    /// Index 0 = Monday.
    days: [bool; 7],
    /// Seconds after local midnight.
    open: u32,
    /// Seconds after local midnight; up to 86 400.
    close: u32,
    holidays: BTreeSet<NaiveDate>,
    /// 24x7 in UTC: `add` and `between` are plain arithmetic.
    always: bool,
}

const SECONDS_PER_DAY: u32 = 86_400;

/// Parse `HH:MM` into seconds after midnight; `24:00` only when `allow_end_of_day`.
fn parse_hhmm(s: &str, allow_end_of_day: bool) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() != 5
        || b[2] != b':'
        || !b
            .iter()
            .enumerate()
            .all(|(i, c)| i == 2 || c.is_ascii_digit())
    {
        return None;
    }
    let h: u32 = s[0..2].parse().ok()?;
    let m: u32 = s[3..5].parse().ok()?;
    if allow_end_of_day && h == 24 && m == 0 {
        return Some(SECONDS_PER_DAY);
    }
    (h < 24 && m < 60).then_some(h * 3600 + m * 60)
}

/// The horizon past which `add` saturates (chrono's dates end near the year 262 000; SLA
/// clocks never need more than this).
fn horizon() -> NaiveDate {
    NaiveDate::from_ymd_opt(9999, 12, 31).expect("valid date")
}

impl BusinessHours {
    /// Validate a spec. Every problem is reported, each under its field name (`time_zone`,
    /// `week_days`, `open`, `close`, `holidays[i]`).
    pub fn new(spec: &BusinessHoursSpec) -> Result<BusinessHours, Vec<(String, String)>> {
        let mut errors: Vec<(String, String)> = Vec::new();

        let tz = match spec.time_zone.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                let reason = if spec.time_zone.is_empty() {
                    "is required (an IANA time zone such as Europe/Istanbul)".to_string()
                } else {
                    format!(
                        "unknown time zone {:?}",
                        crate::error::quote(&spec.time_zone)
                    )
                };
                errors.push(("time_zone".into(), reason));
                None
            }
        };

        let mut days = [false; 7];
        if spec.week_days.is_empty() {
            errors.push((
                "week_days".into(),
                "at least one day is required (1 = Monday … 7 = Sunday)".into(),
            ));
        }
        for &d in &spec.week_days {
            if (1..=7).contains(&d) {
                days[(d - 1) as usize] = true;
            } else {
                errors.push((
                    "week_days".into(),
                    format!("{d} is not a weekday (1 = Monday … 7 = Sunday)"),
                ));
            }
        }

        let open = parse_hhmm(&spec.open, false);
        if open.is_none() {
            errors.push((
                "open".into(),
                "must be HH:MM between 00:00 and 23:59".into(),
            ));
        }
        let close = parse_hhmm(&spec.close, true);
        if close.is_none() {
            errors.push((
                "close".into(),
                "must be HH:MM between 00:01 and 24:00".into(),
            ));
        }
        if let (Some(o), Some(c)) = (open, close) {
            if o >= c {
                errors.push((
                    "close".into(),
                    "must be after open (overnight shifts are not supported)".into(),
                ));
            }
        }

        let mut holidays = BTreeSet::new();
        for (i, h) in spec.holidays.iter().enumerate() {
            match crate::time::parse_date(h).and_then(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d))
            {
                Some(date) => {
                    holidays.insert(date);
                }
                None => errors.push((
                    format!("holidays[{i}]"),
                    format!("{:?} is not a date YYYY-MM-DD", crate::error::quote(h)),
                )),
            }
        }

        match (tz, open, close) {
            (Some(tz), Some(open), Some(close)) if errors.is_empty() => {
                let always = tz == Tz::UTC
                    && days.iter().all(|d| *d)
                    && open == 0
                    && close == SECONDS_PER_DAY
                    && holidays.is_empty();
                Ok(BusinessHours {
                    tz,
                    days,
                    open,
                    close,
                    holidays,
                    always,
                })
            }
            _ => Err(errors),
        }
    }

    /// Open every hour of every day, in UTC: business time is real time.
    pub fn always() -> BusinessHours {
        BusinessHours {
            tz: Tz::UTC,
            days: [true; 7],
            open: 0,
            close: SECONDS_PER_DAY,
            holidays: BTreeSet::new(),
            always: true,
        }
    }

    /// The time zone the schedule is written in.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The instant when `business` of business time has passed since `start`. When the amount
    /// runs out exactly at a closing time, that closing time is the answer (not the next
    /// opening). `business <= 0` returns `start`. Saturates to `Micros::MAX` past the year 9999.
    pub fn add(&self, start: Micros, business: Micros) -> Micros {
        if business <= 0 {
            return start;
        }
        if self.always {
            return start.saturating_add(business);
        }
        let Some(mut date) = self.local_date(start) else {
            return Micros::MAX;
        };
        let end = horizon();
        // No local day holds more than 26 real hours: more than that per day until the horizon
        // can never be reached.
        let days_left = (end - date).num_days().max(0) + 2;
        if business / (26 * 3600 * MICROS_PER_SECOND) > days_left {
            return Micros::MAX;
        }
        let week = self.nominal_week();
        let mut remaining = business;
        let mut cursor = start;
        let mut first = true;
        while date <= end {
            // Whole weeks at once: a week wholly after the cursor, without holidays or an
            // offset change, holds exactly the nominal week.
            if !first && remaining > week && self.plain_week(date) {
                remaining -= week;
                date += Duration::days(7);
                continue;
            }
            first = false;
            if let Some((o, c)) = self.interval(date) {
                let s = o.max(cursor);
                if s < c {
                    let avail = c - s;
                    if remaining <= avail {
                        return s + remaining;
                    }
                    remaining -= avail;
                }
                cursor = cursor.max(c);
            }
            date += Duration::days(1);
        }
        Micros::MAX
    }

    /// The business time within `[from, to)`; 0 when `to <= from`.
    pub fn between(&self, from: Micros, to: Micros) -> Micros {
        if to <= from {
            return 0;
        }
        if self.always {
            return to.saturating_sub(from);
        }
        let Some(mut date) = self.local_date(from) else {
            return 0;
        };
        let week = self.nominal_week();
        let mut total: Micros = 0;
        let mut first = true;
        let end = horizon();
        while date <= end {
            let day_start = self.resolve(date, 0);
            if day_start >= to {
                break;
            }
            if !first && self.resolve(date + Duration::days(7), 0) <= to && self.plain_week(date) {
                total += week;
                date += Duration::days(7);
                continue;
            }
            first = false;
            if let Some((o, c)) = self.interval(date) {
                let s = o.max(from);
                let e = c.min(to);
                if s < e {
                    total += e - s;
                }
            }
            date += Duration::days(1);
        }
        total
    }

    /// Whether `date` is a business day (its weekday is open and it is no holiday).
    pub fn is_business_day(&self, date: NaiveDate) -> bool {
        self.days[date.weekday().num_days_from_monday() as usize] && !self.holidays.contains(&date)
    }

    /// The business interval `[open, close)` of a local date in UTC, if it is a business day.
    fn interval(&self, date: NaiveDate) -> Option<(Micros, Micros)> {
        if !self.is_business_day(date) {
            return None;
        }
        Some((
            self.resolve(date, self.open),
            self.resolve(date, self.close),
        ))
    }

    /// Business time in a week without holidays or offset changes.
    fn nominal_week(&self) -> Micros {
        let days = self.days.iter().filter(|d| **d).count() as i64;
        days * (self.close - self.open) as i64 * MICROS_PER_SECOND
    }

    /// The week `[date, date + 7)` has no holiday and the same UTC offset at both ends, so every
    /// business day in it is exactly `close - open` long. (Two offset changes within one week,
    /// cancelling each other, do not occur in the time zone database.)
    fn plain_week(&self, date: NaiveDate) -> bool {
        let next = date + Duration::days(7);
        if self.holidays.range(date..next).next().is_some() {
            return false;
        }
        self.offset_at(self.resolve(date, 0)) == self.offset_at(self.resolve(next, 0))
    }

    fn offset_at(&self, t: Micros) -> Option<i32> {
        let utc = DateTime::from_timestamp_micros(t)?.naive_utc();
        Some(
            self.tz
                .offset_from_utc_datetime(&utc)
                .fix()
                .local_minus_utc(),
        )
    }

    fn local_date(&self, t: Micros) -> Option<NaiveDate> {
        Some(
            DateTime::from_timestamp_micros(t)?
                .with_timezone(&self.tz)
                .date_naive(),
        )
    }

    /// The UTC instant of local `date` + `secs` seconds (`secs` up to 86 400 = next midnight).
    /// A time in a DST gap moves to the end of the gap; a time in a fold takes its first
    /// occurrence.
    fn resolve(&self, date: NaiveDate, secs: u32) -> Micros {
        let (date, secs) = if secs >= SECONDS_PER_DAY {
            (date + Duration::days(1), secs - SECONDS_PER_DAY)
        } else {
            (date, secs)
        };
        let time = NaiveTime::from_num_seconds_from_midnight_opt(secs, 0).unwrap_or(NaiveTime::MIN);
        let mut local = NaiveDateTime::new(date, time);
        // A gap is at most a day long; walk it minute by minute (it happens twice a year).
        for _ in 0..=(24 * 60) {
            if let Some(t) = self.tz.from_local_datetime(&local).earliest() {
                return t.timestamp_micros();
            }
            local += Duration::minutes(1);
        }
        // Unreachable with real zone data; fall back to the local time read as UTC.
        local.and_utc().timestamp_micros()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Micros = 3600 * MICROS_PER_SECOND;
    const MINUTE: Micros = 60 * MICROS_PER_SECOND;

    fn spec(
        tz: &str,
        days: &[u32],
        open: &str,
        close: &str,
        holidays: &[&str],
    ) -> BusinessHoursSpec {
        BusinessHoursSpec {
            time_zone: tz.into(),
            week_days: days.to_vec(),
            open: open.into(),
            close: close.into(),
            holidays: holidays.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn weekdays(tz: &str, holidays: &[&str]) -> BusinessHours {
        BusinessHours::new(&spec(tz, &[1, 2, 3, 4, 5], "09:00", "18:00", holidays)).unwrap()
    }

    /// The UTC instant of a local wall time in `tz`.
    fn at(tz: &str, s: &str) -> Micros {
        let tz: Tz = tz.parse().unwrap();
        let ndt = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        tz.from_local_datetime(&ndt)
            .earliest()
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn friday_evening_plus_one_hour_is_monday_morning() {
        let bh = weekdays("Europe/Istanbul", &[]);
        // 2026-11-20 is a Friday.
        let start = at("Europe/Istanbul", "2026-11-20 17:30");
        assert_eq!(
            bh.add(start, HOUR),
            at("Europe/Istanbul", "2026-11-23 09:30")
        );
        assert_eq!(
            bh.between(start, at("Europe/Istanbul", "2026-11-23 09:30")),
            HOUR
        );
        // Running out exactly at closing time answers the closing time.
        assert_eq!(
            bh.add(start, 30 * MINUTE),
            at("Europe/Istanbul", "2026-11-20 18:00")
        );
        // Starting before opening counts from the opening.
        let early = at("Europe/Istanbul", "2026-11-23 06:00");
        assert_eq!(
            bh.add(early, 2 * HOUR),
            at("Europe/Istanbul", "2026-11-23 11:00")
        );
        assert_eq!(bh.add(start, 0), start);
        assert_eq!(bh.add(start, -5), start);
    }

    #[test]
    fn holidays_are_skipped() {
        // Friday 2026-12-25 and Monday 2026-12-28 closed.
        let bh = weekdays("Europe/London", &["2026-12-25", "2026-12-28"]);
        let start = at("Europe/London", "2026-12-24 17:00");
        assert_eq!(
            bh.add(start, 2 * HOUR),
            at("Europe/London", "2026-12-29 10:00")
        );
        assert_eq!(
            bh.between(start, at("Europe/London", "2026-12-29 10:00")),
            2 * HOUR
        );
        let no_holidays = weekdays("Europe/London", &[]);
        assert_eq!(
            no_holidays.add(start, 2 * HOUR),
            at("Europe/London", "2026-12-25 10:00")
        );
    }

    #[test]
    fn daylight_saving_in_berlin() {
        let tz = "Europe/Berlin";
        let every_day =
            BusinessHours::new(&spec(tz, &[1, 2, 3, 4, 5, 6, 7], "09:00", "18:00", &[])).unwrap();
        // Clocks go forward on Sunday 2026-03-29 (02:00 → 03:00).
        let sat = at(tz, "2026-03-28 17:00");
        let sun = at(tz, "2026-03-29 10:00");
        assert_eq!(every_day.add(sat, 2 * HOUR), sun);
        // 16 real hours apart, 2 business hours.
        assert_eq!(sun - sat, 16 * HOUR);
        assert_eq!(every_day.between(sat, sun), 2 * HOUR);

        // A whole-day schedule: the spring date has 23 hours, the autumn date 25.
        let whole =
            BusinessHours::new(&spec(tz, &[1, 2, 3, 4, 5, 6, 7], "00:00", "24:00", &[])).unwrap();
        assert_eq!(
            whole.between(at(tz, "2026-03-29 00:00"), at(tz, "2026-03-30 00:00")),
            23 * HOUR
        );
        assert_eq!(
            whole.between(at(tz, "2026-10-25 00:00"), at(tz, "2026-10-26 00:00")),
            25 * HOUR
        );
        assert_eq!(
            whole.add(at(tz, "2026-03-29 00:00"), 23 * HOUR),
            at(tz, "2026-03-30 00:00")
        );

        // Opening inside the gap means opening when the gap ends.
        let gap = BusinessHours::new(&spec(tz, &[7], "02:30", "04:00", &[])).unwrap();
        assert_eq!(
            gap.between(at(tz, "2026-03-29 00:00"), at(tz, "2026-03-30 00:00")),
            HOUR
        );
        // Across weeks spanning both transitions, whole-week skipping stays exact.
        let weekdays = weekdays(tz, &[]);
        let jan = at(tz, "2026-01-05 09:00"); // a Monday
        let dec = at(tz, "2026-12-28 09:00"); // a Monday, 51 weeks later
        assert_eq!(weekdays.between(jan, dec), 51 * 5 * 9 * HOUR);
        assert_eq!(
            weekdays.add(jan, 51 * 5 * 9 * HOUR),
            at(tz, "2026-12-25 18:00")
        );
    }

    #[test]
    fn always_is_real_time() {
        let bh = BusinessHours::always();
        assert_eq!(bh.add(1_000, 5 * HOUR), 1_000 + 5 * HOUR);
        assert_eq!(bh.between(1_000, 1_000 + 7 * HOUR), 7 * HOUR);
        assert_eq!(bh.between(10, 5), 0);
        let spelled =
            BusinessHours::new(&spec("UTC", &[1, 2, 3, 4, 5, 6, 7], "00:00", "24:00", &[]))
                .unwrap();
        assert_eq!(spelled, bh);
    }

    #[test]
    fn validation_names_every_field() {
        let err = BusinessHours::new(&spec(
            "Mars/Olympus",
            &[0, 8],
            "9:00",
            "25:00",
            &["2026-02-30", "x"],
        ))
        .unwrap_err();
        let fields: Vec<&str> = err.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "time_zone",
                "week_days",
                "week_days",
                "open",
                "close",
                "holidays[0]",
                "holidays[1]"
            ]
        );
        let err =
            BusinessHours::new(&spec("Europe/Istanbul", &[], "18:00", "09:00", &[])).unwrap_err();
        let fields: Vec<&str> = err.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["week_days", "close"]);
        assert!(err[1].1.contains("overnight"));
        let err = BusinessHours::new(&spec("", &[1], "09:00", "09:00", &[])).unwrap_err();
        let fields: Vec<&str> = err.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["time_zone", "close"]);
        assert!(BusinessHours::new(&spec("UTC", &[1], "24:00", "24:00", &[])).is_err());
        assert!(BusinessHours::new(&spec("UTC", &[1, 1], "00:00", "24:00", &[])).is_ok());
    }

    #[test]
    fn long_spans_end_and_saturate() {
        let bh = weekdays("America/New_York", &["2030-01-01"]);
        let start = at("America/New_York", "2026-01-01 12:00");
        // Ten years of business time comes back in one call, and `between` agrees.
        let ten_years = 10 * 52 * 5 * 9 * HOUR;
        let end = bh.add(start, ten_years);
        assert_eq!(bh.between(start, end), ten_years);
        assert_eq!(bh.add(start, Micros::MAX), Micros::MAX);
        assert_eq!(BusinessHours::always().add(5, Micros::MAX), Micros::MAX);
    }

    /// A small deterministic generator, so the loop test needs no dependency.
    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn between_is_the_inverse_of_add() {
        let schedules = [
            weekdays("Europe/Istanbul", &["2026-04-23", "2026-05-01"]),
            BusinessHours::new(&spec(
                "Europe/Berlin",
                &[1, 3, 6],
                "07:15",
                "12:45",
                &["2026-03-28"],
            ))
            .unwrap(),
            BusinessHours::new(&spec(
                "America/Sao_Paulo",
                &[1, 2, 3, 4, 5, 6, 7],
                "00:00",
                "24:00",
                &[],
            ))
            .unwrap(),
            BusinessHours::new(&spec(
                "Australia/Lord_Howe",
                &[2, 4, 7],
                "01:00",
                "03:00",
                &[],
            ))
            .unwrap(),
            BusinessHours::always(),
        ];
        let base = at("UTC", "2026-01-01 00:00");
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for bh in &schedules {
            for _ in 0..300 {
                let start = base + (next(&mut seed) % (400 * 24 * 60)) as i64 * MINUTE;
                let business = (next(&mut seed) % (120 * 60)) as i64 * MINUTE + 1;
                let end = bh.add(start, business);
                assert!(end > start);
                assert_eq!(
                    bh.between(start, end),
                    business,
                    "{bh:?} {start} {business}"
                );
                // Nothing earlier reaches the amount.
                assert!(bh.between(start, end - 1) < business);
                // add(between) lands at or before any later instant.
                let later = start + (next(&mut seed) % (60 * 24 * 60)) as i64 * MINUTE;
                let b = bh.between(start, later);
                assert!(bh.add(start, b) <= later);
                // Splitting an interval splits its business time.
                let mid = start + (later - start) / 2;
                assert_eq!(bh.between(start, mid) + bh.between(mid, later), b);
            }
        }
    }
}
