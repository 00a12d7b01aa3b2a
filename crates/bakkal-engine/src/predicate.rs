//! Pure-predicate rules run as SQL: a SEGMENT script whose whole body is
//! `c.FIELD op LITERAL && c.FIELD op LITERAL && …` over the value keys and plain fields
//! (nothing else: no `let`, no calls, no `||`) means exactly a SQL `WHERE`, and is run inside
//! the database. Everything else falls back to the interpreter.
//!
//! Only comparisons that cannot fail in the interpreter are translated: a float literal for
//! `total_spent` / `ltv`, an integer literal for the integer keys, a string literal with `==`
//! or `!=` for the text fields. The float comparison is done in SQL on the same double the
//! script sees (`total_spent / 1000000.0`). A rule of more than `filter::MAX_CLAUSES`
//! comparisons, or one comparing with a string holding control characters, is left to the
//! interpreter too.

use bakkal_domain::filter::Op;
use bakkal_store::{PredicateClause, PredicateColumn, PredicateValue};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Int(i64),
    Float(f64),
    Str(String),
    Punct(&'static str),
}

fn tokenize(src: &str) -> Option<Vec<Tok>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if src[i..].starts_with("//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let s = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(src[s..i].to_string()));
        } else if c.is_ascii_digit() {
            let s = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i < b.len() && b[i] == b'.' {
                i += 1;
                let frac = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i == frac {
                    return None;
                }
                let v: f64 = src[s..i].parse().ok()?;
                if !v.is_finite() {
                    return None;
                }
                out.push(Tok::Float(v));
            } else {
                out.push(Tok::Int(src[s..i].parse().ok()?));
            }
            if i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                return None;
            }
        } else if c == b'"' {
            let s = i + 1;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    return None;
                }
                i += 1;
            }
            if i >= b.len() {
                return None;
            }
            out.push(Tok::Str(src[s..i].to_string()));
            i += 1;
        } else {
            let two = src.get(i..i + 2).unwrap_or("");
            let p = match two {
                "&&" => Some("&&"),
                "==" => Some("=="),
                "!=" => Some("!="),
                "<=" => Some("<="),
                ">=" => Some(">="),
                _ => None,
            };
            if let Some(p) = p {
                out.push(Tok::Punct(p));
                i += 2;
                continue;
            }
            let p = match c {
                b'(' => "(",
                b')' => ")",
                b'{' => "{",
                b'}' => "}",
                b'.' => ".",
                b'<' => "<",
                b'>' => ">",
                _ => return None,
            };
            out.push(Tok::Punct(p));
            i += 1;
        }
    }
    Some(out)
}

enum Kind {
    Float,
    Int,
    Text,
}

fn column(name: &str) -> Option<(PredicateColumn, Kind)> {
    Some(match name {
        "total_spent" | "ltv" => (PredicateColumn::TotalSpent, Kind::Float),
        "order_count" => (PredicateColumn::OrderCount, Kind::Int),
        "referral_count" => (PredicateColumn::ReferralCount, Kind::Int),
        "days_since_last_order" => (PredicateColumn::DaysSinceLastOrder, Kind::Int),
        "tenure_days" => (PredicateColumn::TenureDays, Kind::Int),
        "region" => (PredicateColumn::Region, Kind::Text),
        "city" => (PredicateColumn::City, Kind::Text),
        "owner" => (PredicateColumn::Owner, Kind::Text),
        "display_name" => (PredicateColumn::DisplayName, Kind::Text),
        _ => return None,
    })
}

/// The rule as SQL clauses, when the script is a pure predicate this module can translate.
pub fn translate(source: &str) -> Option<Vec<PredicateClause>> {
    let toks = tokenize(source)?;
    let mut it = toks.iter();
    let ident = |t: Option<&Tok>| match t {
        Some(Tok::Ident(s)) => Some(s.clone()),
        _ => None,
    };
    if ident(it.next())? != "fn" || ident(it.next())? != "matches" {
        return None;
    }
    if it.next()? != &Tok::Punct("(") {
        return None;
    }
    let param = ident(it.next())?;
    if it.next()? != &Tok::Punct(")") || it.next()? != &Tok::Punct("{") {
        return None;
    }
    let rest: Vec<&Tok> = it.collect();
    let (last, body) = rest.split_last()?;
    if **last != Tok::Punct("}") || body.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for clause in body.split(|t| **t == Tok::Punct("&&")) {
        let [p, dot, field, op, lit] = clause else {
            return None;
        };
        if **p != Tok::Ident(param.clone()) || **dot != Tok::Punct(".") {
            return None;
        }
        let Tok::Ident(field) = field else {
            return None;
        };
        let (column, kind) = column(field)?;
        let op = match op {
            Tok::Punct("==") => Op::Eq,
            Tok::Punct("!=") => Op::Ne,
            Tok::Punct("<") => Op::Lt,
            Tok::Punct("<=") => Op::Le,
            Tok::Punct(">") => Op::Gt,
            Tok::Punct(">=") => Op::Ge,
            _ => return None,
        };
        let value = match (kind, lit) {
            (Kind::Float, Tok::Float(f)) => PredicateValue::Float(*f),
            (Kind::Int, Tok::Int(i)) => PredicateValue::Int(*i),
            (Kind::Text, Tok::Str(s))
                if matches!(op, Op::Eq | Op::Ne)
                    && bakkal_domain::normalise::control_free(s).is_ok() =>
            {
                PredicateValue::Text(s.clone())
            }
            _ => return None,
        };
        out.push(PredicateClause { column, op, value });
        // Past the filter's clause cap the interpreter decides: the SQL stays small.
        if out.len() > bakkal_domain::filter::MAX_CLAUSES {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_pure_predicates_only() {
        let p = translate(
            "// SEGMENT\nfn matches(c) {\n  c.total_spent > 100.0 && c.region == \"Ege\" && c.order_count >= 2\n}\n",
        )
        .unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].value, PredicateValue::Float(100.0));
        assert_eq!(p[1].column, PredicateColumn::Region);
        assert_eq!(p[2].op, Op::Ge);
        for s in [
            "fn matches(c) { c.total_spent > 100 }",
            "fn matches(c) { c.order_count >= 2.0 }",
            "fn matches(c) { c.region > \"a\" }",
            "fn matches(c) { c.region == \"a\" || c.order_count > 1 }",
            "fn matches(c) { let x = c.order_count; x > 1 }",
            "fn matches(c) { c.orders().len() > 1 }",
            "fn matches(c) { c.email == \"a\" }",
            "fn matches(c) { c.order_count > 1; }",
            "fn helper() { 1 } fn matches(c) { c.order_count > 1 }",
            "fn matches(c) { c.region == \"a\\\"\" }",
            "fn matches(c) { d.order_count > 1 }",
        ] {
            assert_eq!(translate(s), None, "{s}");
        }
    }
}
