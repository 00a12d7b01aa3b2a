//! What the host tells an observer (the server's metrics) of every script call: its kind and,
//! when it failed, how, down to the limit it hit.

use rhai::{EvalAltResult, ParseErrorType};

use crate::error::{ErrorCategory, Stop};
use crate::ScriptKind;

/// Told of every call as it ends, on the thread that ran it: must be cheap (atomic adds).
pub trait ScriptObserver: Send + Sync + std::fmt::Debug {
    fn call_finished(&self, kind: ScriptKind, failure: Option<Failure>);
}

/// How a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub category: ErrorCategory,
    /// The limit hit, for [`ErrorCategory::Limit`].
    pub limit: Option<Limit>,
}

/// The limits a call can hit (see [`crate::HostConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// More operations than `max_operations`.
    Operations,
    /// Past the call's deadline.
    Deadline,
    /// Function calls nested deeper than `max_call_levels`.
    CallDepth,
    /// Expressions nested too deep.
    ExpressionDepth,
    /// A string, array or map grown past its size limit.
    Size,
    /// Too many variables or modules.
    Other,
}

impl Limit {
    pub const ALL: [Limit; 6] = [
        Limit::Operations,
        Limit::Deadline,
        Limit::CallDepth,
        Limit::ExpressionDepth,
        Limit::Size,
        Limit::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Operations => "operations",
            Limit::Deadline => "deadline",
            Limit::CallDepth => "call_depth",
            Limit::ExpressionDepth => "expression_depth",
            Limit::Size => "size",
            Limit::Other => "other",
        }
    }

    /// The limit of a call the host stopped itself.
    pub(crate) fn of_stop(stop: Stop) -> Option<Limit> {
        match stop {
            Stop::Operations => Some(Limit::Operations),
            Stop::Deadline => Some(Limit::Deadline),
            Stop::Cancelled => None,
        }
    }

    /// The limit behind a rhai error, as `ScriptError::from_eval` classifies it.
    pub(crate) fn of_eval(err: &EvalAltResult) -> Option<Limit> {
        let mut e = err;
        while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _) = e {
            e = inner;
        }
        use EvalAltResult as E;
        Some(match e {
            E::ErrorTooManyOperations(_) => Limit::Operations,
            E::ErrorTerminated(..) => Limit::Deadline,
            E::ErrorStackOverflow(_) => Limit::CallDepth,
            E::ErrorDataTooLarge(..) => Limit::Size,
            E::ErrorParsing(ParseErrorType::ExprTooDeep, _) => Limit::ExpressionDepth,
            E::ErrorTooManyVariables(_) | E::ErrorTooManyModules(_) => Limit::Other,
            _ => return None,
        })
    }
}

impl ErrorCategory {
    pub const ALL: [ErrorCategory; 6] = [
        ErrorCategory::Limit,
        ErrorCategory::Runtime,
        ErrorCategory::WrongReturnType,
        ErrorCategory::Input,
        ErrorCategory::Cancelled,
        ErrorCategory::Internal,
    ];
}
