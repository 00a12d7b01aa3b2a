//! One table from every error bakkal has to the gRPC status a client sees, with
//! `google.rpc` details: BadRequest field violations for bad input, ResourceInfo naming the
//! resource for NOT_FOUND and ALREADY_EXISTS.

use std::collections::HashMap;

use bakkal_domain::ValidationError;
use bakkal_script::{Diagnostic, ErrorCategory, ScriptError};
use bakkal_store::StoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// INVALID_ARGUMENT listing every field violation.
pub fn invalid(e: ValidationError) -> Status {
    let violations: Vec<FieldViolation> = e
        .violations
        .iter()
        .map(|v| FieldViolation::new(v.field.clone(), v.description.clone()))
        .collect();
    Status::with_error_details(
        Code::InvalidArgument,
        format!("invalid argument: {e}"),
        ErrorDetails::with_bad_request(violations),
    )
}

/// INVALID_ARGUMENT for one field.
pub fn invalid_field(field: &str, description: impl Into<String>) -> Status {
    invalid(ValidationError::single(field, description))
}

fn resource_type(name: &str) -> &'static str {
    match name.split('/').next() {
        Some("customers") if name.contains("/orders/") => "bakkal.v1.Order",
        Some("customers") if name.contains("/interactions/") => "bakkal.v1.Interaction",
        Some("customers") => "bakkal.v1.Customer",
        Some("products") => "bakkal.v1.Product",
        Some("campaigns") if name.contains("/runs/") => "bakkal.v1.CampaignRun",
        Some("campaigns") => "bakkal.v1.Campaign",
        Some("messages") => "bakkal.v1.Message",
        Some("scripts") if name.contains('@') => "bakkal.v1.ScriptRevision",
        Some("scripts") => "bakkal.v1.Script",
        Some("segments") => "bakkal.v1.Segment",
        Some("tickets") if name.contains("/comments/") => "bakkal.v1.TicketComment",
        Some("tickets") => "bakkal.v1.Ticket",
        Some("agents") => "bakkal.v1.Agent",
        Some("teams") => "bakkal.v1.Team",
        Some("slaPolicies") => "bakkal.v1.SlaPolicy",
        Some("articles") => "bakkal.v1.Article",
        _ => "",
    }
}

/// NOT_FOUND naming the resource.
pub fn not_found(name: &str) -> Status {
    Status::with_error_details(
        Code::NotFound,
        format!("{name} not found"),
        ErrorDetails::with_resource_info(resource_type(name), name, "", "does not exist"),
    )
}

/// The status for a store error. Real faults are logged here and reported without internals.
pub fn from_store(e: StoreError) -> Status {
    match e {
        StoreError::Invalid(v) => invalid(v),
        StoreError::NotFound(name) => not_found(&name),
        StoreError::AlreadyExists {
            existing,
            field,
            message,
        } => {
            let mut details = ErrorDetails::with_resource_info(
                resource_type(&existing),
                existing.clone(),
                "",
                format!("{field} is already held by {existing}"),
            );
            details.add_bad_request_violation(field, format!("already used by {existing}"));
            Status::with_error_details(Code::AlreadyExists, message, details)
        }
        StoreError::Aborted(m) => Status::aborted(m),
        StoreError::FailedPrecondition(m) => Status::failed_precondition(m),
        StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) => {
            tracing::warn!("database pool unavailable");
            Status::unavailable("the database is busy or unavailable; retry later")
        }
        other => {
            tracing::error!(error = %other, "internal error");
            Status::internal("internal error; it has been logged")
        }
    }
}

/// `line 3, column 5: message`, or the message alone when it has no place.
pub fn diagnostic_text(d: &Diagnostic) -> String {
    if d.line > 0 {
        format!("line {}, column {}: {}", d.line, d.column, d.message)
    } else {
        d.message.clone()
    }
}

/// A script's source that does not check out: INVALID_ARGUMENT (or FAILED_PRECONDITION for a
/// stored script that no longer compiles) with a field violation on `field` per diagnostic.
pub fn script_diagnostics(code: Code, field: &str, diagnostics: &[Diagnostic]) -> Status {
    let violations: Vec<FieldViolation> = diagnostics
        .iter()
        .map(|d| FieldViolation::new(field, diagnostic_text(d)))
        .collect();
    let summary: Vec<String> = diagnostics.iter().map(diagnostic_text).collect();
    Status::with_error_details(
        code,
        format!("{field} has problems: {}", summary.join("; ")),
        ErrorDetails::with_bad_request(violations),
    )
}

/// A script that failed while running. A limit is RESOURCE_EXHAUSTED; bad input is
/// INVALID_ARGUMENT on `input_field`; any other failure is INVALID_ARGUMENT when the caller
/// sent the source (`stored` false) and FAILED_PRECONDITION for a stored revision. The
/// position is in the message, in a field violation on `source_field` and in an ErrorInfo
/// (domain `bakkal.script`).
pub fn script_failure(
    e: &ScriptError,
    stored: bool,
    source_field: &str,
    input_field: &str,
) -> Status {
    let code = match e.category {
        ErrorCategory::Limit => Code::ResourceExhausted,
        ErrorCategory::Input => Code::InvalidArgument,
        ErrorCategory::Runtime | ErrorCategory::WrongReturnType if stored => {
            Code::FailedPrecondition
        }
        ErrorCategory::Runtime | ErrorCategory::WrongReturnType => Code::InvalidArgument,
        ErrorCategory::Cancelled => Code::Unavailable,
        ErrorCategory::Internal => Code::Internal,
    };
    let place = match (e.line, e.column) {
        (Some(l), Some(c)) => format!("line {l}, column {c}: "),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    };
    let mut text = format!("{place}{}", e.message);
    if !e.call_stack.is_empty() {
        text.push_str(&format!(" (in fn {})", e.call_stack.join(" > ")));
    }
    let mut metadata = HashMap::from([("category".to_string(), e.category.to_string())]);
    if let Some(l) = e.line {
        metadata.insert("line".into(), l.to_string());
    }
    if let Some(c) = e.column {
        metadata.insert("column".into(), c.to_string());
    }
    let reason = match e.category {
        ErrorCategory::Limit => "SCRIPT_LIMIT",
        ErrorCategory::Input => "SCRIPT_INPUT",
        ErrorCategory::Runtime => "SCRIPT_RUNTIME_ERROR",
        ErrorCategory::WrongReturnType => "SCRIPT_WRONG_RETURN_TYPE",
        ErrorCategory::Cancelled => "SCRIPT_CANCELLED",
        ErrorCategory::Internal => "SCRIPT_INTERNAL_ERROR",
    };
    let mut details = ErrorDetails::with_error_info(reason, "bakkal.script", metadata);
    let field = if e.category == ErrorCategory::Input {
        input_field
    } else {
        source_field
    };
    details.add_bad_request_violation(field, text.clone());
    let prefix = match e.category {
        ErrorCategory::Limit => "the script hit a limit",
        ErrorCategory::Input => "the script's input is unusable",
        ErrorCategory::Cancelled => "the script was stopped",
        _ => "the script failed",
    };
    Status::with_error_details(code, format!("{prefix}: {text}"), details)
}

/// At most the first 64 characters of caller text, for messages that quote it: an error never
/// echoes a huge value back (or into the logs).
pub fn quote(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// Work over many customers stopped before its end because the server is shutting down.
pub fn stopping() -> Status {
    Status::unavailable("stopped before the end: the server is shutting down; try again")
}

/// An evaluation that gave up early: FAILED_PRECONDITION when its rule kept hitting the
/// script's limits (the rule must be fixed), DEADLINE_EXCEEDED when it ran out of time; how
/// far it got and examples either way.
pub fn abandoned(a: &bakkal_engine::segment::Abandoned) -> Status {
    use bakkal_engine::segment::GaveUp;
    let examples: Vec<String> = a
        .error_examples
        .iter()
        .take(3)
        .map(|e| format!("{}: {}", e.customer, quote(&e.message)))
        .collect();
    let so_far = format!(
        "{} customers evaluated before, {} errors; e.g. {}",
        a.evaluated_count,
        a.error_count,
        examples.join("; ")
    );
    match &a.why {
        GaveUp::KeepsFailing(n) => Status::failed_precondition(format!(
            "gave up: {n} customers in a row hit the script's limits (an endless loop?); fix \
             the rule and try again ({so_far})"
        )),
        GaveUp::Deadline(d) => Status::deadline_exceeded(format!(
            "gave up after {} s, the longest an evaluation may run ({so_far})",
            d.as_secs()
        )),
    }
}
