//! One table from every error bakkal has to the gRPC status a client sees, with
//! `google.rpc` details: BadRequest field violations for bad input, ResourceInfo naming the
//! resource for NOT_FOUND and ALREADY_EXISTS.

use bakkal_domain::ValidationError;
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
