//! `bakkal.v1.CampaignService`: campaigns over segments, their triggers, runs and report, and
//! the message outbox, over `bakkal-engine`'s campaign runs. A launch records a RUNNING run
//! and wakes the scheduler (`scheduler.rs`), which works through the audience batch by batch;
//! the outbox's idempotency keys make a relaunch queue only what earlier runs did not.

use std::sync::Arc;

use bakkal_domain::name::{customer_name, parse_id};
use bakkal_domain::ticket::ticket_name;
use bakkal_domain::time::now_micros;
use bakkal_domain::ValidationError;
use bakkal_engine::EngineError;
use bakkal_script::{CompiledScript, ScriptHost, ScriptKind};
use bakkal_store::{
    campaign_name, campaign_run_name, script_revision_name, Campaign, CampaignFields, CampaignRun,
    MessageParent, NewMessage, OutboxMessage, RunCounters, Store, Trigger,
};
use tokio::sync::Notify;
use tonic::{Code, Request, Response, Status};

use crate::convert::{micros, opt_timestamp, script_ref, timestamp};
use crate::page_token;
use crate::proto::campaign_service_server::CampaignService;
use crate::proto::campaign_trigger::Kind as TriggerKind;
use crate::proto::{
    self, CampaignEventKind, CampaignState, CampaignStrategy, MessageChannel, MessageStatus,
};
use crate::status::{from_store, invalid, invalid_field, script_diagnostics};

const MAX_DISPLAY_NAME: usize = 200;
const DEFAULT_SAMPLE: usize = 10;
const MAX_SAMPLE: i32 = 1000;

pub struct CampaignApi {
    store: Store,
    host: Arc<ScriptHost>,
    /// Wakes the scheduler (`scheduler.rs`), which runs the runs a launch starts.
    wake: Arc<Notify>,
}

impl CampaignApi {
    pub fn new(store: Store, host: Arc<ScriptHost>, wake: Arc<Notify>) -> Self {
        Self { store, host, wake }
    }

    /// A message's subject and body as a caller without `customers.pii.read` may see them:
    /// scrubbed of the address, phone and birth date of customer `customer_id` as stored now
    /// (`seen` keeps the customers of one page). When that customer cannot be read any more
    /// (erased, or merged into another) what the texts were rendered from is unknown, so they
    /// are hidden whole.
    async fn scrub_texts(
        &self,
        customer_id: i64,
        pii: crate::auth::mask::Pii,
        seen: &mut std::collections::HashMap<i64, Option<bakkal_domain::CustomerFields>>,
        subject: &mut String,
        body: &mut String,
    ) -> Result<(), Status> {
        if pii != crate::auth::mask::Pii::Mask {
            return Ok(());
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = seen.entry(customer_id) {
            match self
                .store
                .get_customer(customer_id, &bakkal_store::RecordScope::All)
                .await
            {
                Ok(c) => {
                    slot.insert(Some(c.fields));
                }
                Err(bakkal_store::StoreError::NotFound(_)) => {
                    slot.insert(None);
                }
                Err(e) => return Err(from_store(e)),
            }
        }
        match seen.get(&customer_id) {
            Some(Some(f)) => {
                *subject = pii.scrub(subject, f);
                *body = pii.scrub(body, f);
            }
            _ => {
                *subject = pii.hidden(subject);
                *body = pii.hidden(body);
            }
        }
        Ok(())
    }

    /// Load and compile a campaign's MESSAGE script (through the host's cache).
    async fn message_script(&self, reference: &str) -> Result<Arc<CompiledScript>, Status> {
        let field = "campaign.message_script";
        let (id, revision) = script_ref(reference, field)?;
        let s = self
            .store
            .get_script(id, revision)
            .await
            .map_err(from_store)?;
        if s.kind != ScriptKind::Message.as_str() {
            return Err(Status::failed_precondition(format!(
                "{reference} is a {} script; a campaign needs a MESSAGE script",
                s.kind
            )));
        }
        let key = script_revision_name(s.id, s.revision.revision);
        let source = s.revision.source;
        let host = self.host.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            host.compile_cached(&key, ScriptKind::Message, &source)
        })
        .await
        .map_err(|e| internal(&e.to_string()))?;
        compiled
            .map(Arc::new)
            .map_err(|d| script_diagnostics(Code::FailedPrecondition, field, &d))
    }

    /// Check the references of new or changed settings: the segment exists and the scripts
    /// exist with the right kinds.
    async fn check_refs(&self, f: &CampaignFields) -> Result<(), Status> {
        self.store
            .get_segment(f.audience_segment_id)
            .await
            .map_err(from_store)?;
        let (id, revision) = script_ref(&f.message_script, "campaign.message_script")?;
        let s = self
            .store
            .get_script(id, revision)
            .await
            .map_err(from_store)?;
        if s.kind != ScriptKind::Message.as_str() {
            return Err(invalid_field(
                "campaign.message_script",
                format!("{} is a {} script, not MESSAGE", f.message_script, s.kind),
            ));
        }
        if !f.offer_script.is_empty() {
            let (id, revision) = script_ref(&f.offer_script, "campaign.offer_script")?;
            let s = self
                .store
                .get_script(id, revision)
                .await
                .map_err(from_store)?;
            if s.kind != ScriptKind::Offer.as_str() {
                return Err(invalid_field(
                    "campaign.offer_script",
                    format!("{} is a {} script, not OFFER", f.offer_script, s.kind),
                ));
            }
        }
        Ok(())
    }
}

fn internal(e: &str) -> Status {
    tracing::error!(error = %e, "campaign task failed");
    Status::internal("internal error; it has been logged")
}

fn from_engine(e: EngineError) -> Status {
    match e {
        EngineError::Store(e) => from_store(e),
        EngineError::Internal(m) => internal(&m),
        EngineError::Cancelled => crate::status::stopping(),
        EngineError::Abandoned(a) => crate::status::abandoned(&a),
    }
}

/// `scripts/{id}` or `scripts/{id}@{revision}`.
fn campaign_ref(name: &str, field: &str) -> Result<i64, Status> {
    parse_id(name, "campaigns").ok_or_else(|| {
        invalid_field(
            field,
            format!("'{name}' is not a campaign name like campaigns/12"),
        )
    })
}

fn strategy_str(s: i32) -> Option<&'static str> {
    match CampaignStrategy::try_from(s).ok()? {
        CampaignStrategy::Prospecting => Some("PROSPECTING"),
        CampaignStrategy::CrossSell => Some("CROSS_SELL"),
        CampaignStrategy::WinBack => Some("WIN_BACK"),
        CampaignStrategy::Loyalty => Some("LOYALTY"),
        CampaignStrategy::Unspecified => None,
    }
}

fn strategy_enum(s: &str) -> CampaignStrategy {
    match s {
        "PROSPECTING" => CampaignStrategy::Prospecting,
        "CROSS_SELL" => CampaignStrategy::CrossSell,
        "WIN_BACK" => CampaignStrategy::WinBack,
        "LOYALTY" => CampaignStrategy::Loyalty,
        _ => CampaignStrategy::Unspecified,
    }
}

fn channel_str(c: i32) -> Option<&'static str> {
    match MessageChannel::try_from(c).ok()? {
        MessageChannel::Email => Some("email"),
        MessageChannel::Sms => Some("sms"),
        MessageChannel::Push => Some("push"),
        MessageChannel::Phone => Some("phone"),
        MessageChannel::Unspecified => None,
    }
}

fn channel_enum(s: &str) -> MessageChannel {
    match s {
        "email" => MessageChannel::Email,
        "sms" => MessageChannel::Sms,
        "push" => MessageChannel::Push,
        "phone" => MessageChannel::Phone,
        _ => MessageChannel::Unspecified,
    }
}

fn state_enum(s: &str) -> CampaignState {
    match s {
        "DRAFT" => CampaignState::Draft,
        "SCHEDULED" => CampaignState::Scheduled,
        "RUNNING" => CampaignState::Running,
        "PAUSED" => CampaignState::Paused,
        "COMPLETED" => CampaignState::Completed,
        "FAILED" => CampaignState::Failed,
        _ => CampaignState::Unspecified,
    }
}

fn status_enum(s: &str) -> MessageStatus {
    match s {
        "QUEUED" => MessageStatus::Queued,
        "SENDING" => MessageStatus::Sending,
        "DELIVERED" => MessageStatus::Delivered,
        "FAILED" => MessageStatus::Failed,
        "DEAD" => MessageStatus::Dead,
        _ => MessageStatus::Unspecified,
    }
}

/// Check the given fields of a protobuf campaign into `into`, adding every problem to `errs`.
fn check_fields(
    c: &proto::Campaign,
    paths: &[&str],
    into: &mut CampaignFields,
    errs: &mut ValidationError,
) {
    let has = |p: &str| paths.is_empty() || paths.contains(&p);
    if has("display_name") {
        let d = c.display_name.trim();
        if d.is_empty() {
            errs.add("campaign.display_name", "is required");
        } else if d.chars().count() > MAX_DISPLAY_NAME {
            errs.add(
                "campaign.display_name",
                format!("must be at most {MAX_DISPLAY_NAME} characters"),
            );
        }
        into.display_name = d.to_string();
    }
    if has("strategy") {
        match strategy_str(c.strategy) {
            Some(s) => into.strategy = s.to_string(),
            None => errs.add(
                "campaign.strategy",
                "is required: PROSPECTING, CROSS_SELL, WIN_BACK or LOYALTY",
            ),
        }
    }
    if has("audience") {
        match parse_id(c.audience.trim(), "segments") {
            Some(id) => into.audience_segment_id = id,
            None => errs.add(
                "campaign.audience",
                format!("'{}' is not a segment name like segments/12", c.audience),
            ),
        }
    }
    if has("message_script") {
        let s = c.message_script.trim();
        if bakkal_domain::name::parse_script(s).is_none() {
            errs.add(
                "campaign.message_script",
                format!("is required: '{s}' is not a script name like scripts/12 or scripts/12@3"),
            );
        }
        into.message_script = s.to_string();
    }
    if has("offer_script") {
        let s = c.offer_script.trim();
        if !s.is_empty() && bakkal_domain::name::parse_script(s).is_none() {
            errs.add(
                "campaign.offer_script",
                format!("'{s}' is not a script name like scripts/12 or scripts/12@3"),
            );
        }
        into.offer_script = s.to_string();
    }
    if has("channel") {
        match channel_str(c.channel) {
            Some(ch) => into.channel = ch.to_string(),
            None => errs.add("campaign.channel", "is required: EMAIL, SMS, PUSH or PHONE"),
        }
    }
    if has("holdout_percent") {
        if !(0..=50).contains(&c.holdout_percent) {
            errs.add("campaign.holdout_percent", "must be between 0 and 50");
        }
        into.holdout_percent = c.holdout_percent as i64;
    }
    if has("frequency_cap") {
        match &c.frequency_cap {
            None => {
                into.cap_max_messages = 0;
                into.cap_per_days = 0;
            }
            Some(f) => {
                if f.max_messages < 1 {
                    errs.add("campaign.frequency_cap.max_messages", "must be at least 1");
                }
                if !(1..=366).contains(&f.per_days) {
                    errs.add(
                        "campaign.frequency_cap.per_days",
                        "must be between 1 and 366",
                    );
                }
                into.cap_max_messages = f.max_messages as i64;
                into.cap_per_days = f.per_days as i64;
            }
        }
    }
    if has("quiet_hours") {
        match &c.quiet_hours {
            None => into.quiet_hours = None,
            Some(q) => {
                if !(0..=23).contains(&q.start_hour) {
                    errs.add(
                        "campaign.quiet_hours.start_hour",
                        "must be between 0 and 23",
                    );
                }
                if !(0..=24).contains(&q.end_hour) || q.end_hour == q.start_hour {
                    errs.add(
                        "campaign.quiet_hours.end_hour",
                        "must be between 0 and 24 and differ from start_hour",
                    );
                }
                into.quiet_hours = Some((q.start_hour as i64, q.end_hour as i64));
            }
        }
    }
    if has("trigger") {
        into.trigger = check_trigger(c.trigger.as_ref(), errs);
    }
}

fn event_kind_str(k: i32) -> Option<&'static str> {
    match CampaignEventKind::try_from(k).ok()? {
        CampaignEventKind::OrderPlaced => Some("order_placed"),
        CampaignEventKind::Inactive => Some("inactive"),
        CampaignEventKind::Birthday => Some("birthday"),
        CampaignEventKind::TierChanged => Some("tier_changed"),
        CampaignEventKind::SegmentEntered => Some("segment_entered"),
        CampaignEventKind::Unspecified => None,
    }
}

fn event_kind_enum(s: &str) -> CampaignEventKind {
    match s {
        "order_placed" => CampaignEventKind::OrderPlaced,
        "inactive" => CampaignEventKind::Inactive,
        "birthday" => CampaignEventKind::Birthday,
        "tier_changed" => CampaignEventKind::TierChanged,
        "segment_entered" => CampaignEventKind::SegmentEntered,
        _ => CampaignEventKind::Unspecified,
    }
}

/// Check a protobuf trigger (unset: once now), adding every problem to `errs`.
fn check_trigger(t: Option<&proto::CampaignTrigger>, errs: &mut ValidationError) -> Trigger {
    let f = "campaign.trigger";
    let start =
        |t: Option<&prost_types::Timestamp>, field: &str, errs: &mut ValidationError| match t {
            None => {
                errs.add(field, "is required");
                0
            }
            Some(t) => micros(t, field, errs).unwrap_or(0),
        };
    match t.and_then(|t| t.kind.as_ref()) {
        None | Some(TriggerKind::OnceNow(_)) => Trigger::Once,
        Some(TriggerKind::AtTime(a)) => Trigger::At {
            time: start(
                a.start_time.as_ref(),
                &format!("{f}.at_time.start_time"),
                errs,
            ),
        },
        Some(TriggerKind::Recurring(r)) => {
            let p = format!("{f}.recurring");
            let start = start(r.start_time.as_ref(), &format!("{p}.start_time"), errs);
            if !(0..=8784).contains(&r.every_hours) {
                errs.add(format!("{p}.every_hours"), "must be between 0 and 8784");
            }
            if !(0..=366).contains(&r.every_days) {
                errs.add(format!("{p}.every_days"), "must be between 0 and 366");
            }
            if r.every_hours <= 0 && r.every_days <= 0 {
                errs.add(
                    format!("{p}.every_hours"),
                    "every_hours or every_days must be set: the period is at least one hour",
                );
            }
            Trigger::Recurring {
                start,
                every_hours: r.every_hours as i64,
                every_days: r.every_days as i64,
            }
        }
        Some(TriggerKind::OnEvent(e)) => {
            let p = format!("{f}.on_event");
            let kind = match event_kind_str(e.kind) {
                Some(k) => k,
                None => {
                    errs.add(
                        format!("{p}.kind"),
                        "is required: ORDER_PLACED, INACTIVE, BIRTHDAY, TIER_CHANGED or \
                         SEGMENT_ENTERED",
                    );
                    ""
                }
            };
            if kind == "inactive" && !(1..=3650).contains(&e.inactive_days) {
                errs.add(
                    format!("{p}.inactive_days"),
                    "must be between 1 and 3650 for INACTIVE",
                );
            } else if kind != "inactive" && e.inactive_days != 0 {
                errs.add(format!("{p}.inactive_days"), "is for INACTIVE only");
            }
            Trigger::Event {
                kind: kind.to_string(),
                inactive_days: e.inactive_days as i64,
            }
        }
    }
}

fn trigger_to_proto(t: &Trigger) -> proto::CampaignTrigger {
    let kind = match t {
        Trigger::Once => TriggerKind::OnceNow(proto::campaign_trigger::OnceNow {}),
        Trigger::At { time } => TriggerKind::AtTime(proto::campaign_trigger::AtTime {
            start_time: Some(timestamp(*time)),
        }),
        Trigger::Recurring {
            start,
            every_hours,
            every_days,
        } => TriggerKind::Recurring(proto::campaign_trigger::Recurring {
            start_time: Some(timestamp(*start)),
            every_hours: *every_hours as i32,
            every_days: *every_days as i32,
        }),
        Trigger::Event {
            kind,
            inactive_days,
        } => TriggerKind::OnEvent(proto::campaign_trigger::OnEvent {
            kind: event_kind_enum(kind) as i32,
            inactive_days: *inactive_days as i32,
        }),
    };
    proto::CampaignTrigger { kind: Some(kind) }
}

const UPDATABLE: &[&str] = &[
    "display_name",
    "strategy",
    "audience",
    "offer_script",
    "message_script",
    "channel",
    "holdout_percent",
    "frequency_cap",
    "quiet_hours",
    "trigger",
];

fn campaign_to_proto(c: &Campaign) -> proto::Campaign {
    let f = &c.fields;
    proto::Campaign {
        name: c.name(),
        display_name: f.display_name.clone(),
        strategy: strategy_enum(&f.strategy) as i32,
        audience: bakkal_store::segment_name(f.audience_segment_id),
        offer_script: f.offer_script.clone(),
        message_script: f.message_script.clone(),
        channel: channel_enum(&f.channel) as i32,
        holdout_percent: f.holdout_percent as i32,
        frequency_cap: (f.cap_max_messages > 0).then_some(proto::FrequencyCap {
            max_messages: f.cap_max_messages as i32,
            per_days: f.cap_per_days as i32,
        }),
        quiet_hours: f.quiet_hours.map(|(s, e)| proto::QuietHours {
            start_hour: s as i32,
            end_hour: e as i32,
        }),
        state: state_enum(&c.state) as i32,
        create_time: Some(timestamp(c.create_time)),
        update_time: Some(timestamp(c.update_time)),
        etag: c.etag(),
        trigger: Some(trigger_to_proto(&f.trigger)),
        next_run_time: (c.state == "SCHEDULED")
            .then(|| bakkal_engine::trigger::next_start(c))
            .flatten()
            .map(timestamp),
    }
}

fn counters_to_proto(c: &RunCounters) -> proto::CampaignRunCounters {
    proto::CampaignRunCounters {
        evaluated: c.evaluated,
        targeted: c.targeted,
        held_out: c.held_out,
        suppressed_no_consent: c.suppressed_no_consent,
        suppressed_capped: c.suppressed_capped,
        suppressed_quiet_hours: c.suppressed_quiet_hours,
        suppressed_already_sent: c.suppressed_already_sent,
        queued: c.queued,
        script_errors: c.script_errors,
    }
}

fn run_to_proto(r: &CampaignRun) -> proto::CampaignRun {
    proto::CampaignRun {
        name: r.name(),
        state: r.state.clone(),
        counters: Some(counters_to_proto(&r.counters)),
        start_time: Some(timestamp(r.start_time)),
        end_time: opt_timestamp(r.end_time),
        occurrence: r.occurrence,
    }
}

fn message_to_proto(m: &OutboxMessage) -> proto::Message {
    proto::Message {
        name: m.name(),
        campaign: if m.campaign_id != 0 {
            campaign_name(m.campaign_id)
        } else {
            String::new()
        },
        run: if m.campaign_id != 0 {
            campaign_run_name(m.campaign_id, m.run_id)
        } else {
            String::new()
        },
        customer: if m.customer_id != 0 {
            customer_name(m.customer_id)
        } else {
            String::new()
        },
        channel: channel_enum(&m.channel) as i32,
        subject: m.subject.clone(),
        body: m.body.clone(),
        idempotency_key: m.idempotency_key.clone(),
        status: status_enum(&m.status) as i32,
        attempts: m.attempts as i32,
        create_time: Some(timestamp(m.create_time)),
        deliver_time: opt_timestamp(m.deliver_time),
        last_error: m.last_error.clone(),
        next_attempt_time: opt_timestamp(m.next_attempt_time),
        ticket: m.ticket_id.map(ticket_name).unwrap_or_default(),
        recipient: m.recipient.clone(),
    }
}

fn would_be_to_proto(m: &NewMessage, channel: &str) -> proto::Message {
    proto::Message {
        customer: customer_name(m.customer_id),
        channel: channel_enum(channel) as i32,
        subject: m.subject.clone(),
        body: m.body.clone(),
        idempotency_key: m.idempotency_key.clone(),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl CampaignService for CampaignApi {
    async fn create_campaign(
        &self,
        request: Request<proto::CreateCampaignRequest>,
    ) -> Result<Response<proto::Campaign>, Status> {
        let req = request.into_inner();
        let Some(c) = req.campaign else {
            return Err(invalid_field("campaign", "is required"));
        };
        let mut errs = ValidationError::new();
        let mut fields = CampaignFields::default();
        check_fields(&c, &[], &mut fields, &mut errs);
        if req.request_id.len() > 200 {
            errs.add("request_id", "must be at most 200 characters");
        }
        errs.into_result().map_err(invalid)?;
        self.check_refs(&fields).await?;
        let rid = Some(req.request_id.as_str()).filter(|r| !r.is_empty());
        let created = self
            .store
            .create_campaign(&fields, "DRAFT", rid, now_micros())
            .await
            .map_err(from_store)?;
        Ok(Response::new(campaign_to_proto(&created)))
    }

    async fn get_campaign(
        &self,
        request: Request<proto::GetCampaignRequest>,
    ) -> Result<Response<proto::Campaign>, Status> {
        let id = campaign_ref(&request.get_ref().name, "name")?;
        let c = self.store.get_campaign(id).await.map_err(from_store)?;
        Ok(Response::new(campaign_to_proto(&c)))
    }

    async fn list_campaigns(
        &self,
        request: Request<proto::ListCampaignsRequest>,
    ) -> Result<Response<proto::ListCampaignsResponse>, Status> {
        let req = request.into_inner();
        let size = page_token::page_size(req.page_size)?;
        let query = ["campaigns"];
        let after = page_token::decode(&req.page_token, &query)?;
        let (list, next) = self
            .store
            .list_campaigns(size, after.as_ref())
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListCampaignsResponse {
            campaigns: list.iter().map(campaign_to_proto).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn update_campaign(
        &self,
        request: Request<proto::UpdateCampaignRequest>,
    ) -> Result<Response<proto::Campaign>, Status> {
        let req = request.into_inner();
        let Some(c) = req.campaign else {
            return Err(invalid_field("campaign", "is required"));
        };
        let id = campaign_ref(&c.name, "campaign.name")?;
        let paths: Vec<&str> = req
            .update_mask
            .iter()
            .flat_map(|m| m.paths.iter().map(String::as_str))
            .collect();
        for p in &paths {
            if !UPDATABLE.contains(p) {
                return Err(invalid_field(
                    "update_mask",
                    format!(
                        "cannot update '{p}'; updatable paths: {}",
                        UPDATABLE.join(", ")
                    ),
                ));
            }
        }
        let current = self.store.get_campaign(id).await.map_err(from_store)?;
        let mut fields = current.fields.clone();
        let mut errs = ValidationError::new();
        check_fields(&c, &paths, &mut fields, &mut errs);
        errs.into_result().map_err(invalid)?;
        self.check_refs(&fields).await?;
        let updated = self
            .store
            .update_campaign(id, &fields, Some(c.etag.as_str()), now_micros())
            .await
            .map_err(from_store)?;
        Ok(Response::new(campaign_to_proto(&updated)))
    }

    async fn pause_campaign(
        &self,
        request: Request<proto::PauseCampaignRequest>,
    ) -> Result<Response<proto::Campaign>, Status> {
        let id = campaign_ref(&request.get_ref().name, "name")?;
        let c = self
            .store
            .set_campaign_state(id, &["RUNNING", "SCHEDULED"], "PAUSED", now_micros())
            .await
            .map_err(from_store)?;
        Ok(Response::new(campaign_to_proto(&c)))
    }

    async fn resume_campaign(
        &self,
        request: Request<proto::ResumeCampaignRequest>,
    ) -> Result<Response<proto::Campaign>, Status> {
        let id = campaign_ref(&request.get_ref().name, "name")?;
        let campaign = self.store.get_campaign(id).await.map_err(from_store)?;
        let c = if let Trigger::Event { .. } = campaign.fields.trigger {
            // an event campaign listens again, from now on
            let (c, _) = self
                .store
                .start_campaign_run(id, &["PAUSED"], 0, now_micros())
                .await
                .map_err(from_store)?;
            self.wake.notify_one();
            c
        } else {
            self.store
                .set_campaign_state(id, &["PAUSED"], "SCHEDULED", now_micros())
                .await
                .map_err(from_store)?
        };
        Ok(Response::new(campaign_to_proto(&c)))
    }

    async fn launch_campaign(
        &self,
        request: Request<proto::LaunchCampaignRequest>,
    ) -> Result<Response<proto::CampaignRun>, Status> {
        let id = campaign_ref(&request.get_ref().name, "name")?;
        let campaign = self.store.get_campaign(id).await.map_err(from_store)?;
        if campaign.fields.trigger != Trigger::Once {
            return Err(Status::failed_precondition(format!(
                "{} has a {} trigger; ScheduleCampaign arms it (LaunchCampaign is for once-now \
                 campaigns)",
                campaign.name(),
                campaign.fields.trigger.kind()
            )));
        }
        // an audience never refreshed has no members yet: say so instead of running empty
        let audience = self
            .store
            .get_segment(campaign.fields.audience_segment_id)
            .await
            .map_err(from_store)?;
        if audience.refresh_time.is_none() {
            return Err(Status::failed_precondition(format!(
                "the audience {} was never refreshed, so it has no members yet: call \
                 SegmentService.RefreshSegment on it, then launch again",
                audience.name()
            )));
        }
        // compile now, so that a broken script is refused here rather than failing the run
        self.message_script(&campaign.fields.message_script).await?;
        // RUNNING: a run is in progress, here or on another server (the scheduler resumes the
        // run of a server that stopped).
        let (_, run) = self
            .store
            .start_campaign_run(
                id,
                &["DRAFT", "SCHEDULED", "COMPLETED", "FAILED"],
                0,
                now_micros(),
            )
            .await
            .map_err(from_store)?;
        self.wake.notify_one();
        Ok(Response::new(run_to_proto(&run)))
    }

    async fn get_campaign_run(
        &self,
        request: Request<proto::GetCampaignRunRequest>,
    ) -> Result<Response<proto::CampaignRun>, Status> {
        let name = request.into_inner().name;
        let parsed = name.split_once("/runs/").and_then(|(c, r)| {
            Some((parse_id(c, "campaigns")?, parse_id(&format!("r/{r}"), "r")?))
        });
        let Some((c, r)) = parsed else {
            return Err(invalid_field(
                "name",
                format!("'{name}' is not a run name like campaigns/12/runs/3"),
            ));
        };
        let run = self
            .store
            .get_campaign_run(c, r)
            .await
            .map_err(from_store)?;
        Ok(Response::new(run_to_proto(&run)))
    }

    async fn dry_run_campaign(
        &self,
        request: Request<proto::DryRunCampaignRequest>,
    ) -> Result<Response<proto::DryRunCampaignResponse>, Status> {
        let pii = crate::auth::mask::Pii::of(&request);
        let req = request.into_inner();
        let id = campaign_ref(&req.name, "name")?;
        let sample = match req.sample_size {
            0 => DEFAULT_SAMPLE,
            1..=MAX_SAMPLE => req.sample_size as usize,
            _ => {
                return Err(invalid_field(
                    "sample_size",
                    format!("must be between 1 and {MAX_SAMPLE} (or 0 for {DEFAULT_SAMPLE})"),
                ))
            }
        };
        let campaign = self.store.get_campaign(id).await.map_err(from_store)?;
        let script = self.message_script(&campaign.fields.message_script).await?;
        let (messages, counters, _errors) = bakkal_engine::campaign::dry_run(
            &self.store,
            &self.host,
            &script,
            &campaign,
            sample,
            now_micros(),
        )
        .await
        .map_err(from_engine)?;
        let mut out = Vec::with_capacity(messages.len());
        let mut seen = std::collections::HashMap::new();
        for m in &messages {
            let mut p = would_be_to_proto(m, &campaign.fields.channel);
            // rendered from the customer as stored: its personal data masked here
            self.scrub_texts(m.customer_id, pii, &mut seen, &mut p.subject, &mut p.body)
                .await?;
            out.push(p);
        }
        Ok(Response::new(proto::DryRunCampaignResponse {
            messages: out,
            counters: Some(counters_to_proto(&counters)),
        }))
    }

    async fn list_messages(
        &self,
        request: Request<proto::ListMessagesRequest>,
    ) -> Result<Response<proto::ListMessagesResponse>, Status> {
        let scope = crate::auth::customer_scope(&request);
        let pii = crate::auth::mask::Pii::of(&request);
        let req = request.into_inner();
        let parent = if let Some(id) = parse_id(&req.parent, "campaigns") {
            MessageParent::Campaign(id)
        } else if let Some(id) = parse_id(&req.parent, "customers") {
            // one customer's messages: NOT_FOUND, as for a missing one, out of scope
            if !scope.is_all() {
                self.store
                    .get_customer(id, &scope)
                    .await
                    .map_err(from_store)?;
            }
            MessageParent::Customer(id)
        } else {
            return Err(invalid_field(
                "parent",
                format!(
                    "'{}' is not a campaign or customer name like campaigns/12 or customers/7",
                    req.parent
                ),
            ));
        };
        let size = page_token::page_size(req.page_size)?;
        let query = ["messages", req.parent.as_str()];
        let after = page_token::decode(&req.page_token, &query)?;
        let (list, next) = self
            .store
            .list_messages(parent, &scope, size, after.as_ref())
            .await
            .map_err(from_store)?;
        let mut messages = Vec::with_capacity(list.len());
        let mut seen = std::collections::HashMap::new();
        for m in &list {
            let mut p = message_to_proto(m);
            self.scrub_texts(m.customer_id, pii, &mut seen, &mut p.subject, &mut p.body)
                .await?;
            messages.push(p);
        }
        Ok(Response::new(proto::ListMessagesResponse {
            messages,
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn get_message(
        &self,
        request: Request<proto::GetMessageRequest>,
    ) -> Result<Response<proto::Message>, Status> {
        let scope = crate::auth::customer_scope(&request);
        let pii = crate::auth::mask::Pii::of(&request);
        let name = &request.get_ref().name;
        let id = parse_id(name, "messages").ok_or_else(|| {
            invalid_field(
                "name",
                format!("'{name}' is not a message name like messages/12"),
            )
        })?;
        let m = self
            .store
            .get_message(id, &scope)
            .await
            .map_err(from_store)?;
        let mut out = message_to_proto(&m);
        let (subject, body) = (&mut out.subject, &mut out.body);
        self.scrub_texts(m.customer_id, pii, &mut Default::default(), subject, body)
            .await?;
        Ok(Response::new(out))
    }

    // ---- WatchCampaignRun ----------------------------------------------------------------

    type WatchCampaignRunStream = WatchStream;

    async fn watch_campaign_run(
        &self,
        request: Request<proto::WatchCampaignRunRequest>,
    ) -> Result<Response<Self::WatchCampaignRunStream>, Status> {
        let (campaign_id, run_id) = run_ref(&request.get_ref().name, "name")?;
        let first = self
            .store
            .get_campaign_run(campaign_id, run_id)
            .await
            .map_err(from_store)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(watch_run(self.store.clone(), first, tx));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    // ---- triggers and the report (camp-trigger) ----

    async fn schedule_campaign(
        &self,
        request: Request<proto::ScheduleCampaignRequest>,
    ) -> Result<Response<proto::Campaign>, Status> {
        let id = campaign_ref(&request.get_ref().name, "name")?;
        let campaign = self.store.get_campaign(id).await.map_err(from_store)?;
        self.message_script(&campaign.fields.message_script).await?;
        let from = ["DRAFT", "SCHEDULED", "PAUSED", "COMPLETED", "FAILED"];
        let now = now_micros();
        let c = match &campaign.fields.trigger {
            Trigger::Once => {
                return Err(Status::failed_precondition(format!(
                    "{} runs once now: LaunchCampaign starts it",
                    campaign.name()
                )))
            }
            Trigger::At { .. } | Trigger::Recurring { .. } => self
                .store
                .set_campaign_state(id, &from, "SCHEDULED", now)
                .await
                .map_err(from_store)?,
            Trigger::Event { kind, .. } => {
                let (c, _) = self
                    .store
                    .start_campaign_run(id, &from, 0, now)
                    .await
                    .map_err(from_store)?;
                if kind == "birthday" || kind == "inactive" {
                    // the daily scan runs again at the next tick for the new campaign
                    self.store
                        .request_lease_work(crate::scheduler::SCAN)
                        .await
                        .map_err(from_store)?;
                }
                c
            }
        };
        self.wake.notify_one();
        Ok(Response::new(campaign_to_proto(&c)))
    }

    async fn get_campaign_report(
        &self,
        request: Request<proto::GetCampaignReportRequest>,
    ) -> Result<Response<proto::CampaignReport>, Status> {
        let req = request.into_inner();
        let id = campaign_ref(&req.name, "name")?;
        let days = match req.attribution_window_days {
            0 => 7,
            d @ 1..=365 => d,
            _ => {
                return Err(invalid_field(
                    "attribution_window_days",
                    "must be between 1 and 365 (or 0 for 7)",
                ))
            }
        };
        let window = days as i64 * 86_400_000_000;
        let f = self
            .store
            .campaign_report(id, window)
            .await
            .map_err(from_store)?;
        Ok(Response::new(report_to_proto(id, days, &f)))
    }
}

fn rate(n: i64, of: i64) -> f64 {
    if of > 0 {
        n as f64 / of as f64
    } else {
        0.0
    }
}

fn report_to_proto(id: i64, days: i32, f: &bakkal_store::ReportFigures) -> proto::CampaignReport {
    let treatment = rate(f.conversions, f.treated_customers);
    let holdout = rate(f.holdout_conversions, f.holdout_customers);
    let (lift, note) = if f.holdout_customers == 0 {
        (None, "no lift: the holdout is empty".to_string())
    } else if f.holdout_conversions == 0 {
        (None, "no lift: no one in the holdout converted".to_string())
    } else {
        (Some(treatment / holdout - 1.0), String::new())
    };
    proto::CampaignReport {
        campaign: campaign_name(id),
        attribution_window_days: days,
        targeted: f.targeted,
        held_out: f.held_out,
        queued: f.queued,
        delivered: f.delivered,
        failed: f.failed,
        treated_customers: f.treated_customers,
        conversions: f.conversions,
        revenue: f.revenue as f64 / 1_000_000.0,
        holdout_customers: f.holdout_customers,
        holdout_conversions: f.holdout_conversions,
        holdout_revenue: f.holdout_revenue as f64 / 1_000_000.0,
        conversion_rate: treatment,
        holdout_conversion_rate: holdout,
        lift,
        note,
    }
}

// ---- WatchCampaignRun ------------------------------------------------------------------------

/// How often a watch looks at its run.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_millis(200);

type WatchStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<proto::CampaignRun, Status>> + Send>>;

/// `campaigns/{c}/runs/{r}` → (c, r).
fn run_ref(name: &str, field: &str) -> Result<(i64, i64), Status> {
    name.split_once("/runs/")
        .and_then(|(c, r)| Some((parse_id(c, "campaigns")?, parse_id(&format!("r/{r}"), "r")?)))
        .ok_or_else(|| {
            invalid_field(
                field,
                format!("'{name}' is not a run name like campaigns/12/runs/3"),
            )
        })
}

fn run_is_over(state: &str) -> bool {
    matches!(state, "COMPLETED" | "PAUSED" | "FAILED")
}

/// Send `run`, then poll the store and send the run again whenever its counters or state
/// change, until it is over or the caller goes away.
async fn watch_run(
    store: Store,
    mut run: CampaignRun,
    tx: tokio::sync::mpsc::Sender<Result<proto::CampaignRun, Status>>,
) {
    if tx.send(Ok(run_to_proto(&run))).await.is_err() {
        return;
    }
    while !run_is_over(&run.state) {
        tokio::select! {
            _ = tokio::time::sleep(WATCH_POLL) => {}
            _ = tx.closed() => return,
        }
        let now = match store.get_campaign_run(run.campaign_id, run.id).await {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(from_store(e))).await;
                return;
            }
        };
        if now.state != run.state || now.counters != run.counters {
            run = now;
            if tx.send(Ok(run_to_proto(&run))).await.is_err() {
                return;
            }
        }
    }
}
