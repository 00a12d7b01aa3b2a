//! One table from every error bakkal has to the gRPC status a client sees, with
//! `google.rpc` details: BadRequest field violations for bad input, ResourceInfo naming the
//! resource for NOT_FOUND and ALREADY_EXISTS.
//!
//! Every status built here is bounded, whatever the caller sent: a message keeps at most
//! [`MAX_MESSAGE`] bytes and a BadRequest at most [`MAX_VIOLATIONS`] violations of bounded
//! field and description (`bakkal_domain::error`), so message and details together stay well
//! under the 8 KiB of metadata a default gRPC client accepts.

use std::collections::HashMap;

pub use bakkal_domain::error::quote;
use bakkal_domain::error::{bounded, MAX_DESCRIPTION, MAX_FIELD};
use bakkal_domain::ValidationError;
use bakkal_script::{Diagnostic, ErrorCategory, ScriptError};
use bakkal_store::StoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// The longest message a status carries, in bytes.
pub const MAX_MESSAGE: usize = 512;
/// The most field violations a BadRequest lists; the last one listed then says how many more.
pub const MAX_VIOLATIONS: usize = 10;

/// When a client may retry a call the database could not serve (`RetryInfo`).
pub const DATABASE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// A status whose message is bounded.
fn status(code: Code, message: impl Into<String>) -> Status {
    Status::new(code, bounded(message, MAX_MESSAGE))
}

/// A status with details whose message is bounded (the details are bounded where built).
fn detailed(code: Code, message: impl Into<String>, details: ErrorDetails) -> Status {
    Status::with_error_details(code, bounded(message, MAX_MESSAGE), details)
}

/// Field violations, bounded in number and size.
fn violations<F, D>(all: impl ExactSizeIterator<Item = (F, D)>) -> Vec<FieldViolation>
where
    F: Into<String>,
    D: Into<String>,
{
    let total = all.len();
    let keep = if total > MAX_VIOLATIONS {
        MAX_VIOLATIONS - 1
    } else {
        total
    };
    let mut out: Vec<FieldViolation> = all
        .take(keep)
        .map(|(f, d)| FieldViolation::new(bounded(f, MAX_FIELD), bounded(d, MAX_DESCRIPTION)))
        .collect();
    if total > keep {
        out.push(FieldViolation::new(
            "",
            format!("and {} more violations", total - keep),
        ));
    }
    out
}

/// INVALID_ARGUMENT listing the field violations (at most [`MAX_VIOLATIONS`]).
pub fn invalid(e: ValidationError) -> Status {
    let listed = violations(
        e.violations
            .iter()
            .map(|v| (v.field.as_str(), v.description.as_str())),
    );
    detailed(
        Code::InvalidArgument,
        format!("invalid argument: {e}"),
        ErrorDetails::with_bad_request(listed),
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
    let name = bounded(name, MAX_FIELD);
    detailed(
        Code::NotFound,
        format!("{name} not found"),
        ErrorDetails::with_resource_info(resource_type(&name), name.clone(), "", "does not exist"),
    )
}

/// The status for a store error. Real faults are logged here and reported without internals.
/// A database that is down, restarting or out of connections is UNAVAILABLE (with
/// `RetryInfo`); a full disk is RESOURCE_EXHAUSTED; neither is INTERNAL, since a retry later
/// succeeds (README, "Faults").
pub fn from_store(e: StoreError) -> Status {
    match e {
        StoreError::Invalid(v) => invalid(v),
        StoreError::NotFound(name) => not_found(&name),
        StoreError::AlreadyExists {
            existing,
            field,
            message,
        } => {
            let existing = bounded(existing, MAX_FIELD);
            let field = bounded(field, MAX_FIELD);
            let mut details = ErrorDetails::with_resource_info(
                resource_type(&existing),
                existing.clone(),
                "",
                format!("{field} is already held by {existing}"),
            );
            details.add_bad_request_violation(field, format!("already used by {existing}"));
            detailed(Code::AlreadyExists, message, details)
        }
        StoreError::Aborted(m) => status(Code::Aborted, m),
        StoreError::FailedPrecondition(m) => status(Code::FailedPrecondition, m),
        // PostgreSQL refusing a character (NUL) in text: the domain refuses control characters
        // in the fields it checks; this keeps any other text field from becoming INTERNAL.
        StoreError::Database(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("22021" | "22P05")) =>
        {
            status(
                Code::InvalidArgument,
                "the text sent holds a character the database cannot store (such as NUL)",
            )
        }
        e if e.is_disk_full() => {
            tracing::warn!(error = %e, "the database's disk is full; write refused");
            detailed(
                Code::ResourceExhausted,
                "the database's disk is full: writes are refused until space is freed (reads \
                 still work); retry later",
                ErrorDetails::with_error_info("DATABASE_DISK_FULL", "bakkal.v1", HashMap::new()),
            )
        }
        e if e.is_unavailable() => {
            tracing::warn!(error = %e, "database unavailable");
            let mut details = ErrorDetails::with_retry_info(Some(DATABASE_RETRY));
            details.set_error_info("DATABASE_UNAVAILABLE", "bakkal.v1", HashMap::new());
            detailed(
                Code::Unavailable,
                "the database is busy or unavailable; retry later",
                details,
            )
        }
        other => {
            tracing::error!(error = %other, "internal error");
            Status::internal("internal error; it has been logged")
        }
    }
}

/// The status for a request tonic could not decode, or `None` for any other status. tonic's
/// codec answers INTERNAL for a message that does not decode (invalid UTF-8, a wrong wire
/// type, a truncated body) and OUT_OF_RANGE for one over the size limit; for a server those
/// are the caller's fault: INVALID_ARGUMENT and RESOURCE_EXHAUSTED. Logged here.
pub fn from_decode(s: &Status) -> Option<Status> {
    const UNDECODABLE: &[&str] = &[
        "failed to decode Protobuf message",
        "Unexpected EOF decoding stream",
        "Missing request message",
        "protocol error: received message with",
        "Error decompressing",
    ];
    let message = s.message();
    let code = match s.code() {
        Code::Internal if UNDECODABLE.iter().any(|p| message.starts_with(p)) => {
            Code::InvalidArgument
        }
        Code::OutOfRange if message.starts_with("Error, decoded message length too large") => {
            Code::ResourceExhausted
        }
        _ => return None,
    };
    tracing::warn!(error = %quote(message), "request message refused by the decoder");
    Some(status(
        code,
        format!("the request message is unusable: {message}"),
    ))
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
    let listed = violations(diagnostics.iter().map(|d| (field, diagnostic_text(d))));
    let summary: Vec<String> = diagnostics
        .iter()
        .take(MAX_VIOLATIONS)
        .map(diagnostic_text)
        .collect();
    detailed(
        code,
        format!("{field} has problems: {}", summary.join("; ")),
        ErrorDetails::with_bad_request(listed),
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
    let text = bounded(text, MAX_DESCRIPTION);
    details.add_bad_request_violation(field, text.clone());
    let prefix = match e.category {
        ErrorCategory::Limit => "the script hit a limit",
        ErrorCategory::Input => "the script's input is unusable",
        ErrorCategory::Cancelled => "the script was stopped",
        _ => "the script failed",
    };
    detailed(code, format!("{prefix}: {text}"), details)
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

/// RESOURCE_EXHAUSTED for a principal over its request rate: when to retry (RetryInfo) and
/// whose quota (QuotaFailure).
pub fn rate_limited(principal: &str, per_second: f64, retry: std::time::Duration) -> Status {
    let mut details = ErrorDetails::with_retry_info(Some(retry));
    details.add_quota_failure_violation(
        principal,
        format!("at most {per_second} requests per second"),
    );
    detailed(
        Code::ResourceExhausted,
        format!(
            "{principal} is over its rate of {per_second} requests per second; retry in {} ms",
            retry.as_millis().max(1)
        ),
        details,
    )
}

/// UNAVAILABLE for a server at its limit of calls in flight, with when to retry.
pub fn overloaded(max_in_flight: usize, retry: std::time::Duration) -> Status {
    detailed(
        Code::Unavailable,
        format!(
            "the server is at its limit of {max_in_flight} calls in flight; retry in {} ms",
            retry.as_millis()
        ),
        ErrorDetails::with_retry_info(Some(retry)),
    )
}

/// The status for a backup error: FAILED_PRECONDITION when backups do not apply here (no
/// backup directory, PostgreSQL, a database being restored), INTERNAL (logged) otherwise.
pub fn from_backup(e: bakkal_store::backup::BackupError) -> Status {
    use bakkal_store::backup::BackupError;
    match e {
        BackupError::Refused(m) => status(Code::FailedPrecondition, m),
        BackupError::Database(db) => from_store(StoreError::Database(db)),
        other => {
            tracing::error!(error = %other, "backup failed");
            Status::internal("the backup failed; the reason has been logged")
        }
    }
}

/// `OK`, `NOT_FOUND`, `PERMISSION_DENIED`, …: a code's canonical name, as the gRPC
/// specification spells it (audit events and metric labels).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
