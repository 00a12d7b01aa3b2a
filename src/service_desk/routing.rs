//! Routing a new ticket: the latest ROUTING script (with its active revision) chooses the
//! team, priority, assignee and topic through `route(ticket, customer)`; what the caller set
//! explicitly wins. Without a script, or for what the script leaves open, the store routes to
//! the default team (the first one) and, within the team, to the active agent with the fewest
//! open tickets.

use bakkal_script::ScriptHost;
use bakkal_store::{NewTicket, Store};
use tonic::Status;

/// Apply the ROUTING script to `new`, if one is configured.
// HOOK: the ROUTING script kind (ScriptKind::Routing, ScriptHost::eval_route) is being added
// to bakkal-script; until it lands, tickets go to the default team.
pub async fn route(_store: &Store, _host: &ScriptHost, _new: &mut NewTicket) -> Result<(), Status> {
    Ok(())
}
