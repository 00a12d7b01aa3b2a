//! Request limits, in a tower layer after authentication ([`layer`]): a token bucket per
//! principal whose rate and burst come from the principal's roles ([`rate`]), and a global
//! limit of calls in flight, each counted until its response body ends, so a long stream
//! counts for its whole life. Over a principal's rate the answer is RESOURCE_EXHAUSTED, over
//! the server's in-flight limit UNAVAILABLE, both with a `google.rpc.RetryInfo`. Health is
//! never limited. Nothing is limited unless configured.

pub mod layer;
pub mod rate;

pub use rate::Rate;

/// `--rate-limit` and `--max-in-flight`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitsConfig {
    /// `(role or "*", rate)`: a principal gets the most generous rate of its roles named
    /// here, else `*`'s, else none.
    pub rates: Vec<(String, Rate)>,
    /// Calls in flight at once over the whole server; `None`: no limit.
    pub max_in_flight: Option<usize>,
}

/// `ROLE=RPS[:BURST]`, e.g. `analyst=5`, `integration=200:400`, `*=20:40`. RPS may be a
/// fraction (`0.5`); BURST (the bucket's size) defaults to RPS rounded up.
pub fn parse_rate_flag(s: &str) -> Result<(String, Rate), String> {
    let (role, rate) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not ROLE=RPS[:BURST] (e.g. analyst=5:10, *=20)"))?;
    let role = role.trim();
    if role.is_empty() {
        return Err(format!(
            "'{s}' names no role (use * for every role not named)"
        ));
    }
    let (rps, burst) = match rate.split_once(':') {
        Some((r, b)) => (r, Some(b)),
        None => (rate, None),
    };
    let per_second: f64 = rps
        .trim()
        .parse()
        .ok()
        .filter(|r: &f64| r.is_finite() && *r > 0.0)
        .ok_or_else(|| format!("'{s}': the rate must be a number of requests per second > 0"))?;
    let burst = match burst {
        None => per_second.ceil().max(1.0) as u32,
        Some(b) => b
            .trim()
            .parse()
            .ok()
            .filter(|b: &u32| *b >= 1)
            .ok_or_else(|| format!("'{s}': the burst must be a whole number ≥ 1"))?,
    };
    Ok((role.to_string(), Rate { per_second, burst }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_flags_parse() {
        assert_eq!(
            parse_rate_flag("analyst=5").unwrap(),
            (
                "analyst".into(),
                Rate {
                    per_second: 5.0,
                    burst: 5
                }
            )
        );
        assert_eq!(
            parse_rate_flag("*=0.5:3").unwrap(),
            (
                "*".into(),
                Rate {
                    per_second: 0.5,
                    burst: 3
                }
            )
        );
        assert_eq!(parse_rate_flag("x=0.2").unwrap().1.burst, 1);
        for bad in [
            "analyst", "=5", "a=0", "a=-1", "a=x", "a=5:0", "a=5:x", "a=inf",
        ] {
            assert!(parse_rate_flag(bad).is_err(), "{bad}");
        }
    }
}
