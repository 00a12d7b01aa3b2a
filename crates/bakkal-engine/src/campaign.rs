//! Campaign runs: a MESSAGE script over a segment's stored members, in keyset batches. Each
//! customer is held out (a deterministic hash of campaign and customer), suppressed (no
//! consent on the channel, already messaged by this campaign, quiet hours, over the frequency
//! cap across all campaigns) or messaged; the script runs off the async runtime; each batch's
//! messages and counters are written in one transaction with idempotency keys, so a relaunch
//! queues nothing twice and a resumed run finishes the rest.

use std::collections::HashMap;
use std::sync::Arc;

use bakkal_domain::time::Micros;
use bakkal_domain::{ConsentChannel, Customer};
use bakkal_script::{Cancel, CompiledScript, Event, ScriptCustomer, ScriptHost};
use bakkal_store::{
    BatchPosition, Campaign, CampaignRun, Lease, NewHoldout, NewMessage, RunCounters, Store,
    Trigger,
};

use crate::segment::ErrorExample;
use crate::EngineError;

/// Customers per batch (and per transaction).
pub const BATCH: usize = 2000;

const MICROS_PER_DAY: i64 = 86_400_000_000;
const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// The outbox idempotency key of a campaign's message to a customer on an occasion: `once`
/// (a "once now" or "at a time" campaign), `occurrences/{n}` (a recurring campaign's n-th
/// occurrence) or `events/{id}` (an event campaign).
pub fn message_key(campaign_id: i64, customer_id: i64, occasion: &str) -> String {
    format!("campaigns/{campaign_id}:customers/{customer_id}:{occasion}")
}

/// The occasion of a run's messages: `once`, or `occurrences/{n}` for a recurring campaign.
pub fn run_occasion(occurrence: i64) -> String {
    if occurrence > 0 {
        format!("occurrences/{occurrence}")
    } else {
        "once".to_string()
    }
}

/// One decision to make: a customer, the occasion (the end of the message key) and the event
/// the MESSAGE script gets.
#[derive(Debug, Clone)]
pub struct Target {
    pub customer_id: i64,
    pub occasion: String,
    pub event: Event,
}

/// The event a run's members get: kind `campaign` with `campaign`, `strategy`, `channel` (and
/// `occurrence` for a recurring campaign).
pub fn campaign_event(campaign: &Campaign, occurrence: i64) -> Event {
    let f = &campaign.fields;
    let e = Event::new("campaign")
        .with("campaign", campaign.name())
        .with("strategy", f.strategy.clone())
        .with("channel", f.channel.clone());
    if occurrence > 0 {
        e.with("occurrence", occurrence)
    } else {
        e
    }
}

/// The targets of a run's batch of members.
pub fn member_targets(campaign: &Campaign, ids: &[i64], occurrence: i64) -> Vec<Target> {
    let event = campaign_event(campaign, occurrence);
    let occasion = run_occasion(occurrence);
    ids.iter()
        .map(|&customer_id| Target {
            customer_id,
            occasion: occasion.clone(),
            event: event.clone(),
        })
        .collect()
}

/// Is the customer in the campaign's holdout? FNV-1a of campaign and customer, so a customer
/// always lands in the same group of a campaign.
pub fn in_holdout(campaign_id: i64, customer_id: i64, percent: i64) -> bool {
    if percent <= 0 {
        return false;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{campaign_id}:{customer_id}").bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // mix the high bits in: FNV's low bits vary little over short keys
    h ^= h >> 29;
    ((h % 100) as i64) < percent
}

/// Is `now` inside the UTC quiet hours `[start, end)` (wrapping past midnight)?
pub fn in_quiet_hours(quiet: Option<(i64, i64)>, now: Micros) -> bool {
    let Some((start, end)) = quiet else {
        return false;
    };
    let hour = now.rem_euclid(24 * MICROS_PER_HOUR) / MICROS_PER_HOUR;
    if start <= end {
        hour >= start && hour < end
    } else {
        hour >= start || hour < end
    }
}

pub fn channel_of(name: &str) -> Option<ConsentChannel> {
    ConsentChannel::ALL.into_iter().find(|c| c.as_str() == name)
}

/// A message a run would queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WouldBe {
    pub message: NewMessage,
}

/// What one batch decided.
pub struct BatchDecision {
    pub counters: RunCounters,
    pub messages: Vec<NewMessage>,
    pub holdouts: Vec<NewHoldout>,
    pub errors: Vec<ErrorExample>,
}

/// A batch read and sorted, its scripts not run yet: the counters so far, the held-out
/// customers, and the customers (with their targets) to run the MESSAGE script for.
pub struct Prepared {
    counters: RunCounters,
    holdouts: Vec<NewHoldout>,
    work: Vec<(Customer, Target)>,
    now: Micros,
}

/// Decide one batch of targets (a run's members, or events): held out, no consent, already
/// messaged on this occasion, quiet hours, over the frequency cap, else the MESSAGE script
/// with the target's event. Gives the counters, the messages to queue and the held-out
/// customers to record.
pub async fn decide(
    store: &Store,
    host: &Arc<ScriptHost>,
    script: &Arc<CompiledScript>,
    campaign: &Campaign,
    targets: Vec<Target>,
    now: Micros,
) -> Result<BatchDecision, EngineError> {
    let prepared = prepare(store, campaign, targets, now, true).await?;
    let cancel = Cancel::child_of(host.stopping());
    let _cancel_when_dropped = cancel.cancel_on_drop();
    render(host, script, campaign, prepared, &cancel).await
}

/// The reads of [`decide`]: everything but the script. `check_sent: false` skips looking the
/// message keys up, for a run that cannot have sent any of them yet (a key written meanwhile
/// is still skipped when the batch is written, and counted as already sent).
pub async fn prepare(
    store: &Store,
    campaign: &Campaign,
    targets: Vec<Target>,
    now: Micros,
    check_sent: bool,
) -> Result<Prepared, EngineError> {
    let f = &campaign.fields;
    let mut counters = RunCounters::default();
    let mut ids: Vec<i64> = targets.iter().map(|t| t.customer_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut customers: HashMap<i64, Customer> = store
        .live_customers(&ids)
        .await?
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let channel = channel_of(&f.channel);
    let quiet = in_quiet_hours(f.quiet_hours, now);
    let mut holdouts = Vec::new();
    let mut treated: Vec<Target> = Vec::new();
    for t in targets {
        let Some(c) = customers.get(&t.customer_id) else {
            continue;
        };
        counters.evaluated += 1;
        if in_holdout(campaign.id, c.id, f.holdout_percent) {
            counters.held_out += 1;
            holdouts.push(NewHoldout {
                customer_id: c.id,
                occurrence: t.occasion,
            });
            continue;
        }
        counters.targeted += 1;
        if !channel.is_some_and(|ch| c.fields.consent.get(ch).granted) {
            counters.suppressed_no_consent += 1;
            continue;
        }
        treated.push(t);
    }
    if check_sent {
        let key = |t: &Target| message_key(campaign.id, t.customer_id, &t.occasion);
        let keys: Vec<String> = treated.iter().map(key).collect();
        let sent = store.existing_message_keys(&keys).await?;
        treated.retain(|t| {
            let already = sent.contains(&key(t));
            if already {
                counters.suppressed_already_sent += 1;
            }
            !already
        });
    }
    if quiet {
        counters.suppressed_quiet_hours += treated.len() as i64;
        treated.clear();
    }
    if f.cap_max_messages > 0 && !treated.is_empty() {
        let ids: Vec<i64> = treated.iter().map(|t| t.customer_id).collect();
        let since = now - f.cap_per_days.max(1) * MICROS_PER_DAY;
        // what the store has, plus what this batch takes (a customer with two events)
        let mut counts = store.recent_message_counts(&ids, since).await?;
        treated.retain(|t| {
            let n = counts.entry(t.customer_id).or_insert(0);
            let capped = *n >= f.cap_max_messages;
            if capped {
                counters.suppressed_capped += 1;
            } else {
                *n += 1;
            }
            !capped
        });
    }
    // a customer with two events is rendered twice: the last of them takes the record
    let mut left: HashMap<i64, usize> = HashMap::with_capacity(treated.len());
    for t in &treated {
        *left.entry(t.customer_id).or_insert(0) += 1;
    }
    let mut work: Vec<(Customer, Target)> = Vec::with_capacity(treated.len());
    for t in treated {
        let n = left.entry(t.customer_id).or_insert(1);
        *n -= 1;
        let c = if *n > 0 {
            customers.get(&t.customer_id).cloned()
        } else {
            customers.remove(&t.customer_id)
        };
        if let Some(c) = c {
            work.push((c, t));
        }
    }
    Ok(Prepared {
        counters,
        holdouts,
        work,
        now,
    })
}

/// The script part of [`decide`]: the MESSAGE script for each prepared customer, on every
/// core (the batch in one slice per thread), off the async runtime. Fails with
/// [`EngineError::Cancelled`] when `cancel` is cancelled before every customer was rendered.
pub async fn render(
    host: &Arc<ScriptHost>,
    script: &Arc<CompiledScript>,
    campaign: &Campaign,
    prepared: Prepared,
    cancel: &Cancel,
) -> Result<BatchDecision, EngineError> {
    let Prepared {
        mut counters,
        holdouts,
        work,
        now,
    } = prepared;
    if work.is_empty() {
        return Ok(BatchDecision {
            counters,
            messages: Vec::new(),
            holdouts,
            errors: Vec::new(),
        });
    }
    let host = host.clone();
    let script = script.clone();
    let campaign_id = campaign.id;
    let channel_name = campaign.fields.channel.clone();
    let threads = crate::threads();
    let cancel = cancel.clone();
    let rendered = tokio::task::spawn_blocking(move || {
        crate::parallel::each_on_all_cores(work, threads, &cancel, |(c, t)| {
            let id = c.id;
            let sc = ScriptCustomer::new(c, Vec::new());
            host.eval_message(&script, &sc, &t.event, now)
                .value
                .map(|m| {
                    m.map(|m| NewMessage {
                        customer_id: id,
                        channel: channel_name.clone(),
                        subject: m.subject,
                        body: m.body,
                        idempotency_key: message_key(campaign_id, id, &t.occasion),
                    })
                })
                .map_err(|e| ErrorExample {
                    customer: bakkal_domain::name::customer_name(id),
                    message: e.to_string(),
                })
        })
    })
    .await
    .map_err(|e| EngineError::Internal(e.to_string()))??;
    let mut messages = Vec::with_capacity(rendered.len());
    let mut errors = Vec::new();
    for r in rendered {
        match r {
            Ok(Some(m)) => messages.push(m),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    counters.script_errors = errors.len() as i64;
    Ok(BatchDecision {
        counters,
        messages,
        holdouts,
        errors,
    })
}

/// How often a run looks whether its campaign was paused while a batch's scripts run.
pub const PAUSE_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Run a campaign's started run to its end: every member after the run's position, batch by
/// batch. Stops early (run PAUSED) when the campaign is paused meanwhile, and stops without
/// a word (the run stays RUNNING) when `lease` is given and another server took it over:
/// each batch is written only while the lease is held, and writing it renews the lease.
/// A recurring campaign goes back to SCHEDULED at the end, any other to COMPLETED. When the
/// script host is stopped (the server shutting down) the run stops with
/// [`EngineError::Cancelled`] and stays RUNNING, to be resumed from its last written batch.
///
/// Three batches are in flight at once, one per stage: one is read (members, customers,
/// keys, caps), the one before has its scripts run, and the one before that is written.
/// Members of different batches are different customers, so no stage sees another's work.
/// The campaign's state is also looked at every [`PAUSE_POLL`] while they run: a pause stops
/// the batch whose scripts are running (it is not written; a resume renders it again) after
/// one script call per thread at most.
pub async fn run(
    store: &Store,
    host: &Arc<ScriptHost>,
    script: &Arc<CompiledScript>,
    campaign: &Campaign,
    run: &CampaignRun,
    lease: Option<&Lease>,
    now: impl Fn() -> Micros,
) -> Result<CampaignRun, EngineError> {
    let cancel = Cancel::child_of(host.stopping());
    let _cancel_when_dropped = cancel.cancel_on_drop();
    let paused = async {
        loop {
            tokio::time::sleep(PAUSE_POLL).await;
            if let Ok(c) = store.get_campaign(campaign.id).await {
                if c.state != "RUNNING" {
                    cancel.cancel();
                    break;
                }
            }
        }
        std::future::pending::<Result<CampaignRun, EngineError>>().await
    };
    tokio::select! {
        biased;
        r = pipeline(store, host, script, campaign, run, lease, &now, &cancel) => r,
        r = paused => r,
    }
}

#[allow(clippy::too_many_arguments)]
async fn pipeline(
    store: &Store,
    host: &Arc<ScriptHost>,
    script: &Arc<CompiledScript>,
    campaign: &Campaign,
    run: &CampaignRun,
    lease: Option<&Lease>,
    now: &impl Fn() -> Micros,
    cancel: &Cancel,
) -> Result<CampaignRun, EngineError> {
    let mut after = run.last_customer_id;
    let mut current = run.clone();
    // Only another run of this campaign can have taken this run's message keys (this run's
    // own messages are all at or before its written position).
    let check_sent = store
        .campaign_has_messages_outside_run(campaign.id, run.id)
        .await?;
    // (batch, the last member in it)
    let mut to_render: Option<(Prepared, i64)> = None;
    let mut to_write: Option<(BatchDecision, i64, Micros)> = None;
    let apply = |w: Option<(BatchDecision, i64, Micros)>| async move {
        let Some((d, last, t)) = w else {
            return Ok(Some(None));
        };
        store
            .apply_campaign_batch(
                campaign.id,
                run.id,
                d.counters,
                &d.messages,
                &d.holdouts,
                BatchPosition::Customer(last),
                lease,
                t,
            )
            .await
            .map(|r| r.map(Some))
    };
    let render_next = |p: Option<(Prepared, i64)>| async move {
        match p {
            Some((p, last)) => {
                let t = p.now;
                let d = render(host, script, campaign, p, cancel).await?;
                Ok::<_, EngineError>(Some((d, last, t)))
            }
            None => Ok(None),
        }
    };
    // Stop: what was rendered is written; the batch not rendered yet waits for a resume.
    let stop = |to_write: Option<(BatchDecision, i64, Micros)>, current: CampaignRun| async move {
        let state = store.get_campaign(campaign.id).await?.state;
        if state == "RUNNING" {
            // the server is stopping: the run stays RUNNING for a resume
            apply(to_write).await?;
            return Err(EngineError::Cancelled);
        }
        match apply(to_write).await? {
            Some(_) => {}
            None => return Ok(current),
        }
        Ok(store
            .finish_campaign_run(campaign.id, run.id, "PAUSED", "PAUSED", now())
            .await?)
    };
    let mut exhausted = false;
    loop {
        if !exhausted {
            let state = store.get_campaign(campaign.id).await?.state;
            if state != "RUNNING" {
                cancel.cancel();
                return stop(to_write.take(), current).await;
            }
        }
        let read = async {
            if exhausted {
                return Ok::<_, EngineError>(None);
            }
            let ids = store
                .segment_members_after(campaign.fields.audience_segment_id, after, BATCH)
                .await?;
            let Some(&last) = ids.last() else {
                return Ok(None);
            };
            let t = now();
            let targets = member_targets(campaign, &ids, run.occurrence);
            let full = ids.len() == BATCH;
            Ok(Some((
                prepare(store, campaign, targets, t, check_sent).await?,
                last,
                full,
            )))
        };
        let (written, rendered, read) =
            tokio::join!(apply(to_write.take()), render_next(to_render.take()), read);
        match written? {
            Some(Some(r)) => current = r,
            Some(None) => {}
            // another server took the run over from its last written position
            None => return Ok(current),
        }
        match rendered {
            Err(EngineError::Cancelled) => return stop(None, current).await,
            r => to_write = r?,
        }
        match read? {
            Some((p, last, full)) => {
                after = last;
                to_render = Some((p, last));
                exhausted = !full;
            }
            None => exhausted = true,
        }
        if exhausted && to_render.is_none() && to_write.is_none() {
            break;
        }
    }
    let end_state = match campaign.fields.trigger {
        Trigger::Recurring { .. } => "SCHEDULED",
        _ => "COMPLETED",
    };
    Ok(store
        .finish_campaign_run(campaign.id, run.id, "COMPLETED", end_state, now())
        .await?)
}

/// The messages the campaign would queue for the first members, nothing written (an event
/// campaign's members each get a bare event of its kind, with the field `dry_run`). Gives the
/// would-be messages (at most `sample`), the counters over the members looked at, and the
/// first script errors.
pub async fn dry_run(
    store: &Store,
    host: &Arc<ScriptHost>,
    script: &Arc<CompiledScript>,
    campaign: &Campaign,
    sample: usize,
    now: Micros,
) -> Result<(Vec<NewMessage>, RunCounters, Vec<ErrorExample>), EngineError> {
    let mut after = 0;
    let mut out = Vec::new();
    let mut total = RunCounters::default();
    let mut errors = Vec::new();
    while out.len() < sample {
        let ids = store
            .segment_members_after(
                campaign.fields.audience_segment_id,
                after,
                sample.min(BATCH),
            )
            .await?;
        let Some(&last) = ids.last() else {
            break;
        };
        let occurrence = match campaign.fields.trigger {
            Trigger::Recurring { .. } => campaign.last_occurrence + 1,
            _ => 0,
        };
        let mut targets = member_targets(campaign, &ids, occurrence);
        if let Trigger::Event { kind, .. } = &campaign.fields.trigger {
            // an event campaign's script expects its kind: a bare event of it
            for t in &mut targets {
                t.event = Event::new(kind.clone()).with("dry_run", true);
                t.occasion = "events/0".to_string();
            }
        }
        let d = decide(store, host, script, campaign, targets, now).await?;
        add(&mut total, &d.counters);
        out.extend(d.messages);
        errors.extend(d.errors);
        after = last;
        if ids.len() < sample.min(BATCH) {
            break;
        }
    }
    out.truncate(sample);
    total.queued = out.len() as i64;
    errors.truncate(5);
    Ok((out, total, errors))
}

pub(crate) fn add(a: &mut RunCounters, b: &RunCounters) {
    a.evaluated += b.evaluated;
    a.targeted += b.targeted;
    a.held_out += b.held_out;
    a.suppressed_no_consent += b.suppressed_no_consent;
    a.suppressed_capped += b.suppressed_capped;
    a.suppressed_quiet_hours += b.suppressed_quiet_hours;
    a.suppressed_already_sent += b.suppressed_already_sent;
    a.queued += b.queued;
    a.script_errors += b.script_errors;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdout_is_deterministic_and_near_its_share() {
        let n = (1..=10_000).filter(|&c| in_holdout(7, c, 20)).count();
        assert!((1500..2500).contains(&n), "{n}");
        assert_eq!(in_holdout(7, 42, 20), in_holdout(7, 42, 20));
        assert!(!in_holdout(7, 42, 0));
    }

    #[test]
    fn quiet_hours_wrap() {
        let h = |x: i64| x * MICROS_PER_HOUR;
        assert!(in_quiet_hours(Some((22, 7)), h(23)));
        assert!(in_quiet_hours(Some((22, 7)), h(3)));
        assert!(!in_quiet_hours(Some((22, 7)), h(12)));
        assert!(in_quiet_hours(Some((0, 24)), h(12)));
        assert!(!in_quiet_hours(None, h(12)));
    }
}
