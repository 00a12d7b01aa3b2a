//! A small subset of AIP-160 filters and AIP-132 `order_by`, parsed into data the store turns
//! into SQL with bound parameters (never string-spliced).
//!
//! Grammar: `clause (AND clause)*`, a clause `field op value` with op one of `=`, `!=`, `<`,
//! `<=`, `>`, `>=`, or `field:value` ("has", for repeated fields such as `tags`). Values are
//! numbers, bare words or double-quoted strings.

use std::fmt;

use crate::error::quote;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Has,
}

impl Op {
    pub fn sql(self) -> &'static str {
        match self {
            Op::Eq | Op::Has => "=",
            Op::Ne => "<>",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Number(f64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) => write!(f, "\"{s}\""),
            Value::Number(n) => write!(f, "{n}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub field: String,
    pub op: Op,
    pub value: Value,
}

/// What kind of value a filterable field holds, which decides the operators it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// Compared with `=` and `!=`.
    Text,
    /// Any comparison.
    Number,
    /// A repeated field: only `:`.
    Repeated,
    /// One of a fixed set of words, `=` and `!=`.
    Enum(&'static [&'static str]),
}

/// The longest filter accepted, in characters.
pub const MAX_FILTER_CHARS: usize = 4096;
/// The most clauses a filter may join with AND. The grammar has no nesting (no parentheses, no
/// OR), so this bounds the SQL a filter becomes on both databases.
pub const MAX_CLAUSES: usize = 32;

/// Parse `filter` against the allowed fields. `Err` is a message for the `filter` field.
pub fn parse(filter: &str, fields: &[(&str, FieldKind)]) -> Result<Vec<Clause>, String> {
    if filter.len() > MAX_FILTER_CHARS && filter.chars().count() > MAX_FILTER_CHARS {
        return Err(format!("must be at most {MAX_FILTER_CHARS} characters"));
    }
    let tokens = tokenize(filter)?;
    let mut clauses = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if !clauses.is_empty() {
            if tokens[i] != Token::Word("AND".into()) {
                return Err(format!("expected AND between clauses, found {}", tokens[i]));
            }
            i += 1;
        }
        if clauses.len() == MAX_CLAUSES {
            return Err(format!("at most {MAX_CLAUSES} clauses joined with AND"));
        }
        let (Some(Token::Word(field)), Some(Token::Op(op)), Some(value)) =
            (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2))
        else {
            return Err("each clause must be `field op value`, e.g. stage = \"ACTIVE\"".into());
        };
        i += 3;
        let Some((_, kind)) = fields.iter().find(|(f, _)| f == field) else {
            let known: Vec<&str> = fields.iter().map(|(f, _)| *f).collect();
            return Err(format!(
                "unknown field '{}'; filterable fields: {}",
                quote(field),
                known.join(", ")
            ));
        };
        let value = match value {
            // `NaN`, `inf` and `1e999` are words, never numbers: a number field refuses them
            Token::Word(w) => match w.parse::<f64>() {
                Ok(n) if n.is_finite() => Value::Number(n),
                _ => Value::Text(w.clone()),
            },
            Token::Quoted(q) => Value::Text(q.clone()),
            Token::Op(o) => {
                return Err(format!(
                    "expected a value after {}, found {o:?}",
                    quote(field)
                ))
            }
        };
        let ok = match kind {
            FieldKind::Text => matches!(op, Op::Eq | Op::Ne),
            FieldKind::Number => *op != Op::Has && matches!(value, Value::Number(_)),
            FieldKind::Repeated => *op == Op::Has,
            FieldKind::Enum(words) => {
                matches!(op, Op::Eq | Op::Ne)
                    && matches!(&value, Value::Text(t) if words.contains(&t.as_str()))
            }
        };
        if !ok {
            let hint = match kind {
                FieldKind::Text => "use = or != with a string".to_string(),
                FieldKind::Number => "use =, !=, <, <=, > or >= with a number".to_string(),
                FieldKind::Repeated => format!("use {field}:value"),
                FieldKind::Enum(w) => format!("use = or != with one of {}", w.join(", ")),
            };
            return Err(format!(
                "cannot apply this operator or value to '{field}': {hint}"
            ));
        }
        let value = match (kind, value) {
            (FieldKind::Text | FieldKind::Repeated | FieldKind::Enum(_), Value::Number(_)) => {
                // a bare number compared with a text field: keep the caller's spelling
                let raw = match &tokens[i - 1] {
                    Token::Word(w) => w.clone(),
                    _ => unreachable!("numbers come only from words"),
                };
                Value::Text(raw)
            }
            (_, v) => v,
        };
        clauses.push(Clause {
            field: field.clone(),
            op: *op,
            value,
        });
    }
    Ok(clauses)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Op(Op),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w) => write!(f, "'{}'", quote(w)),
            Token::Quoted(q) => write!(f, "\"{}\"", quote(q)),
            Token::Op(o) => write!(f, "{o:?}"),
        }
    }
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            c if c.is_control() => return Err("control characters are not allowed".into()),
            '"' => {
                let mut q = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string".into()),
                        Some('"') => break,
                        Some(c) if c.is_control() => {
                            return Err("control characters are not allowed in a string".into())
                        }
                        Some('\\') if chars.get(i + 1).is_some_and(|c| !c.is_control()) => {
                            q.push(chars[i + 1]);
                            i += 2;
                            continue;
                        }
                        Some(c) => q.push(*c),
                    }
                    i += 1;
                }
                i += 1;
                out.push(Token::Quoted(q));
            }
            '=' | '!' | '<' | '>' | ':' => {
                let next = chars.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('<', Some('=')) => (Op::Le, 2),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('=', _) => (Op::Eq, 1),
                    ('<', _) => (Op::Lt, 1),
                    ('>', _) => (Op::Gt, 1),
                    (':', _) => (Op::Has, 1),
                    _ => return Err(format!("unexpected '{c}'")),
                };
                out.push(Token::Op(op));
                i += len;
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !chars[i].is_control()
                    && !matches!(chars[i], '=' | '!' | '<' | '>' | ':' | '"')
                {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

/// A parsed `order_by`: one field and a direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    pub field: String,
    pub descending: bool,
}

/// Parse `field [asc|desc]` against the sortable fields; empty gives `default`.
pub fn parse_order_by(s: &str, sortable: &[&str], default: &str) -> Result<OrderBy, String> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let (field, descending) = match parts.as_slice() {
        [] => (default, false),
        [f] => (*f, false),
        [f, d] if d.eq_ignore_ascii_case("asc") => (*f, false),
        [f, d] if d.eq_ignore_ascii_case("desc") => (*f, true),
        _ => return Err("order_by is `field` or `field desc`, one field".into()),
    };
    if !sortable.contains(&field) {
        return Err(format!(
            "cannot order by '{}'; sortable fields: {}",
            quote(field),
            sortable.join(", ")
        ));
    }
    Ok(OrderBy {
        field: field.to_string(),
        descending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[(&str, FieldKind)] = &[
        ("region", FieldKind::Text),
        ("value.order_count", FieldKind::Number),
        ("tags", FieldKind::Repeated),
        ("stage", FieldKind::Enum(&["PROSPECT", "ACTIVE"])),
    ];

    #[test]
    fn parses_clauses() {
        let c = parse(
            "region = \"Ege\" AND value.order_count >= 3 AND tags:vip AND stage=ACTIVE",
            FIELDS,
        )
        .unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c[0].value, Value::Text("Ege".into()));
        assert_eq!(c[1].op, Op::Ge);
        assert_eq!(c[1].value, Value::Number(3.0));
        assert_eq!(c[2].op, Op::Has);
        assert_eq!(c[3].value, Value::Text("ACTIVE".into()));
        assert!(parse("", FIELDS).unwrap().is_empty());
    }

    #[test]
    fn rejects_what_it_cannot_do() {
        assert!(parse("nope = 1", FIELDS)
            .unwrap_err()
            .contains("unknown field"));
        assert!(parse("region > \"a\"", FIELDS).is_err());
        assert!(parse("value.order_count = x", FIELDS).is_err());
        assert!(parse("stage = GONE", FIELDS).is_err());
        for n in ["NaN", "nan", "inf", "-inf", "infinity", "1e999"] {
            assert!(parse(&format!("value.order_count > {n}"), FIELDS).is_err());
        }
        assert!(parse("region = \"a\" OR region = \"b\"", FIELDS).is_err());
        assert!(parse("region = \"a", FIELDS).is_err());
        assert!(parse("region =", FIELDS).is_err());
        assert!(parse("region = \"a\0b\"", FIELDS).is_err());
        assert!(parse("region = a\0b", FIELDS).is_err());
        let many = vec!["region = \"a\""; MAX_CLAUSES + 1].join(" AND ");
        assert!(parse(&many, FIELDS).unwrap_err().contains("at most"));
        let enough = vec!["region = \"a\""; MAX_CLAUSES].join(" AND ");
        assert_eq!(parse(&enough, FIELDS).unwrap().len(), MAX_CLAUSES);
    }

    #[test]
    fn order_by() {
        let o = parse_order_by("value.total_spent desc", &["value.total_spent"], "x").unwrap();
        assert!(o.descending);
        assert!(parse_order_by("email", &["create_time"], "create_time").is_err());
        assert_eq!(
            parse_order_by("", &["create_time"], "create_time")
                .unwrap()
                .field,
            "create_time"
        );
    }
}
