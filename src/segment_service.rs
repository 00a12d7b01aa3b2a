//! `bakkal.v1.SegmentService`: the value model, scores and the customer pyramid, and segments
//! chosen by SEGMENT scripts, over `bakkal-engine`.
//!
//! Scripts are compiled on tokio's blocking pool through the host's cache (keyed by revision
//! name, as the script service does); the engine evaluates them there too. Refreshes and score
//! computations run one at a time per server, so that two of them never diff against the same
//! old state.

use std::collections::BTreeMap;
use std::sync::Arc;

use bakkal_domain::filter::Clause;
use bakkal_domain::name::{customer_name, parse_id};
use bakkal_domain::order::micros_to_amount;
use bakkal_domain::time::now_micros;
use bakkal_domain::ValidationError;
use bakkal_engine::model::is_attribute_key;
use bakkal_engine::{EngineError, Rule, Tier, ValueModel};
use bakkal_script::{ScriptHost, ScriptKind};
use bakkal_store::{
    parse_segment_filter, script_revision_name, Breakdown, NewSegment, RecordScope, Segment, Store,
};
use tokio::sync::Mutex;
use tonic::{Code, Request, Response, Status};

use crate::auth::mask::Pii;
use crate::convert::{bad_script_name, customer_ref, opt_timestamp, script_ref, timestamp};
use crate::page_token;
use crate::proto::segment_service_server::SegmentService;
use crate::proto::{self, preview_segment_request::Target};
use crate::status::{from_store, invalid, invalid_field, script_diagnostics};

const MAX_DISPLAY_NAME: usize = 200;
const DEFAULT_SAMPLE: usize = 10;
const MAX_SAMPLE: i32 = 1000;
const MAX_FILTER: usize = 2000;

pub struct SegmentApi {
    store: Store,
    host: Arc<ScriptHost>,
    /// One refresh or score computation at a time.
    runs: Arc<Mutex<()>>,
}

impl SegmentApi {
    /// Error examples for a response: a script's message may quote the customer's data, so
    /// without `customers.pii.read` each is scrubbed of its customer's personal data.
    async fn examples(
        &self,
        e: &[bakkal_engine::ErrorExample],
        pii: Pii,
    ) -> Result<Vec<proto::ScriptErrorExample>, Status> {
        let mut out = Vec::with_capacity(e.len());
        for e in e {
            let mut message = e.message.clone();
            if pii == Pii::Mask {
                if let Some(id) = bakkal_domain::name::parse_customer(&e.customer) {
                    match self.store.get_customer(id, &RecordScope::All).await {
                        Ok(c) => message = pii.scrub(&message, &c.fields),
                        Err(bakkal_store::StoreError::NotFound(_)) => {}
                        Err(err) => return Err(from_store(err)),
                    }
                }
            }
            out.push(proto::ScriptErrorExample {
                customer: e.customer.clone(),
                message,
            });
        }
        Ok(out)
    }

    pub fn new(store: Store, host: Arc<ScriptHost>) -> Self {
        Self {
            store,
            host,
            runs: Arc::new(Mutex::new(())),
        }
    }

    /// Load a SEGMENT script by reference and compile it (through the cache). `stored` says
    /// whether the reference comes from a stored segment (a script that no longer fits is then
    /// FAILED_PRECONDITION rather than INVALID_ARGUMENT).
    async fn load_script(
        &self,
        reference: &str,
        field: &str,
        stored: bool,
    ) -> Result<Rule, Status> {
        let (id, revision) = script_ref(reference, field)?;
        let s = self
            .store
            .get_script(id, revision)
            .await
            .map_err(from_store)?;
        if s.kind != ScriptKind::Segment.as_str() {
            let msg = format!(
                "{reference} is a {} script; a segment needs a SEGMENT script",
                s.kind
            );
            return Err(if stored {
                Status::failed_precondition(msg)
            } else {
                invalid_field(field, msg)
            });
        }
        let key = script_revision_name(s.id, s.revision.revision);
        let source = s.revision.source;
        let host = self.host.clone();
        let compiled = tokio::task::spawn_blocking(move || {
            host.compile_cached(&key, ScriptKind::Segment, &source)
                .map(|c| Rule::new(c, &source))
        })
        .await
        .map_err(|e| internal(&e.to_string()))?;
        compiled.map_err(|d| script_diagnostics(Code::FailedPrecondition, field, &d))
    }
}

fn internal(e: &str) -> Status {
    tracing::error!(error = %e, "segment task failed");
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

fn segment_ref(name: &str, field: &str) -> Result<i64, Status> {
    parse_id(name, "segments").ok_or_else(|| {
        invalid_field(
            field,
            format!("'{name}' is not a segment name like segments/12"),
        )
    })
}

fn filter_clauses(text: &str) -> Result<Vec<Clause>, String> {
    if text.len() > MAX_FILTER {
        return Err(format!("at most {MAX_FILTER} bytes"));
    }
    parse_segment_filter(text)
}

fn parse_filter(text: &str, field: &str) -> Result<Vec<Clause>, Status> {
    filter_clauses(text).map_err(|e| invalid_field(field, e))
}

fn duration(micros: i64) -> prost_types::Duration {
    prost_types::Duration::try_from(std::time::Duration::from_micros(micros.max(0) as u64))
        .unwrap_or_default()
}

fn std_duration(d: std::time::Duration) -> Option<prost_types::Duration> {
    prost_types::Duration::try_from(d).ok()
}

fn segment_to_proto(s: &Segment) -> proto::Segment {
    proto::Segment {
        name: s.name(),
        display_name: s.display_name.clone(),
        script: s.script.clone(),
        filter: s.filter.clone(),
        member_count: s.member_count,
        refresh_time: opt_timestamp(s.refresh_time),
        refresh_duration: s.refresh_duration.map(duration),
        create_time: Some(timestamp(s.create_time)),
    }
}

fn model_to_proto(m: &ValueModel) -> proto::ValueModel {
    proto::ValueModel {
        name: "valueModel".into(),
        weights: m.weights.clone().into_iter().collect(),
        tiers: m
            .tiers
            .iter()
            .map(|t| proto::ValueTier {
                display_name: t.name.clone(),
                percent: t.percent,
            })
            .collect(),
        update_time: opt_timestamp(m.update_time),
    }
}

#[tonic::async_trait]
impl SegmentService for SegmentApi {
    async fn set_value_model(
        &self,
        request: Request<proto::SetValueModelRequest>,
    ) -> Result<Response<proto::ValueModel>, Status> {
        let Some(m) = request.into_inner().value_model else {
            return Err(invalid_field("value_model", "is required"));
        };
        let weights: BTreeMap<String, f64> = m.weights.into_iter().collect();
        let tiers = m
            .tiers
            .into_iter()
            .map(|t| Tier {
                name: t.display_name,
                percent: t.percent,
            })
            .collect();
        let model = ValueModel::checked(weights, tiers, "value_model").map_err(invalid)?;
        let now = now_micros();
        self.store
            .set_value_model(&model.weights_json(), &model.tiers_json(), now)
            .await
            .map_err(from_store)?;
        Ok(Response::new(model_to_proto(&ValueModel {
            update_time: Some(now),
            ..model
        })))
    }

    async fn get_value_model(
        &self,
        _request: Request<proto::GetValueModelRequest>,
    ) -> Result<Response<proto::ValueModel>, Status> {
        let stored = self.store.get_value_model().await.map_err(from_store)?;
        Ok(Response::new(model_to_proto(&ValueModel::from_stored(
            stored,
        ))))
    }

    async fn compute_scores(
        &self,
        _request: Request<proto::ComputeScoresRequest>,
    ) -> Result<Response<proto::ComputeScoresResponse>, Status> {
        let _run = self.runs.lock().await;
        let out = bakkal_engine::compute_scores(&self.store, now_micros())
            .await
            .map_err(from_engine)?;
        tracing::info!(
            scored = out.scored_count,
            changed = out.changed_count,
            secs = out.duration.as_secs_f64(),
            "scores computed"
        );
        Ok(Response::new(proto::ComputeScoresResponse {
            scored_count: out.scored_count,
            changed_count: out.changed_count,
            tier_counts: out
                .tier_counts
                .into_iter()
                .map(|(tier, customer_count)| proto::TierCount {
                    tier,
                    customer_count,
                })
                .collect(),
            duration: std_duration(out.duration),
        }))
    }

    async fn get_pyramid(
        &self,
        request: Request<proto::GetPyramidRequest>,
    ) -> Result<Response<proto::Pyramid>, Status> {
        let req = request.into_inner();
        let mut errs = ValidationError::new();
        let segment = match req.segment.as_str() {
            "" => None,
            s => match parse_id(s, "segments") {
                Some(id) => Some(id),
                None => {
                    errs.add(
                        "segment",
                        format!("'{s}' is not a segment name like segments/12"),
                    );
                    None
                }
            },
        };
        let breakdown = match req.breakdown.as_str() {
            "" => Breakdown::None,
            "region" => Breakdown::Region,
            "stage" => Breakdown::Stage,
            b => match b.strip_prefix("attributes.") {
                Some(k) if is_attribute_key(k) => Breakdown::Attribute(k.to_string()),
                _ => {
                    errs.add(
                        "breakdown",
                        format!(
                            "'{b}' is not a breakdown: use region, stage or attributes.NAME \
                             (letters, digits, _ and -)"
                        ),
                    );
                    Breakdown::None
                }
            },
        };
        errs.into_result().map_err(invalid)?;
        if let Some(id) = segment {
            self.store.get_segment(id).await.map_err(from_store)?;
        }
        let model =
            ValueModel::from_stored(self.store.get_value_model().await.map_err(from_store)?);
        let cells = self
            .store
            .pyramid(segment, &breakdown, now_micros())
            .await
            .map_err(from_store)?;
        let total_revenue: i64 = cells.iter().map(|c| c.revenue).sum();
        let total_count: i64 = cells.iter().map(|c| c.customer_count).sum();
        let share = |r: i64| {
            if total_revenue > 0 {
                r as f64 / total_revenue as f64
            } else {
                0.0
            }
        };
        // The model's tiers first, then any tier of an earlier model still recorded.
        let mut names: Vec<String> = model.tiers.iter().map(|t| t.name.clone()).collect();
        for c in &cells {
            if !names.contains(&c.tier) {
                names.push(c.tier.clone());
            }
        }
        let tiers = names
            .into_iter()
            .map(|name| {
                let mine: Vec<_> = cells.iter().filter(|c| c.tier == name).collect();
                let count: i64 = mine.iter().map(|c| c.customer_count).sum();
                let revenue: i64 = mine.iter().map(|c| c.revenue).sum();
                let min = mine
                    .iter()
                    .map(|c| c.min_score)
                    .fold(f64::INFINITY, f64::min);
                let max = mine
                    .iter()
                    .map(|c| c.max_score)
                    .fold(f64::NEG_INFINITY, f64::max);
                let mut breakdown: Vec<proto::PyramidBreakdown> = if req.breakdown.is_empty() {
                    Vec::new()
                } else {
                    mine.iter()
                        .map(|c| proto::PyramidBreakdown {
                            value: c.value.clone(),
                            customer_count: c.customer_count,
                            revenue_share: share(c.revenue),
                        })
                        .collect()
                };
                breakdown.sort_by(|a, b| a.value.cmp(&b.value));
                proto::PyramidTier {
                    tier: name,
                    customer_count: count,
                    revenue_share: share(revenue),
                    revenue: micros_to_amount(revenue),
                    min_score: if count > 0 { min } else { 0.0 },
                    max_score: if count > 0 { max } else { 0.0 },
                    breakdown,
                }
            })
            .collect();
        Ok(Response::new(proto::Pyramid {
            tiers,
            customer_count: total_count,
            revenue: micros_to_amount(total_revenue),
        }))
    }

    async fn get_customer_score(
        &self,
        request: Request<proto::GetCustomerScoreRequest>,
    ) -> Result<Response<proto::CustomerScore>, Status> {
        let scope = crate::auth::customer_scope(&request);
        let id = customer_ref(&request.get_ref().customer, "customer").map_err(invalid)?;
        let (c, score) = self
            .store
            .customer_score(id, &scope)
            .await
            .map_err(from_store)?;
        let Some(s) = score else {
            return Err(Status::failed_precondition(format!(
                "{} has no score yet: run ComputeScores",
                c.name()
            )));
        };
        Ok(Response::new(proto::CustomerScore {
            customer: customer_name(c.id),
            score: s.score,
            tier: s.tier,
            rfm_r: s.rfm[0] as i32,
            rfm_f: s.rfm[1] as i32,
            rfm_m: s.rfm[2] as i32,
            compute_time: Some(timestamp(s.compute_time)),
        }))
    }

    async fn create_segment(
        &self,
        request: Request<proto::CreateSegmentRequest>,
    ) -> Result<Response<proto::Segment>, Status> {
        let Some(seg) = request.into_inner().segment else {
            return Err(invalid_field("segment", "is required"));
        };
        let mut errs = ValidationError::new();
        let display_name = seg.display_name.trim().to_string();
        if display_name.is_empty() {
            errs.add("segment.display_name", "is required");
        } else if display_name.chars().count() > MAX_DISPLAY_NAME {
            errs.add(
                "segment.display_name",
                format!("must be at most {MAX_DISPLAY_NAME} characters"),
            );
        }
        let script = seg.script.trim().to_string();
        if script.is_empty() {
            errs.add(
                "segment.script",
                "is required: scripts/{id} or scripts/{id}@{revision}",
            );
        } else if bakkal_domain::name::parse_script(&script).is_none() {
            errs.add("segment.script", bad_script_name(&script));
        }
        let filter = seg.filter.trim().to_string();
        if let Err(e) = filter_clauses(&filter) {
            errs.add("segment.filter", e);
        }
        errs.into_result().map_err(invalid)?;
        // The script must exist, be a SEGMENT script and compile.
        self.load_script(&script, "segment.script", false).await?;
        let s = self
            .store
            .create_segment(
                &NewSegment {
                    display_name,
                    script,
                    filter,
                },
                now_micros(),
            )
            .await
            .map_err(from_store)?;
        Ok(Response::new(segment_to_proto(&s)))
    }

    async fn get_segment(
        &self,
        request: Request<proto::GetSegmentRequest>,
    ) -> Result<Response<proto::Segment>, Status> {
        let id = segment_ref(&request.get_ref().name, "name")?;
        let s = self.store.get_segment(id).await.map_err(from_store)?;
        Ok(Response::new(segment_to_proto(&s)))
    }

    async fn list_segments(
        &self,
        request: Request<proto::ListSegmentsRequest>,
    ) -> Result<Response<proto::ListSegmentsResponse>, Status> {
        let req = request.into_inner();
        let size = page_token::page_size(req.page_size)?;
        let query = ["segments"];
        let after = page_token::decode(&req.page_token, &query)?;
        let (items, next) = self
            .store
            .list_segments(size, after.as_ref())
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListSegmentsResponse {
            segments: items.iter().map(segment_to_proto).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    async fn preview_segment(
        &self,
        request: Request<proto::PreviewSegmentRequest>,
    ) -> Result<Response<proto::PreviewSegmentResponse>, Status> {
        let pii = crate::auth::mask::Pii::of(&request);
        let scope = crate::auth::customer_scope(&request);
        let req = request.into_inner();
        let sample_size = match req.sample_size {
            0 => DEFAULT_SAMPLE,
            1..=MAX_SAMPLE => req.sample_size as usize,
            n => {
                return Err(invalid_field(
                    "sample_size",
                    format!(
                        "must be between 1 and {MAX_SAMPLE} (or 0 for {DEFAULT_SAMPLE}), got {n}"
                    ),
                ))
            }
        };
        let (rule, clauses) = match &req.target {
            Some(Target::Name(name)) => {
                if !req.filter.is_empty() {
                    return Err(invalid_field(
                        "filter",
                        "is given by the segment; set it only with `script`",
                    ));
                }
                let id = segment_ref(name, "name")?;
                let seg = self.store.get_segment(id).await.map_err(from_store)?;
                let clauses = parse_filter(&seg.filter, "filter")?;
                (
                    self.load_script(&seg.script, "script", true).await?,
                    clauses,
                )
            }
            Some(Target::Script(script)) => {
                let clauses = parse_filter(&req.filter, "filter")?;
                (self.load_script(script, "script", false).await?, clauses)
            }
            None => {
                return Err(invalid_field(
                    "target",
                    "set `name` (a segment) or `script` (a SEGMENT script)",
                ))
            }
        };
        let rule = if req.interpreter_only {
            rule.interpreted()
        } else {
            rule
        };
        let out = bakkal_engine::evaluate(
            &self.store,
            &self.host,
            &rule,
            &clauses,
            sample_size,
            false,
            now_micros(),
            &scope,
        )
        .await
        .map_err(from_engine)?;
        let error_examples = self.examples(&out.error_examples, pii).await?;
        Ok(Response::new(proto::PreviewSegmentResponse {
            matched_count: out.matched_count,
            evaluated_count: out.evaluated_count,
            error_count: out.error_count,
            error_examples,
            sample: out.sample.iter().map(|&id| customer_name(id)).collect(),
            tier_breakdown: out.tier_counts.into_iter().collect(),
            duration: std_duration(out.duration),
            evaluated_in_database: out.in_database,
        }))
    }

    async fn refresh_segment(
        &self,
        request: Request<proto::RefreshSegmentRequest>,
    ) -> Result<Response<proto::RefreshSegmentResponse>, Status> {
        let pii = crate::auth::mask::Pii::of(&request);
        let req = request.into_inner();
        let id = segment_ref(&req.name, "name")?;
        let seg = self.store.get_segment(id).await.map_err(from_store)?;
        let clauses = parse_filter(&seg.filter, "filter")?;
        let rule = self.load_script(&seg.script, "script", true).await?;
        let rule = if req.interpreter_only {
            rule.interpreted()
        } else {
            rule
        };
        let _run = self.runs.lock().await;
        let out =
            bakkal_engine::refresh(&self.store, &self.host, id, &rule, &clauses, now_micros())
                .await
                .map_err(from_engine)?;
        tracing::info!(
            segment = %seg.name(),
            members = out.segment.member_count,
            entered = out.entered_count,
            exited = out.exited_count,
            errors = out.evaluation.error_count,
            in_database = out.evaluation.in_database,
            secs = out.evaluation.duration.as_secs_f64(),
            "segment refreshed"
        );
        Ok(Response::new(proto::RefreshSegmentResponse {
            member_count: out.segment.member_count,
            segment: Some(segment_to_proto(&out.segment)),
            entered_count: out.entered_count,
            exited_count: out.exited_count,
            evaluated_count: out.evaluation.evaluated_count,
            error_count: out.evaluation.error_count,
            error_examples: self.examples(&out.evaluation.error_examples, pii).await?,
            duration: std_duration(out.evaluation.duration),
            evaluated_in_database: out.evaluation.in_database,
        }))
    }

    async fn list_segment_members(
        &self,
        request: Request<proto::ListSegmentMembersRequest>,
    ) -> Result<Response<proto::ListSegmentMembersResponse>, Status> {
        let scope = crate::auth::customer_scope(&request);
        let req = request.into_inner();
        let id = segment_ref(&req.parent, "parent")?;
        let size = page_token::page_size(req.page_size)?;
        let query = [req.parent.as_str()];
        let after = page_token::decode(&req.page_token, &query)?;
        let (ids, next) = self
            .store
            .list_segment_members(id, size, after.as_ref(), &scope)
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListSegmentMembersResponse {
            customers: ids.into_iter().map(customer_name).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }
}
