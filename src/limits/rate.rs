//! Token buckets per principal: `burst` tokens at most, refilled at `per_second`; a call
//! takes one, and a call finding none is told how long until there is one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A request rate: tokens per second and the bucket's size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

struct Bucket {
    rate: Rate,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.rate.per_second).min(f64::from(self.rate.burst));
        self.at = now;
    }

    fn full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * self.rate.per_second >= f64::from(self.rate.burst)
    }
}

/// Buckets beyond this many are pruned of the full ones (idle principals).
const PRUNE_AT: usize = 10_000;

/// The rates by role and every principal's bucket.
pub struct RateLimiter {
    by_role: HashMap<String, Rate>,
    default: Option<Rate>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(rates: &[(String, Rate)]) -> RateLimiter {
        let mut by_role = HashMap::new();
        let mut default = None;
        for (role, rate) in rates {
            if role == "*" {
                default = Some(*rate);
            } else {
                by_role.insert(role.clone(), *rate);
            }
        }
        RateLimiter {
            by_role,
            default,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_role.is_empty() && self.default.is_none()
    }

    /// The rate of a principal with `roles`: the most generous of its roles that have one,
    /// else the default; `None`: unlimited.
    pub fn rate_for(&self, roles: &[String]) -> Option<Rate> {
        let mut best: Option<Rate> = None;
        for r in roles.iter().filter_map(|r| self.by_role.get(r)) {
            best = Some(match best {
                None => *r,
                Some(b) => Rate {
                    per_second: b.per_second.max(r.per_second),
                    burst: b.burst.max(r.burst),
                },
            });
        }
        best.or(self.default)
    }

    /// Take a token from `principal`'s bucket; `Err(wait)`: none left, one is there after
    /// `wait`.
    pub fn take(&self, principal: &str, rate: Rate) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            // a poisoned lock limits nobody rather than everybody
            return Ok(());
        };
        if buckets.len() >= PRUNE_AT && !buckets.contains_key(principal) {
            buckets.retain(|_, b| !b.full(now));
        }
        let bucket = buckets
            .entry(principal.to_string())
            .or_insert_with(|| Bucket {
                rate,
                tokens: f64::from(rate.burst),
                at: now,
            });
        bucket.refill(now);
        if bucket.rate != rate {
            // the principal's roles (or the configuration) changed
            bucket.rate = rate;
            bucket.tokens = bucket.tokens.min(f64::from(rate.burst));
        }
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let missing = 1.0 - bucket.tokens;
        Err(Duration::from_secs_f64(missing / rate.per_second).max(Duration::from_millis(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: f64, burst: u32) -> Rate {
        Rate { per_second, burst }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_says_when() {
        let l = RateLimiter::new(&[("analyst".into(), rate(0.5, 2))]);
        let r = l.rate_for(&["analyst".into()]).unwrap();
        assert!(l.take("a", r).is_ok());
        assert!(l.take("a", r).is_ok());
        let wait = l.take("a", r).unwrap_err();
        assert!(
            wait > Duration::from_secs(1) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        // another principal has a bucket of its own
        assert!(l.take("b", r).is_ok());
    }

    #[test]
    fn the_most_generous_role_wins_and_star_is_the_default() {
        let l = RateLimiter::new(&[
            ("analyst".into(), rate(5.0, 5)),
            ("integration".into(), rate(100.0, 200)),
            ("*".into(), rate(1.0, 1)),
        ]);
        assert_eq!(
            l.rate_for(&["analyst".into(), "integration".into()]),
            Some(rate(100.0, 200))
        );
        assert_eq!(l.rate_for(&["marketer".into()]), Some(rate(1.0, 1)));
        let none = RateLimiter::new(&[("analyst".into(), rate(5.0, 5))]);
        assert_eq!(none.rate_for(&["marketer".into()]), None);
    }
}
