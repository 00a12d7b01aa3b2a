//! ComputeScores: one pass over every live customer's value keys, held as compact arrays (a
//! few numbers per customer, never whole records), each key normalised to its percentile rank,
//! weighted into a score of 0–100, ranked into the model's tiers, with RFM quintiles; written
//! in batched transactions, with a `tier_changed` event for every customer whose tier changed.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bakkal_domain::time::{days_between, Micros};
use bakkal_store::{NewEvent, ScoreRow, Store};

use crate::model::{ValueKey, ValueModel};
use crate::EngineError;

/// Customers read per query.
const READ_BATCH: usize = 50_000;
/// Scores written per transaction.
const WRITE_BATCH: usize = 10_000;
/// `old_tier` of a customer never scored.
const NO_TIER: u16 = u16::MAX;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScoreOutcome {
    pub scored_count: i64,
    pub changed_count: i64,
    /// Customers per tier, in the model's order.
    pub tier_counts: Vec<(String, i64)>,
    pub duration: Duration,
}

/// The numbers of every live customer, column by column.
#[derive(Default)]
struct Columns {
    ids: Vec<i64>,
    monetary: Vec<f64>,
    frequency: Vec<f64>,
    /// Days since the last order, negated (never bought: -inf).
    recency: Vec<f64>,
    tenure: Vec<f64>,
    referrals: Vec<f64>,
    attributes: BTreeMap<String, Vec<f64>>,
    old_tier: Vec<u16>,
}

/// Percentile rank of each value in 0..=1: the mid-rank of its ties over n - 1.
fn percentile_ranks(values: &[f64]) -> Vec<f64> {
    let n = values.len();
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_unstable_by(|&a, &b| values[a as usize].total_cmp(&values[b as usize]));
    let mut out = vec![1.0; n];
    if n <= 1 {
        return out;
    }
    let mut i = 0;
    while i < n {
        let v = values[order[i] as usize];
        let mut j = i + 1;
        while j < n && values[order[j] as usize].total_cmp(&v).is_eq() {
            j += 1;
        }
        let mid = (i + j - 1) as f64 / 2.0 / (n - 1) as f64;
        for &k in &order[i..j] {
            out[k as usize] = mid;
        }
        i = j;
    }
    out
}

/// Quintile 1–5 of each value: 1 + floor(5 × (values strictly below) / n).
fn quintiles(values: &[f64]) -> Vec<u8> {
    let n = values.len();
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_unstable_by(|&a, &b| values[a as usize].total_cmp(&values[b as usize]));
    let mut out = vec![1u8; n];
    let mut i = 0;
    while i < n {
        let v = values[order[i] as usize];
        let mut j = i + 1;
        while j < n && values[order[j] as usize].total_cmp(&v).is_eq() {
            j += 1;
        }
        let q = (1 + (5 * i) / n).min(5) as u8;
        for &k in &order[i..j] {
            out[k as usize] = q;
        }
        i = j;
    }
    out
}

fn attribute_number(json: &str, key: &str) -> f64 {
    let Ok(map) = serde_json::from_str::<BTreeMap<String, String>>(json) else {
        return f64::NEG_INFINITY;
    };
    map.get(key)
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .unwrap_or(f64::NEG_INFINITY)
}

/// Score every live customer with the stored value model (the default when none is set).
pub async fn compute_scores(store: &Store, now: Micros) -> Result<ScoreOutcome, EngineError> {
    let started = Instant::now();
    let model = ValueModel::from_stored(store.get_value_model().await?);
    let keys = model.keys();
    let attr_keys: Vec<String> = keys
        .iter()
        .filter_map(|(k, _)| match k {
            ValueKey::Attribute(a) => Some(a.clone()),
            _ => None,
        })
        .collect();
    let tier_index: HashMap<&str, u16> = model
        .tiers
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i as u16))
        .collect();
    // Tiers of an earlier model that this one no longer has.
    let mut other_tiers: Vec<String> = Vec::new();

    let mut cols = Columns::default();
    for a in &attr_keys {
        cols.attributes.insert(a.clone(), Vec::new());
    }
    let mut after = 0;
    loop {
        let batch = store
            .score_inputs(after, READ_BATCH, !attr_keys.is_empty())
            .await?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        let done = batch.len() < READ_BATCH;
        for r in batch {
            cols.ids.push(r.id);
            cols.monetary.push(r.total_spent as f64);
            cols.frequency.push(r.order_count as f64);
            cols.recency.push(
                r.last_order_time
                    .map_or(f64::NEG_INFINITY, |l| -(days_between(l, now) as f64)),
            );
            cols.tenure.push(
                r.first_order_time
                    .map_or(0.0, |f| days_between(f, now) as f64),
            );
            cols.referrals.push(r.referral_count as f64);
            for a in &attr_keys {
                let v = r
                    .attributes
                    .as_deref()
                    .map_or(f64::NEG_INFINITY, |j| attribute_number(j, a));
                cols.attributes.get_mut(a).expect("inserted above").push(v);
            }
            let old = match r.old_tier {
                None => NO_TIER,
                Some(t) => match tier_index.get(t.as_str()) {
                    Some(&i) => i,
                    None => {
                        let pos = match other_tiers.iter().position(|o| *o == t) {
                            Some(p) => p,
                            None => {
                                other_tiers.push(t);
                                other_tiers.len() - 1
                            }
                        };
                        (model.tiers.len() + pos).min(NO_TIER as usize - 1) as u16
                    }
                },
            };
            cols.old_tier.push(old);
        }
        if done {
            break;
        }
    }

    // The number crunching is CPU work: off the async runtime.
    let model2 = model.clone();
    let (cols, scores, tiers, rfm) = tokio::task::spawn_blocking(move || {
        let n = cols.ids.len();
        let total_weight: f64 = keys.iter().map(|(_, w)| w).sum();
        let mut scores = vec![0.0f64; n];
        for (k, w) in &keys {
            let ranks = match k {
                ValueKey::Monetary => percentile_ranks(&cols.monetary),
                ValueKey::Frequency => percentile_ranks(&cols.frequency),
                ValueKey::Recency => percentile_ranks(&cols.recency),
                ValueKey::Tenure => percentile_ranks(&cols.tenure),
                ValueKey::Referrals => percentile_ranks(&cols.referrals),
                ValueKey::Attribute(a) => percentile_ranks(&cols.attributes[a]),
            };
            for (s, r) in scores.iter_mut().zip(ranks) {
                *s += w * r;
            }
        }
        for s in &mut scores {
            *s = (*s / total_weight * 100.0 * 1e6).round() / 1e6;
        }
        // Rank: score descending, then id ascending.
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            scores[b as usize]
                .total_cmp(&scores[a as usize])
                .then(cols.ids[a as usize].cmp(&cols.ids[b as usize]))
        });
        let mut tiers = vec![0u16; n];
        let mut pos = 0;
        for (t, size) in model2.tier_sizes(n).into_iter().enumerate() {
            for &k in &order[pos..pos + size] {
                tiers[k as usize] = t as u16;
            }
            pos += size;
        }
        let rfm = [
            quintiles(&cols.recency),
            quintiles(&cols.frequency),
            quintiles(&cols.monetary),
        ];
        (cols, scores, tiers, rfm)
    })
    .await
    .map_err(|e| EngineError::Internal(e.to_string()))?;

    let n = cols.ids.len();
    let mut tier_counts = vec![0i64; model.tiers.len()];
    let mut changed = 0i64;
    let tier_name = |i: u16| -> &str {
        let i = i as usize;
        if i < model.tiers.len() {
            &model.tiers[i].name
        } else {
            other_tiers
                .get(i - model.tiers.len())
                .map_or("", |s| s.as_str())
        }
    };
    let mut start = 0;
    while start < n {
        let end = (start + WRITE_BATCH).min(n);
        let mut rows = Vec::with_capacity(end - start);
        let mut events = Vec::new();
        for i in start..end {
            let t = tiers[i];
            tier_counts[t as usize] += 1;
            let name = &model.tiers[t as usize].name;
            let old = cols.old_tier[i];
            if old != NO_TIER && old != t {
                changed += 1;
                events.push(NewEvent {
                    kind: "tier_changed",
                    customer_id: cols.ids[i],
                    payload: serde_json::json!({
                        "from": tier_name(old),
                        "to": name,
                        "score": scores[i],
                    })
                    .to_string(),
                });
            }
            rows.push(ScoreRow {
                customer_id: cols.ids[i],
                score: scores[i],
                tier: name.clone(),
                rfm: [rfm[0][i] as i64, rfm[1][i] as i64, rfm[2][i] as i64],
            });
        }
        store.write_scores(&rows, &events, now).await?;
        start = end;
    }
    Ok(ScoreOutcome {
        scored_count: n as i64,
        changed_count: changed,
        tier_counts: model
            .tiers
            .iter()
            .map(|t| t.name.clone())
            .zip(tier_counts)
            .collect(),
        duration: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_quintiles() {
        let r = percentile_ranks(&[10.0, 20.0, 20.0, 40.0]);
        assert_eq!(r, vec![0.0, 0.5, 0.5, 1.0]);
        let q = quintiles(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!(q, vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        assert_eq!(quintiles(&[0.0, 0.0, 0.0, 5.0]), vec![1, 1, 1, 4]);
        assert_eq!(attribute_number(r#"{"visits":" 7 "}"#, "visits"), 7.0);
        assert_eq!(attribute_number("{}", "visits"), f64::NEG_INFINITY);
    }
}
