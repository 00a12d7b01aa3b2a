//! Static checks on a compiled script: its entry point and the functions it calls.

use std::collections::{HashMap, HashSet};

use rhai::{ASTNode, Engine, Expr, Position, Stmt, AST};

use crate::error::Diagnostic;
use crate::host::ScriptKind;

/// Keywords the engine handles itself: they are not in any function list.
const KEYWORDS: &[&str] = &[
    "print",
    "debug",
    "type_of",
    "Fn",
    "call",
    "curry",
    "is_shared",
    "is_def_fn",
    "is_def_var",
];

/// The functions callable from a script: name → the argument counts they accept.
#[derive(Debug, Default)]
pub(crate) struct KnownFunctions {
    arities: HashMap<String, HashSet<usize>>,
}

impl KnownFunctions {
    pub(crate) fn of(engine: &Engine) -> Self {
        let mut arities: HashMap<String, HashSet<usize>> = HashMap::new();
        for sig in engine.gen_fn_signatures(true) {
            if let Some((name, n)) = parse_signature(&sig) {
                arities.entry(name.to_string()).or_default().insert(n);
            }
        }
        KnownFunctions { arities }
    }

    fn get(&self, name: &str) -> Option<&HashSet<usize>> {
        self.arities.get(name)
    }
}

/// `name(a: A, b: B) -> R` → `("name", 2)`.
fn parse_signature(sig: &str) -> Option<(&str, usize)> {
    let open = sig.find('(')?;
    let name = sig[..open].trim();
    let mut depth = 0i32;
    let mut params = 0usize;
    let mut any = false;
    for ch in sig[open + 1..].chars() {
        match ch {
            '(' | '<' | '[' => depth += 1,
            ')' if depth == 0 => break,
            ')' | '>' | ']' => depth -= 1,
            ',' if depth == 0 => params += 1,
            c if !c.is_whitespace() => any = true,
            _ => {}
        }
    }
    Some((name, if any { params + 1 } else { 0 }))
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

fn arities_text(set: &HashSet<usize>) -> String {
    let mut v: Vec<usize> = set.iter().copied().collect();
    v.sort_unstable();
    let v: Vec<String> = v.iter().map(usize::to_string).collect();
    v.join(" or ")
}

/// Where the entry point's body starts (for errors about its result).
pub(crate) fn entry_position(kind: ScriptKind, ast: &AST) -> Position {
    ast.iter_fn_def()
        .find(|f| f.name == kind.entry_point() && f.params.len() == kind.params().len())
        .map_or(Position::NONE, |f| f.body.start_position())
}

pub(crate) fn check(known: &KnownFunctions, kind: ScriptKind, ast: &AST) -> Vec<Diagnostic> {
    let mut out = Vec::new();

    // Script-defined functions. (A closure in a variable is called with `f.call(x)`: `f(x)`
    // looks for a function named `f` and fails at run time, so it is reported here too.)
    let mut script_fns: HashMap<String, HashSet<usize>> = HashMap::new();
    for f in ast.iter_fn_def() {
        script_fns
            .entry(f.name.to_string())
            .or_default()
            .insert(f.params.len());
    }

    // The entry point.
    let entry = kind.entry_point();
    let want = kind.params().len();
    match script_fns.get(entry) {
        None => out.push(Diagnostic::new(
            Position::NONE,
            format!(
                "a {kind} script needs an entry point `{}`",
                kind.signature()
            ),
        )),
        Some(n) if !n.contains(&want) => {
            let pos = ast
                .iter_fn_def()
                .find(|f| f.name == entry)
                .map_or(Position::NONE, |f| f.body.start_position());
            out.push(Diagnostic::new(
                pos,
                format!(
                    "the entry point `{entry}` must take {} ({}), not {}",
                    plural(want, "parameter"),
                    kind.params().join(", "),
                    arities_text(n)
                ),
            ))
        }
        Some(_) => {}
    }

    let mut calls: Vec<(String, usize, bool, Position)> = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        let (call, method, pos) = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(x, pos)))
            | Some(ASTNode::Stmt(Stmt::FnCall(x, pos))) => (x, false, *pos),
            Some(ASTNode::Expr(Expr::MethodCall(x, pos))) => (x, true, *pos),
            _ => return true,
        };
        if call.is_operator_call() {
            return true;
        }
        let name = if call.is_qualified() {
            format!("{}{}", call.namespace, call.name)
        } else {
            call.name.to_string()
        };
        calls.push((name, call.args.len(), method, pos));
        true
    });

    for (name, args, method, pos) in calls {
        if name.contains("::") {
            out.push(Diagnostic::new(
                pos,
                format!("`{name}`: modules are not available to scripts"),
            ));
            continue;
        }
        if KEYWORDS.contains(&name.as_str()) {
            continue;
        }
        let unavailable = crate::sandbox::UNAVAILABLE.iter().find(|(n, _)| *n == name);
        if let (Some((_, why)), None) = (unavailable, script_fns.get(&name)) {
            out.push(Diagnostic::new(
                pos,
                format!("`{name}` is not available to scripts: {why}"),
            ));
            continue;
        }
        // A method call `x.f(a)` calls a native `f(x, a)` or a script `f(a)` with `this` = x.
        let native_args = if method { args + 1 } else { args };
        let native = known.get(&name);
        let script = script_fns.get(&name);
        let ok = native.is_some_and(|n| n.contains(&native_args))
            || script.is_some_and(|n| n.contains(&args));
        if ok {
            continue;
        }
        let message = match (native, script) {
            (None, None) => format!("unknown function `{name}`"),
            (Some(n), None) => format!(
                "`{name}` takes {} argument(s){}, not {native_args}",
                arities_text(n),
                if method {
                    " counting the value before the dot"
                } else {
                    ""
                }
            ),
            (_, Some(n)) => format!(
                "the script's `fn {name}` takes {}, not {args}",
                plural_set(n)
            ),
        };
        out.push(Diagnostic::new(pos, message));
    }
    out.sort_by_key(|d| (d.line, d.column));
    out
}

fn plural_set(n: &HashSet<usize>) -> String {
    format!("{} parameter(s)", arities_text(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        assert_eq!(
            parse_signature("has_tag(c: Customer, tag: &str) -> bool"),
            Some(("has_tag", 2))
        );
        assert_eq!(parse_signature("now() -> i64"), Some(("now", 0)));
        assert_eq!(parse_signature("f(x: Array<(i64, i64)>)"), Some(("f", 1)));
    }
}
