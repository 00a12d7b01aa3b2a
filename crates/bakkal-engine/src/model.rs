//! The value model: which value keys weigh how much, and how the ranked customers are cut
//! into named tiers by percentile.

use std::collections::BTreeMap;

use bakkal_domain::time::Micros;
use bakkal_domain::ValidationError;
use bakkal_store::StoredValueModel;
use serde::{Deserialize, Serialize};

/// The built-in value keys; any other key must be `attributes.{name}` (a numeric custom
/// attribute).
pub const BUILTIN_KEYS: &[&str] = &["monetary", "frequency", "recency", "tenure", "referrals"];

/// Most tiers and weights a model may have.
pub const MAX_TIERS: usize = 20;
pub const MAX_WEIGHTS: usize = 32;

/// A named tier: the next `percent` of customers by score, from the top. The last tier takes
/// everyone left (its `percent` is ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tier {
    pub name: String,
    pub percent: f64,
}

/// A value key the model weighs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ValueKey {
    /// `total_spent`.
    Monetary,
    /// `order_count`.
    Frequency,
    /// `days_since_last_order`, inverted (recent is better; never bought is worst).
    Recency,
    /// `tenure_days`.
    Tenure,
    /// `referral_count`.
    Referrals,
    /// A numeric custom attribute (missing or not a number ranks lowest).
    Attribute(String),
}

impl ValueKey {
    pub fn parse(s: &str) -> Option<ValueKey> {
        Some(match s {
            "monetary" => ValueKey::Monetary,
            "frequency" => ValueKey::Frequency,
            "recency" => ValueKey::Recency,
            "tenure" => ValueKey::Tenure,
            "referrals" => ValueKey::Referrals,
            _ => {
                let name = s.strip_prefix("attributes.")?;
                if !is_attribute_key(name) {
                    return None;
                }
                ValueKey::Attribute(name.to_string())
            }
        })
    }
}

/// Letters, digits, `_` and `-`, 1–64 of them: safe in a JSON path.
pub fn is_attribute_key(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValueModel {
    /// Key → weight (≥ 0; at least one > 0).
    pub weights: BTreeMap<String, f64>,
    pub tiers: Vec<Tier>,
    /// When it was last set; `None` for the built-in default.
    pub update_time: Option<Micros>,
}

impl Default for ValueModel {
    /// Monetary 0.4, frequency 0.3, recency 0.2, tenure 0.05, referrals 0.05; top 1 %
    /// Platinum, next 4 % Gold, next 15 % Silver, next 30 % Bronze, rest Standard.
    fn default() -> Self {
        let weights = [
            ("monetary", 0.4),
            ("frequency", 0.3),
            ("recency", 0.2),
            ("tenure", 0.05),
            ("referrals", 0.05),
        ]
        .into_iter()
        .map(|(k, w)| (k.to_string(), w))
        .collect();
        let tiers = [
            ("Platinum", 1.0),
            ("Gold", 4.0),
            ("Silver", 15.0),
            ("Bronze", 30.0),
            ("Standard", 50.0),
        ]
        .into_iter()
        .map(|(n, p)| Tier {
            name: n.to_string(),
            percent: p,
        })
        .collect();
        ValueModel {
            weights,
            tiers,
            update_time: None,
        }
    }
}

impl ValueModel {
    /// Check a model as a caller sent it; field names are under `prefix` (`value_model`).
    /// Empty weights or tiers take the default's.
    pub fn checked(
        weights: BTreeMap<String, f64>,
        tiers: Vec<Tier>,
        prefix: &str,
    ) -> Result<ValueModel, ValidationError> {
        let default = ValueModel::default();
        let mut errs = ValidationError::new();
        let weights = if weights.is_empty() {
            default.weights
        } else {
            weights
        };
        let tiers = if tiers.is_empty() {
            default.tiers
        } else {
            tiers
        };
        if weights.len() > MAX_WEIGHTS {
            errs.add(
                format!("{prefix}.weights"),
                format!("at most {MAX_WEIGHTS} keys"),
            );
        }
        let mut positive = false;
        for (k, w) in &weights {
            let field = format!("{prefix}.weights[{k}]");
            if ValueKey::parse(k).is_none() {
                errs.add(
                    field.as_str(),
                    format!(
                        "unknown value key '{k}': use {} or attributes.NAME",
                        BUILTIN_KEYS.join(", ")
                    ),
                );
            } else if !w.is_finite() || *w < 0.0 {
                errs.add(field.as_str(), "must be a number >= 0");
            } else if *w > 0.0 {
                positive = true;
            }
        }
        if !positive {
            errs.add(
                format!("{prefix}.weights"),
                "at least one weight must be above 0",
            );
        }
        if tiers.len() > MAX_TIERS {
            errs.add(
                format!("{prefix}.tiers"),
                format!("at most {MAX_TIERS} tiers"),
            );
        }
        let mut sum = 0.0;
        let mut names = std::collections::HashSet::new();
        for (i, t) in tiers.iter().enumerate() {
            let name = t.name.trim();
            if name.is_empty() || name.chars().count() > 64 {
                errs.add(
                    format!("{prefix}.tiers[{i}].display_name"),
                    "is required, at most 64 characters",
                );
            } else if !names.insert(name.to_string()) {
                errs.add(
                    format!("{prefix}.tiers[{i}].display_name"),
                    format!("'{name}' is used twice"),
                );
            }
            if i + 1 < tiers.len() {
                if !t.percent.is_finite() || t.percent <= 0.0 {
                    errs.add(
                        format!("{prefix}.tiers[{i}].percent"),
                        "must be above 0 (the last tier takes the rest)",
                    );
                } else {
                    sum += t.percent;
                }
            }
        }
        if sum > 100.0 + 1e-9 {
            errs.add(
                format!("{prefix}.tiers"),
                format!("the tiers above the last add up to {sum}%, more than 100%"),
            );
        }
        errs.into_result()?;
        let tiers = tiers
            .into_iter()
            .map(|t| Tier {
                name: t.name.trim().to_string(),
                percent: t.percent,
            })
            .collect();
        Ok(ValueModel {
            weights,
            tiers,
            update_time: None,
        })
    }

    /// The weighted keys with weight > 0, parsed.
    pub fn keys(&self) -> Vec<(ValueKey, f64)> {
        self.weights
            .iter()
            .filter(|(_, w)| **w > 0.0)
            .filter_map(|(k, w)| Some((ValueKey::parse(k)?, *w)))
            .collect()
    }

    pub fn weights_json(&self) -> String {
        serde_json::to_string(&self.weights).unwrap_or_else(|_| "{}".into())
    }

    pub fn tiers_json(&self) -> String {
        serde_json::to_string(&self.tiers).unwrap_or_else(|_| "[]".into())
    }

    /// The stored model, or the default when none was set (or it cannot be read).
    pub fn from_stored(stored: Option<StoredValueModel>) -> ValueModel {
        let Some(s) = stored else {
            return ValueModel::default();
        };
        match (
            serde_json::from_str::<BTreeMap<String, f64>>(&s.weights_json),
            serde_json::from_str::<Vec<Tier>>(&s.tiers_json),
        ) {
            (Ok(weights), Ok(tiers)) if !tiers.is_empty() => ValueModel {
                weights,
                tiers,
                update_time: Some(s.update_time),
            },
            _ => ValueModel::default(),
        }
    }

    /// How many of `n` ranked customers each tier takes, top first.
    pub fn tier_sizes(&self, n: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.tiers.len());
        let mut cum = 0.0;
        let mut taken = 0usize;
        for (i, t) in self.tiers.iter().enumerate() {
            let end = if i + 1 == self.tiers.len() {
                n
            } else {
                cum += t.percent;
                (((cum / 100.0) * n as f64).round() as usize).min(n)
            };
            let size = end.saturating_sub(taken);
            out.push(size);
            taken += size;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tiers_cut_100_customers() {
        assert_eq!(
            ValueModel::default().tier_sizes(100),
            vec![1, 4, 15, 30, 50]
        );
        assert_eq!(ValueModel::default().tier_sizes(0), vec![0, 0, 0, 0, 0]);
    }

    #[test]
    fn checks() {
        let mut w = BTreeMap::new();
        w.insert("nope".to_string(), 1.0);
        w.insert("attributes.bad key".to_string(), 1.0);
        let e = ValueModel::checked(w, vec![], "value_model").unwrap_err();
        assert_eq!(e.violations.len(), 3);
        let mut w = BTreeMap::new();
        w.insert("attributes.visits".to_string(), 2.0);
        let m = ValueModel::checked(w, vec![], "value_model").unwrap();
        assert_eq!(m.keys(), vec![(ValueKey::Attribute("visits".into()), 2.0)]);
    }
}
