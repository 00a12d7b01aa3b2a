//! Routing a new ticket: the latest ROUTING script (with its active revision) chooses the
//! team, priority, assignee and topic through `route(ticket, customer)`; what the caller set
//! explicitly wins. Without a script, or for what the script leaves open, the store routes to
//! the default team (the first one) and, within the team, to the active agent with the fewest
//! open tickets. A script that fails, or names a team or agent that does not exist, is logged
//! and ignored: a broken rule must not stop customers' tickets from coming in.

use std::sync::Arc;

use bakkal_domain::name::parse_id;
use bakkal_domain::time::Micros;
use bakkal_domain::{Customer, CustomerFields, OrderTotals};
use bakkal_script::{ScriptCustomer, ScriptHost, ScriptKind, ScriptTicket};
use bakkal_store::{
    script_revision_name, NewTicket, RecordScope, Store, StoreError, TicketCustomer,
};
use tonic::Status;

use crate::status::from_store;

/// The customer the script sees: the one the ticket will be linked to, or, for an unknown
/// contact, the prospect it will become.
async fn customer_for(store: &Store, new: &NewTicket, now: Micros) -> Result<Customer, Status> {
    match &new.customer {
        // the ticket's own customer, whoever opens it (routing is the desk's, not the caller's)
        TicketCustomer::Id(id) => store
            .get_customer(*id, &RecordScope::All)
            .await
            .map_err(from_store),
        TicketCustomer::Contact {
            email,
            phone,
            display_name,
        } => {
            let found = store
                .find_customer_by_contact(email.as_deref(), phone.as_deref())
                .await
                .map_err(from_store)?;
            Ok(found.unwrap_or_else(|| Customer {
                id: 0,
                fields: CustomerFields {
                    display_name: display_name.clone(),
                    email: email.clone(),
                    phone: phone.clone(),
                    ..Default::default()
                },
                create_time: now,
                update_time: now,
                converted_time: None,
                version: 0,
                totals: OrderTotals::default(),
                referral_count: 0,
            }))
        }
    }
}

/// Apply the ROUTING script to `new`, if one is configured.
pub async fn route(
    store: &Store,
    host: &Arc<ScriptHost>,
    new: &mut NewTicket,
    now: Micros,
) -> Result<(), Status> {
    let customer = customer_for(store, new, now).await?;
    let Some(script_id) = store
        .latest_script_id(ScriptKind::Routing.as_str())
        .await
        .map_err(from_store)?
    else {
        return Ok(());
    };
    let script = store
        .get_script(script_id, None)
        .await
        .map_err(from_store)?;
    let tier = if customer.id > 0 {
        store.customer_tier(customer.id).await.map_err(from_store)?
    } else {
        None
    };
    // The tier's place in the pyramid, 1 at the top, from the value model's tiers.
    let tier_rank = match &tier {
        Some(name) => {
            let model = bakkal_engine::model::ValueModel::from_stored(
                store.get_value_model().await.map_err(from_store)?,
            );
            model
                .tiers
                .iter()
                .position(|t| &t.name == name)
                .map(|i| i as i64 + 1)
        }
        None => None,
    };
    let ticket = ScriptTicket {
        id: 0,
        kind: new.kind.clone(),
        channel: new.channel.clone(),
        subject: new.subject.clone(),
        description: new.description.clone(),
        topic: new.topic.clone(),
        priority: new.priority.clone().unwrap_or_else(|| "NORMAL".into()),
        contact_email: Some(new.contact_email.clone()).filter(|e| !e.is_empty()),
        contact_phone: Some(new.contact_phone.clone()).filter(|p| !p.is_empty()),
        team: new.team_id.map(bakkal_domain::ticket::team_name),
        assignee: new.assignee_id.map(bakkal_domain::ticket::agent_name),
        customer_tier: tier,
        customer_tier_rank: tier_rank,
        create_time: now,
    };
    let key = script_revision_name(script.id, script.revision.revision);
    let source = script.revision.source.clone();
    let host = host.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let compiled = host
            .compile_cached(&key, ScriptKind::Routing, &source)
            .map_err(|d| {
                d.iter()
                    .map(crate::status::diagnostic_text)
                    .collect::<Vec<_>>()
                    .join("; ")
            })?;
        let sc = ScriptCustomer::new(customer, Vec::new());
        host.eval_route(&compiled, &ticket, &sc, now)
            .into_result()
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "routing task failed");
        Status::internal("internal error; it has been logged")
    })?;
    let route = match outcome {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(()),
        Err(e) => {
            tracing::warn!(script = script_id, error = %e, "ROUTING script failed; default routing");
            return Ok(());
        }
    };
    if new.team_id.is_none() {
        if let Some(id) = route.team.as_deref().and_then(|t| parse_id(t, "teams")) {
            match store.get_team(id).await {
                Ok(_) => new.team_id = Some(id),
                Err(StoreError::NotFound(_)) => {
                    tracing::warn!(
                        script = script_id,
                        team = id,
                        "ROUTING script named no team"
                    )
                }
                Err(e) => return Err(from_store(e)),
            }
        }
    }
    if new.assignee_id.is_none() {
        if let Some(id) = route
            .assignee
            .as_deref()
            .and_then(|a| parse_id(a, "agents"))
        {
            match store.get_agent(id).await {
                Ok(a) if a.fields.active => new.assignee_id = Some(id),
                Ok(_) | Err(StoreError::NotFound(_)) => tracing::warn!(
                    script = script_id,
                    agent = id,
                    "ROUTING script named no active agent"
                ),
                Err(e) => return Err(from_store(e)),
            }
        }
    }
    if new.priority.is_none() {
        new.priority = route.priority;
    }
    if new.topic.is_empty() {
        if let Some(t) = route.topic {
            new.topic = t.trim().to_lowercase();
        }
    }
    Ok(())
}
