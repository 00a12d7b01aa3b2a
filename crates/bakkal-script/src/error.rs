//! What can go wrong in one call of a script, and how bad it is.

use std::fmt;

use rhai::{EvalAltResult, ParseErrorType, Position};

/// How a script call failed; the transport maps each to a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// The script hit a limit: too many operations, past its deadline, calls or expressions
    /// nested too deep, a string/array/map grown too big. (gRPC: `RESOURCE_EXHAUSTED`.)
    Limit,
    /// The script failed while running: division by zero, unknown function or property,
    /// wrong argument types, index out of bounds, `throw`... (gRPC: `FAILED_PRECONDITION`.)
    Runtime,
    /// The entry point returned something other than what its kind promises.
    WrongReturnType,
    /// The input handed to the script was unusable: a customer or event JSON document that
    /// does not parse, or a script evaluated as the wrong kind. (gRPC: `INVALID_ARGUMENT`.)
    Input,
    /// The call was stopped from outside: the server is shutting down. (gRPC: `UNAVAILABLE`.)
    Cancelled,
    /// The interpreter itself failed (a panic in rhai or in bakkal's API: a bug, not the
    /// script's fault, though this script triggers it). (gRPC: `INTERNAL`.)
    Internal,
}

impl ErrorCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Limit => "LIMIT",
            ErrorCategory::Runtime => "RUNTIME",
            ErrorCategory::WrongReturnType => "WRONG_RETURN_TYPE",
            ErrorCategory::Input => "INPUT",
            ErrorCategory::Cancelled => "CANCELLED",
            ErrorCategory::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the host stopped a call from its progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// More operations than the limit, counted over the whole call.
    Operations,
    /// Past the call's deadline.
    Deadline,
    /// The host was stopped ([`crate::ScriptHost::stop`]).
    Cancelled,
}

impl Stop {
    /// The token handed to rhai (it comes back in `ErrorTerminated`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stop::Operations => "operations",
            Stop::Deadline => "deadline",
            Stop::Cancelled => "cancelled",
        }
    }

    pub(crate) fn error(self, deadline_ms: u128) -> ScriptError {
        match self {
            Stop::Operations => ScriptError::new(
                ErrorCategory::Limit,
                "too many operations: the script does too much work (an endless loop?)",
            ),
            Stop::Deadline => ScriptError::new(
                ErrorCategory::Limit,
                format!("ran past its deadline of {deadline_ms} ms (an endless loop?)"),
            ),
            Stop::Cancelled => ScriptError::new(
                ErrorCategory::Cancelled,
                "stopped: the server is shutting down",
            ),
        }
    }

    /// The error of a call stopped this way; `err` is what rhai made of it, if it still failed
    /// (for the call stack and a position).
    pub(crate) fn error_at(
        self,
        err: Option<&EvalAltResult>,
        deadline_ms: u128,
        fallback: Position,
    ) -> ScriptError {
        let mut out = self.error(deadline_ms);
        match err {
            Some(e) => {
                let at = ScriptError::from_eval(e, deadline_ms, fallback);
                out.line = at.line;
                out.column = at.column;
                out.call_stack = at.call_stack;
                out
            }
            None => out.at(fallback),
        }
    }
}

/// A failed script call: a category, a message for the marketer and where in the script it
/// happened (1-based line and column; `None` when the failure has no place in the source).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScriptError {
    pub category: ErrorCategory,
    pub message: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The script functions being run when it failed, outermost first (`["matches", "helper"]`).
    pub call_stack: Vec<String>,
}

impl ScriptError {
    pub fn new(category: ErrorCategory, message: impl Into<String>) -> Self {
        ScriptError {
            category,
            message: message.into(),
            line: None,
            column: None,
            call_stack: Vec::new(),
        }
    }

    pub fn input(message: impl Into<String>) -> Self {
        Self::new(ErrorCategory::Input, message)
    }

    /// A panic caught around a call, with its message.
    pub(crate) fn panicked(payload: &(dyn std::any::Any + Send)) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        Self::new(
            ErrorCategory::Internal,
            format!("the script interpreter failed (a bug in bakkal, reported): {what}"),
        )
    }

    pub fn category(&self) -> ErrorCategory {
        self.category
    }

    /// `(line, column)`, both 1-based, when known.
    pub fn position(&self) -> Option<(usize, usize)> {
        Some((self.line?, self.column.unwrap_or(0)))
    }

    pub(crate) fn at(mut self, pos: Position) -> Self {
        if let Some(line) = pos.line() {
            self.line = Some(line);
            self.column = pos.position();
        }
        self
    }

    /// Translate a rhai evaluation error, unwrapping nested function calls down to the place
    /// that actually failed.
    /// `fallback` is used when rhai gives no position: it drops the position of limit errors
    /// (they are "system exceptions"), so those point at the entry point instead.
    pub(crate) fn from_eval(err: &EvalAltResult, deadline_ms: u128, fallback: Position) -> Self {
        let mut stack = Vec::new();
        let mut outer_pos = Position::NONE;
        let mut e = err;
        while let EvalAltResult::ErrorInFunctionCall(name, _, inner, pos) = e {
            stack.push(name.clone());
            if outer_pos.is_none() {
                outer_pos = *pos;
            }
            e = inner;
        }
        use EvalAltResult as E;
        let (category, message) = match e {
            E::ErrorTooManyOperations(_) => (
                ErrorCategory::Limit,
                "too many operations: the script does too much work (an endless loop?)".to_string(),
            ),
            E::ErrorTerminated(..) => (
                ErrorCategory::Limit,
                format!("ran past its deadline of {deadline_ms} ms (an endless loop?)"),
            ),
            E::ErrorStackOverflow(_) => (
                ErrorCategory::Limit,
                "functions call each other too deep (endless recursion?)".to_string(),
            ),
            E::ErrorDataTooLarge(what, _) => (
                ErrorCategory::Limit,
                format!("{what} grew beyond the limit"),
            ),
            E::ErrorTooManyVariables(_) => (ErrorCategory::Limit, "too many variables".to_string()),
            E::ErrorTooManyModules(_) => (ErrorCategory::Limit, "too many modules".to_string()),
            E::ErrorParsing(ParseErrorType::ExprTooDeep, _) => (
                ErrorCategory::Limit,
                "expression nested too deep".to_string(),
            ),
            E::ErrorMismatchOutputType(want, got, _) => (
                ErrorCategory::WrongReturnType,
                format!("returned {got} where {want} was expected"),
            ),
            E::ErrorRuntime(value, _) => (ErrorCategory::Runtime, format!("script threw: {value}")),
            other => (ErrorCategory::Runtime, strip_position(other)),
        };
        let pos = [e.position(), outer_pos, fallback]
            .into_iter()
            .find(|p| !p.is_none())
            .unwrap_or(Position::NONE);
        let mut out = ScriptError::new(category, message).at(pos);
        out.call_stack = stack;
        out
    }
}

/// rhai's Display appends " (line x, position y)"; we carry the position separately.
fn strip_position(e: &EvalAltResult) -> String {
    let s = e.to_string();
    match s.rfind(" (line ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.category, self.message)?;
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, " (line {l}, column {c})")?,
            (Some(l), None) => write!(f, " (line {l})")?,
            _ => {}
        }
        if !self.call_stack.is_empty() {
            write!(f, " in fn {}", self.call_stack.join(" > "))?;
        }
        Ok(())
    }
}

/// A problem found when checking a script before it is saved. `line` and `column` are 1-based;
/// 0 when the problem has no single place (a missing entry point).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Diagnostic {
    pub fn new(pos: Position, message: impl Into<String>) -> Self {
        Diagnostic {
            line: pos.line().unwrap_or(0),
            column: pos.position().unwrap_or(0),
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.line, self.column, self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}
