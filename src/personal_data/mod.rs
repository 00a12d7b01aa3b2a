//! `bakkal.v1.PersonalDataService`: a person's own data. Consent events with their
//! provenance (CreateConsentEvent, ListConsentEvents) and everything bakkal holds about one
//! person as one JSON document (ExportCustomerData). The store side is
//! `crates/bakkal-store/src/personal_data/`; erasure is CustomerService.DeleteCustomer.
//!
//! The export streams `CustomerDataChunk { string json }` rather than one message: a person
//! with a long history can outgrow a client's 4 MiB message limit, and the store writes the
//! document section by section without holding it whole. The chunks are text, not bytes, so
//! that `grpcurl … | jq -j .json` writes the document out as it is (bytes would come as
//! base64, one chunk at a time).

use bakkal_domain::personal_data::{ConsentEvent, ConsentSource, NewConsentEvent};
use bakkal_domain::time::now_micros;
use bakkal_domain::{ConsentChannel, ValidationError};
use bakkal_store::{Cursor, Store};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::customer_scope;
use crate::auth::mask::Pii;
use crate::convert::{customer_ref, micros, timestamp};
use crate::page_token;
use crate::proto::personal_data_service_server::PersonalDataService;
use crate::proto::{self, ConsentSource as ProtoSource, MessageChannel};
use crate::status::{from_store, invalid, invalid_field};

const MAX_REQUEST_ID: usize = 128;

pub struct PersonalDataApi {
    store: Store,
}

impl PersonalDataApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn channel_from_proto(c: i32) -> Option<ConsentChannel> {
    match MessageChannel::try_from(c).ok()? {
        MessageChannel::Email => Some(ConsentChannel::Email),
        MessageChannel::Sms => Some(ConsentChannel::Sms),
        MessageChannel::Push => Some(ConsentChannel::Push),
        MessageChannel::Phone => Some(ConsentChannel::Phone),
        MessageChannel::Unspecified => None,
    }
}

fn channel_to_proto(c: ConsentChannel) -> MessageChannel {
    match c {
        ConsentChannel::Email => MessageChannel::Email,
        ConsentChannel::Sms => MessageChannel::Sms,
        ConsentChannel::Push => MessageChannel::Push,
        ConsentChannel::Phone => MessageChannel::Phone,
    }
}

fn source_from_proto(s: i32) -> Option<ConsentSource> {
    Some(match ProtoSource::try_from(s).ok()? {
        ProtoSource::Unspecified | ProtoSource::Api => ConsentSource::Api,
        ProtoSource::WebForm => ConsentSource::WebForm,
        ProtoSource::Import => ConsentSource::Import,
        ProtoSource::Agent => ConsentSource::Agent,
        ProtoSource::EmailLink => ConsentSource::EmailLink,
        ProtoSource::InStore => ConsentSource::InStore,
        ProtoSource::Merge => ConsentSource::Merge,
        ProtoSource::Migrated => ConsentSource::Migrated,
    })
}

fn source_to_proto(s: ConsentSource) -> ProtoSource {
    match s {
        ConsentSource::WebForm => ProtoSource::WebForm,
        ConsentSource::Import => ProtoSource::Import,
        ConsentSource::Agent => ProtoSource::Agent,
        ConsentSource::Api => ProtoSource::Api,
        ConsentSource::EmailLink => ProtoSource::EmailLink,
        ConsentSource::InStore => ProtoSource::InStore,
        ConsentSource::Merge => ProtoSource::Merge,
        ConsentSource::Migrated => ProtoSource::Migrated,
    }
}

/// An event as this caller may see it: without `customers.pii.read`, no IP address or user
/// agent.
fn event_to_proto(e: &ConsentEvent, pii: Pii) -> proto::ConsentEvent {
    proto::ConsentEvent {
        name: e.name(),
        channel: channel_to_proto(e.channel) as i32,
        granted: e.granted,
        event_time: Some(timestamp(e.event_time)),
        source: source_to_proto(e.source) as i32,
        terms: e.terms.clone(),
        actor: e.actor.clone(),
        ip_address: pii.hidden(&e.ip_address),
        user_agent: pii.hidden(&e.user_agent),
        create_time: Some(timestamp(e.create_time)),
    }
}

/// The decision a request asks to record, checked at the edge.
fn new_event(e: &proto::ConsentEvent, now: i64) -> Result<NewConsentEvent, ValidationError> {
    let mut errs = ValidationError::new();
    let channel = channel_from_proto(e.channel);
    if channel.is_none() {
        errs.add(
            "consent_event.channel",
            "is required: MESSAGE_CHANNEL_EMAIL, _SMS, _PUSH or _PHONE",
        );
    }
    let source = source_from_proto(e.source);
    match source {
        None => errs.add("consent_event.source", "is not a known consent source"),
        Some(s) if !s.caller_may_give() => errs.add(
            "consent_event.source",
            format!(
                "{} is recorded by bakkal itself",
                source_to_proto(s).as_str_name()
            ),
        ),
        Some(_) => {}
    }
    let event_time = e
        .event_time
        .as_ref()
        .and_then(|t| micros(t, "consent_event.event_time", &mut errs));
    let (Some(channel), Some(source)) = (channel, source) else {
        return Err(errs);
    };
    errs.into_result()?;
    NewConsentEvent {
        channel,
        granted: e.granted,
        event_time,
        source,
        terms: e.terms.clone(),
        ip_address: e.ip_address.clone(),
        user_agent: e.user_agent.clone(),
    }
    .checked(now)
}

#[tonic::async_trait]
impl PersonalDataService for PersonalDataApi {
    async fn create_consent_event(
        &self,
        request: Request<proto::CreateConsentEventRequest>,
    ) -> Result<Response<proto::ConsentEvent>, Status> {
        let pii = Pii::of(&request);
        let scope = customer_scope(&request);
        let req = request.into_inner();
        let customer = customer_ref(&req.parent, "parent").map_err(invalid)?;
        let Some(e) = req.consent_event.as_ref() else {
            return Err(invalid_field("consent_event", "is required"));
        };
        if req.request_id.chars().count() > MAX_REQUEST_ID {
            return Err(invalid_field(
                "request_id",
                format!("is longer than {MAX_REQUEST_ID} characters"),
            ));
        }
        let now = now_micros();
        let event = new_event(e, now).map_err(invalid)?;
        let request_id = Some(req.request_id.as_str()).filter(|r| !r.is_empty());
        let created = self
            .store
            .create_consent_event(customer, &scope, &event, request_id, now)
            .await
            .map_err(from_store)?;
        Ok(Response::new(event_to_proto(&created, pii)))
    }

    async fn list_consent_events(
        &self,
        request: Request<proto::ListConsentEventsRequest>,
    ) -> Result<Response<proto::ListConsentEventsResponse>, Status> {
        let pii = Pii::of(&request);
        let scope = customer_scope(&request);
        let req = request.into_inner();
        let customer = customer_ref(&req.parent, "parent").map_err(invalid)?;
        let size = page_token::page_size(req.page_size)?;
        let query = ["consentEvents", req.parent.as_str()];
        let after = page_token::decode(&req.page_token, &query)?;
        if !matches!(after, None | Some(Cursor::Int(..))) {
            return Err(invalid_field(
                "page_token",
                "is not a page token of this list; start again without one",
            ));
        }
        let (events, next) = self
            .store
            .list_consent_events(customer, &scope, size, after.as_ref())
            .await
            .map_err(from_store)?;
        Ok(Response::new(proto::ListConsentEventsResponse {
            consent_events: events.iter().map(|e| event_to_proto(e, pii)).collect(),
            next_page_token: page_token::encode(next, &query),
        }))
    }

    type ExportCustomerDataStream = ReceiverStream<Result<proto::CustomerDataChunk, Status>>;

    async fn export_customer_data(
        &self,
        request: Request<proto::ExportCustomerDataRequest>,
    ) -> Result<Response<Self::ExportCustomerDataStream>, Status> {
        let scope = customer_scope(&request);
        let req = request.into_inner();
        let id = customer_ref(&req.name, "name").map_err(invalid)?;
        if let Some(call) = bakkal_store::audit::current() {
            call.set_resource(bakkal_domain::name::customer_name(id));
        }
        // NOT_FOUND (or erased) is known before the stream starts
        let subject = self
            .store
            .data_subject(id, &scope)
            .await
            .map_err(from_store)?;
        let (chunks_tx, mut chunks_rx) = mpsc::channel::<String>(4);
        let (tx, rx) = mpsc::channel(4);
        let store = self.store.clone();
        let writer = tokio::spawn(bakkal_store::audit::inherit(async move {
            store
                .export_personal_data(subject, now_micros(), chunks_tx)
                .await
        }));
        tokio::spawn(async move {
            while let Some(json) = chunks_rx.recv().await {
                if tx
                    .send(Ok(proto::CustomerDataChunk { json }))
                    .await
                    .is_err()
                {
                    return; // the client went away; the writer stops at its next chunk
                }
            }
            let failed = match writer.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(from_store(e)),
                Err(_) => Some(Status::internal("the export failed")),
            };
            if let Some(status) = failed {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
