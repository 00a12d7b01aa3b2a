//! Bind lists built at run time (filters, multi-row inserts), bound in one go.

use sqlx::any::AnyArguments;
use sqlx::query::{Query, QueryAs};
use sqlx::Any;

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(i64),
    OptInt(Option<i64>),
    Text(String),
    OptText(Option<String>),
}

pub(crate) fn bind<'q>(
    mut q: Query<'q, Any, AnyArguments<'q>>,
    args: &[Arg],
) -> Query<'q, Any, AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(*v),
            Arg::OptInt(v) => q.bind(*v),
            Arg::Text(v) => q.bind(v.clone()),
            Arg::OptText(v) => q.bind(v.clone()),
        };
    }
    q
}

pub(crate) fn bind_as<'q, O>(
    mut q: QueryAs<'q, Any, O, AnyArguments<'q>>,
    args: &[Arg],
) -> QueryAs<'q, Any, O, AnyArguments<'q>> {
    for a in args {
        q = match a {
            Arg::Int(v) => q.bind(*v),
            Arg::OptInt(v) => q.bind(*v),
            Arg::Text(v) => q.bind(v.clone()),
            Arg::OptText(v) => q.bind(v.clone()),
        };
    }
    q
}

/// Collects SQL text and its arguments, numbering placeholders `$1`, `$2`, … as they are
/// pushed.
#[derive(Debug, Default)]
pub(crate) struct SqlBuilder {
    pub sql: String,
    pub args: Vec<Arg>,
}

impl SqlBuilder {
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            args: Vec::new(),
        }
    }

    pub fn push(&mut self, s: &str) -> &mut Self {
        self.sql.push_str(s);
        self
    }

    /// Append a placeholder for `arg`.
    pub fn arg(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        self.sql.push('$');
        self.sql.push_str(&self.args.len().to_string());
        self
    }
}

/// Placeholder number `n` (1-based) of a statement whose arguments are bound in order, each
/// once. SQLite gets anonymous `?`: sqlx looks every named parameter up by name, which costs
/// time quadratic in their number and dominated large multi-row statements. PostgreSQL gets
/// `$n`.
pub(crate) fn positional(backend: crate::Backend, n: usize) -> String {
    match backend {
        crate::Backend::Sqlite => "?".to_string(),
        crate::Backend::Postgres => format!("${n}"),
    }
}

/// Append the VALUES tuples of a multi-row INSERT: `rows` tuples of `cols` placeholders, each
/// followed by `literals` (constant columns, such as `, 'QUEUED', 0`), numbered in order.
pub(crate) fn push_value_rows(
    sql: &mut String,
    backend: crate::Backend,
    rows: usize,
    cols: usize,
    literals: &str,
) {
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&positional(backend, i * cols + c + 1));
        }
        sql.push_str(literals);
        sql.push(')');
    }
}
