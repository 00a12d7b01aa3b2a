//! Campaign triggers: when a recurring campaign's next occurrence is due, and event campaigns,
//! which decide each new event of their kind for an audience member like a run decides a
//! member ([`campaign::decide`], same holdout, consent, cap and quiet hours), with the event
//! handed to the MESSAGE script. Runs of the server's scheduler (`src/scheduler.rs`) call in
//! here; every time is passed in, so tests choose the clock.

use std::sync::Arc;

use bakkal_domain::time::Micros;
use bakkal_script::{CompiledScript, Event, ScriptHost, ScriptKind};
use bakkal_store::{
    segment_name, BatchPosition, Campaign, CampaignRun, Lease, Store, StoreError, StoredEvent,
    Trigger,
};

use crate::campaign::{decide, Target, BATCH};
use crate::EngineError;

/// The event kinds a campaign can be triggered by.
pub const EVENT_KINDS: [&str; 5] = [
    "order_placed",
    "inactive",
    "birthday",
    "tier_changed",
    "segment_entered",
];

/// The occurrence of a recurring trigger to start at `now`, if one is due: the latest whose
/// time (`start + (n − 1) × period`) has come, when it is after `last` (missed occurrences
/// are not caught up: a server that was down starts only the latest).
pub fn due_occurrence(start: Micros, period: Micros, last: i64, now: Micros) -> Option<i64> {
    if period <= 0 || now < start {
        return None;
    }
    let n = (now - start) / period + 1;
    (n > last).then_some(n)
}

/// When occurrence `n` (1-based) of a recurring trigger is.
pub fn occurrence_time(start: Micros, period: Micros, n: i64) -> Micros {
    start + (n.max(1) - 1) * period
}

/// When the scheduler should start a run of this SCHEDULED campaign next, if ever.
pub fn next_start(campaign: &Campaign) -> Option<Micros> {
    match &campaign.fields.trigger {
        Trigger::At { time } => Some(*time),
        t @ Trigger::Recurring { start, .. } => {
            let period = t.period()?;
            Some(occurrence_time(
                *start,
                period,
                campaign.last_occurrence + 1,
            ))
        }
        _ => None,
    }
}

/// Load and compile a campaign's MESSAGE script (through the host's cache). A script that is
/// gone or does not compile is a failed precondition.
pub async fn message_script(
    store: &Store,
    host: &Arc<ScriptHost>,
    reference: &str,
) -> Result<Arc<CompiledScript>, EngineError> {
    let (id, revision) = bakkal_domain::name::parse_script(reference).ok_or_else(|| {
        StoreError::FailedPrecondition(format!("'{reference}' is not a script name"))
    })?;
    let s = store.get_script(id, revision).await?;
    if s.kind != ScriptKind::Message.as_str() {
        return Err(StoreError::FailedPrecondition(format!(
            "{reference} is a {} script, not MESSAGE",
            s.kind
        ))
        .into());
    }
    let key = bakkal_store::script_revision_name(s.id, s.revision.revision);
    let source = s.revision.source;
    let host = host.clone();
    let compiled = tokio::task::spawn_blocking(move || {
        host.compile_cached(&key, ScriptKind::Message, &source)
    })
    .await
    .map_err(|e| EngineError::Internal(e.to_string()))?;
    compiled.map(Arc::new).map_err(|d| {
        let first = d.first().map(|d| d.message.clone()).unwrap_or_default();
        StoreError::FailedPrecondition(format!("{reference} does not compile: {first}")).into()
    })
}

/// The event a MESSAGE script gets for a stored event: its kind, its payload's fields, `event`
/// (`events/{id}`) and its time.
pub fn script_event(e: &StoredEvent) -> Event {
    let fields = serde_json::from_str::<serde_json::Value>(&e.payload)
        .ok()
        .filter(|v| v.is_object())
        .unwrap_or_else(|| serde_json::json!({}));
    let doc = serde_json::json!({"kind": e.kind, "fields": fields});
    let mut event = Event::from_json(&doc).unwrap_or_else(|_| Event::new(e.kind.clone()));
    event = event.with("event", format!("events/{}", e.id));
    event.time = Some(e.create_time);
    event
}

/// Does this event trigger the campaign (before the audience check)?
fn matches(campaign: &Campaign, e: &StoredEvent) -> bool {
    let Trigger::Event {
        kind,
        inactive_days,
    } = &campaign.fields.trigger
    else {
        return false;
    };
    if &e.kind != kind {
        return false;
    }
    let payload = || serde_json::from_str::<serde_json::Value>(&e.payload).unwrap_or_default();
    match kind.as_str() {
        "segment_entered" => {
            payload()["segment"] == segment_name(campaign.fields.audience_segment_id).as_str()
        }
        "inactive" => payload()["days"].as_i64() == Some(*inactive_days),
        _ => true,
    }
}

/// Are there events this event campaign's run has not looked at? (A read, before taking a
/// lease.)
pub async fn has_pending_events(
    store: &Store,
    campaign: &Campaign,
    run: &CampaignRun,
) -> Result<bool, EngineError> {
    let Trigger::Event { kind, .. } = &campaign.fields.trigger else {
        return Ok(false);
    };
    Ok(!store
        .events_after(kind, run.last_event_id, 1)
        .await?
        .is_empty())
}

/// Handle the new events of an event campaign's run, batch by batch, each batch (messages,
/// held-out customers, counters, the last event looked at) in one transaction. Stops when
/// no event is left, the campaign is no longer RUNNING, or the lease is lost.
pub async fn handle_events(
    store: &Store,
    host: &Arc<ScriptHost>,
    script: &Arc<CompiledScript>,
    campaign: &Campaign,
    run: &CampaignRun,
    lease: &Lease,
    now: impl Fn() -> Micros,
) -> Result<CampaignRun, EngineError> {
    let Trigger::Event { kind, .. } = &campaign.fields.trigger else {
        return Ok(run.clone());
    };
    let mut current = run.clone();
    loop {
        if !store.claim_lease(lease, now()).await? {
            return Ok(current);
        }
        if store.get_campaign(campaign.id).await?.state != "RUNNING" {
            return Ok(current);
        }
        let events = store
            .events_after(kind, current.last_event_id, BATCH)
            .await?;
        let Some(last) = events.last().map(|e| e.id) else {
            return Ok(current);
        };
        let wanted: Vec<&StoredEvent> = events.iter().filter(|e| matches(campaign, e)).collect();
        let mut ids: Vec<i64> = wanted.iter().map(|e| e.customer_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let members = store
            .members_among(campaign.fields.audience_segment_id, &ids)
            .await?;
        let targets: Vec<Target> = wanted
            .into_iter()
            .filter(|e| members.binary_search(&e.customer_id).is_ok())
            .map(|e| Target {
                customer_id: e.customer_id,
                occasion: format!("events/{}", e.id),
                event: script_event(e),
            })
            .collect();
        let t = now();
        let d = decide(store, host, script, campaign, targets, t).await?;
        current = match store
            .apply_campaign_batch(
                campaign.id,
                run.id,
                d.counters,
                &d.messages,
                &d.holdouts,
                BatchPosition::Event(last),
                Some(lease),
                t,
            )
            .await?
        {
            Some(r) => r,
            // another server holds the lease now: it goes on from the last written event
            None => return Ok(current),
        };
        if events.len() < BATCH {
            return Ok(current);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;

    #[test]
    fn occurrences_come_due_one_period_apart() {
        let start = 100 * H;
        assert_eq!(due_occurrence(start, 6 * H, 0, start - 1), None);
        assert_eq!(due_occurrence(start, 6 * H, 0, start), Some(1));
        assert_eq!(due_occurrence(start, 6 * H, 1, start + 6 * H - 1), None);
        assert_eq!(due_occurrence(start, 6 * H, 1, start + 6 * H), Some(2));
        // a server down for three periods starts only the latest
        assert_eq!(due_occurrence(start, 6 * H, 1, start + 20 * H), Some(4));
        assert_eq!(due_occurrence(start, 6 * H, 4, start + 20 * H), None);
        assert_eq!(occurrence_time(start, 6 * H, 4), start + 18 * H);
        assert_eq!(due_occurrence(start, 0, 0, start), None);
    }

    #[test]
    fn stored_events_become_script_events() {
        let e = StoredEvent {
            id: 9,
            kind: "order_placed".into(),
            customer_id: 3,
            payload: r#"{"order_id": "A1", "total": 12.5}"#.into(),
            create_time: 77,
        };
        let ev = script_event(&e);
        assert_eq!(ev.kind, "order_placed");
        assert_eq!(ev.time, Some(77));
        assert_eq!(ev.fields["order_id"].clone().into_string().unwrap(), "A1");
        assert_eq!(
            ev.fields["event"].clone().into_string().unwrap(),
            "events/9"
        );
    }
}
