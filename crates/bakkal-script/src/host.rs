//! The script host: one configured [`Engine`], a cache of compiled scripts and the typed entry
//! points that run them under limits.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bakkal_domain::time::Micros;
use rhai::{CallFnOptions, Dynamic, Engine, Position, Scope, AST};

use crate::cancel::Cancel;
use crate::error::{Diagnostic, ErrorCategory, ScriptError, Stop};
use crate::observe::{Failure, Limit, ScriptObserver};
use crate::ticket::{Route, ScriptTicket};
use crate::types::{Catalog, Event, Message, Offer, ScriptCustomer};
use crate::validate::KnownFunctions;

/// The kinds of script, each with one entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScriptKind {
    /// `fn matches(c)` → `bool`: is the customer in the segment?
    Segment,
    /// `fn offers(c, catalog)` → array of `offer(...)`: what to propose to the customer.
    Offer,
    /// `fn message(c, event)` → `message(...)` or `()`: what to send when `event` happens.
    Message,
    /// `fn route(ticket, customer)` → a map `#{ team, priority, assignee, topic }` (each
    /// optional) or `()`: where a new service-desk ticket goes.
    Routing,
}

impl ScriptKind {
    pub const ALL: [ScriptKind; 4] = [
        ScriptKind::Segment,
        ScriptKind::Offer,
        ScriptKind::Message,
        ScriptKind::Routing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScriptKind::Segment => "SEGMENT",
            ScriptKind::Offer => "OFFER",
            ScriptKind::Message => "MESSAGE",
            ScriptKind::Routing => "ROUTING",
        }
    }

    pub fn parse(s: &str) -> Option<ScriptKind> {
        ScriptKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind a script file says it is: its first line's `// KIND: …` header (as the
    /// examples in `scripts/` have), else the one entry point it defines.
    pub fn of_file(source: &str) -> Option<ScriptKind> {
        let header = source
            .lines()
            .next()
            .and_then(|l| l.trim().strip_prefix("//"))
            .and_then(|l| l.split(':').next())
            .and_then(|k| ScriptKind::parse(k.trim()));
        header.or_else(|| {
            let defined: Vec<ScriptKind> = ScriptKind::ALL
                .into_iter()
                .filter(|k| source.contains(&format!("fn {}(", k.entry_point())))
                .collect();
            match defined.as_slice() {
                [one] => Some(*one),
                _ => None,
            }
        })
    }

    /// The function the host calls.
    pub fn entry_point(self) -> &'static str {
        match self {
            ScriptKind::Segment => "matches",
            ScriptKind::Offer => "offers",
            ScriptKind::Message => "message",
            ScriptKind::Routing => "route",
        }
    }

    /// The entry point's parameters, as the documentation names them.
    pub fn params(self) -> &'static [&'static str] {
        match self {
            ScriptKind::Segment => &["c"],
            ScriptKind::Offer => &["c", "catalog"],
            ScriptKind::Message => &["c", "event"],
            ScriptKind::Routing => &["ticket", "customer"],
        }
    }

    /// `fn matches(c)`, for messages.
    pub fn signature(self) -> String {
        format!("fn {}({})", self.entry_point(), self.params().join(", "))
    }
}

impl std::fmt::Display for ScriptKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Limits applied to every call. The defaults suit a call per customer in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Operations (roughly: expressions evaluated) per call.
    pub max_operations: u64,
    /// Wall-clock time per call.
    pub deadline: Duration,
    /// Nested function calls (recursion depth). Each level costs Rust stack: the default is 64
    /// in release builds and 32 in debug builds (whose frames are far bigger), which fits the
    /// 2 MiB stacks of spawned and tokio threads. Raise it only with bigger stacks.
    pub max_call_levels: usize,
    /// Nesting of expressions at the top level and inside functions.
    pub max_expr_depth: usize,
    pub max_function_expr_depth: usize,
    /// Bytes in one string.
    pub max_string_size: usize,
    /// Elements in one array.
    pub max_array_size: usize,
    /// Entries in one map.
    pub max_map_size: usize,
    /// Lines of `print`/`debug` kept per call (longer lines are cut at 1 KiB).
    pub max_log_lines: usize,
    /// Compiled scripts kept by [`ScriptHost::compile_cached`].
    pub cache_capacity: usize,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            max_operations: 1_000_000,
            deadline: Duration::from_millis(200),
            max_call_levels: if cfg!(debug_assertions) { 32 } else { 64 },
            // rhai's release defaults, in every build, so a script valid in one is valid in all.
            max_expr_depth: 64,
            max_function_expr_depth: 32,
            max_string_size: 256 * 1024,
            max_array_size: 50_000,
            max_map_size: 10_000,
            max_log_lines: 100,
            cache_capacity: 512,
        }
    }
}

/// A script compiled and checked for its kind; cheap to clone and safe to run from many
/// threads at once.
#[derive(Debug, Clone)]
pub struct CompiledScript {
    kind: ScriptKind,
    ast: Arc<AST>,
    /// Where the entry point's body starts, for errors about its result.
    entry_pos: Position,
}

impl CompiledScript {
    pub fn kind(&self) -> ScriptKind {
        self.kind
    }

    pub fn ast(&self) -> &Arc<AST> {
        &self.ast
    }
}

/// What one call produced: the typed result or the failure, with what the script logged and
/// how much work it did.
#[derive(Debug, Clone)]
pub struct Outcome<T> {
    pub value: Result<T, ScriptError>,
    /// Lines from `print(...)` and `debug(...)`, in order.
    pub logs: Vec<String>,
    /// Operations counted by the engine.
    pub operations: u64,
    pub elapsed: Duration,
}

impl<T> Outcome<T> {
    pub fn into_result(self) -> Result<T, ScriptError> {
        self.value
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        Outcome {
            value: self.value.map(f),
            logs: self.logs,
            operations: self.operations,
            elapsed: self.elapsed,
        }
    }

    fn failed(err: ScriptError) -> Self {
        Outcome {
            value: Err(err),
            logs: Vec::new(),
            operations: 0,
            elapsed: Duration::ZERO,
        }
    }
}

// ---- per-call state ------------------------------------------------------------------------

const MAX_LOG_LINE: usize = 1024;

/// State of the call running on this thread. Engine callbacks (`on_progress`, `on_print`) and
/// helpers such as `now()` reach it through a thread-local, as evaluation is synchronous.
struct CallCtx {
    now: Micros,
    deadline: Instant,
    /// Every operation of the call, those of closures run by `sort`, `map`… included.
    operations: u64,
    max_operations: u64,
    /// Why the call was stopped, once it was. It stays: every later operation stops too, so a
    /// limit hit inside a callback whose error rhai drops (a `sort` comparator) still fails
    /// the call.
    stop: Option<Stop>,
    logs: Vec<String>,
    max_logs: usize,
    dropped_logs: usize,
}

thread_local! {
    static CTX: RefCell<Option<CallCtx>> = const { RefCell::new(None) };
}

/// Installs a call context and restores the previous one (if any) when dropped.
struct CtxGuard {
    prev: Option<CallCtx>,
}

impl CtxGuard {
    fn enter(ctx: CallCtx) -> Self {
        CtxGuard {
            prev: CTX.with(|c| c.borrow_mut().replace(ctx)),
        }
    }

    fn finish(mut self) -> CallCtx {
        let prev = self.prev.take();
        let ctx = CTX.with(|c| std::mem::replace(&mut *c.borrow_mut(), prev));
        std::mem::forget(self);
        ctx.expect("call context present")
    }
}

impl Drop for CtxGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        CTX.with(|c| *c.borrow_mut() = prev);
    }
}

/// The `now` of the call running on this thread (0 outside a call).
pub(crate) fn current_now() -> Micros {
    CTX.with(|c| c.borrow().as_ref().map_or(0, |c| c.now))
}

fn log_line(line: String) {
    CTX.with(|c| {
        if let Some(ctx) = c.borrow_mut().as_mut() {
            if ctx.logs.len() >= ctx.max_logs {
                ctx.dropped_logs += 1;
                return;
            }
            let mut line = line;
            if line.len() > MAX_LOG_LINE {
                let mut cut = MAX_LOG_LINE;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
                line.push('…');
            }
            ctx.logs.push(line);
        }
    })
}

// ---- the host ------------------------------------------------------------------------------

struct CacheEntry {
    kind: ScriptKind,
    source_hash: u64,
    script: CompiledScript,
    used: u64,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, CacheEntry>,
    clock: u64,
}

/// The Rhai engine configured for bakkal, shared by every call. `Send + Sync`: wrap it in an
/// `Arc` and use it from any thread.
pub struct ScriptHost {
    engine: Engine,
    config: HostConfig,
    /// Cancelled by [`ScriptHost::stop`]: every call stops at its next operation.
    stopping: Cancel,
    known: KnownFunctions,
    cache: Mutex<Cache>,
    /// Told of every call (`observe.rs`).
    observer: Option<Arc<dyn ScriptObserver>>,
}

impl std::fmt::Debug for ScriptHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptHost")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for ScriptHost {
    fn default() -> Self {
        Self::new(HostConfig::default())
    }
}

impl ScriptHost {
    pub fn new(config: HostConfig) -> Self {
        let mut engine = crate::sandbox::engine(&config);
        let stopping = Cancel::new();
        let stopped = stopping.clone();
        engine.on_progress(move |_| {
            CTX.with(|c| {
                let mut c = c.borrow_mut();
                let ctx = c.as_mut()?;
                ctx.operations += 1;
                if ctx.stop.is_none() {
                    if ctx.max_operations > 0 && ctx.operations > ctx.max_operations {
                        ctx.stop = Some(Stop::Operations);
                    } else if ctx.operations % 64 == 0 {
                        if stopped.is_cancelled() {
                            ctx.stop = Some(Stop::Cancelled);
                        } else if Instant::now() >= ctx.deadline {
                            ctx.stop = Some(Stop::Deadline);
                        }
                    }
                }
                ctx.stop.map(|s| s.as_str().into())
            })
        });
        engine.on_print(|s| log_line(s.to_string()));
        engine.on_debug(|s, _src, pos| {
            log_line(match (pos.line(), pos.position()) {
                (Some(l), Some(c)) => format!("[{l}:{c}] {s}"),
                _ => s.to_string(),
            })
        });

        crate::register(&mut engine);
        let known = KnownFunctions::of(&engine);
        ScriptHost {
            engine,
            config,
            stopping,
            known,
            cache: Mutex::new(Cache::default()),
            observer: None,
        }
    }

    /// Tell `observer` of every call from now on (the server's metrics).
    pub fn with_observer(mut self, observer: Arc<dyn ScriptObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Stop every call, running or to come: each fails with [`ErrorCategory::Cancelled`] at
    /// its next operations. For a server shutting down; there is no way back.
    pub fn stop(&self) {
        self.stopping.cancel();
    }

    /// The token [`ScriptHost::stop`] cancels: work over many customers makes its own
    /// tokens as children of it ([`Cancel::child_of`]).
    pub fn stopping(&self) -> &Cancel {
        &self.stopping
    }

    /// Definition file (`.d.rhai`) of everything bakkal registers, with doc comments, for
    /// editors and the `bakkal script defs` command.
    pub fn definitions(&self) -> String {
        self.engine
            .definitions()
            .include_standard_packages(false)
            .single_file()
    }

    /// Check a script: syntax, its entry point and the functions it calls. Empty means valid.
    pub fn validate(&self, kind: ScriptKind, source: &str) -> Vec<Diagnostic> {
        match self.compile(kind, source) {
            Ok(_) => Vec::new(),
            Err(d) => d,
        }
    }

    /// Compile and validate a script.
    pub fn compile(
        &self,
        kind: ScriptKind,
        source: &str,
    ) -> Result<CompiledScript, Vec<Diagnostic>> {
        let ast = self
            .engine
            .compile(source)
            .map_err(|e| vec![Diagnostic::new(e.position(), e.err_type().to_string())])?;
        let diagnostics = crate::validate::check(&self.known, kind, &ast);
        if !diagnostics.is_empty() {
            return Err(diagnostics);
        }
        let entry_pos = crate::validate::entry_position(kind, &ast);
        Ok(CompiledScript {
            kind,
            ast: Arc::new(ast),
            entry_pos,
        })
    }

    /// [`ScriptHost::compile`] through the cache: `key` names one revision of a script (its
    /// revision id, say). A key seen before with the same kind and source is not recompiled.
    pub fn compile_cached(
        &self,
        key: &str,
        kind: ScriptKind,
        source: &str,
    ) -> Result<CompiledScript, Vec<Diagnostic>> {
        let mut h = DefaultHasher::new();
        source.hash(&mut h);
        let source_hash = h.finish();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.clock += 1;
            let clock = cache.clock;
            if let Some(e) = cache.entries.get_mut(key) {
                if e.kind == kind && e.source_hash == source_hash {
                    e.used = clock;
                    return Ok(e.script.clone());
                }
            }
        }
        let script = self.compile(kind, source)?;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.entries.len() >= self.config.cache_capacity.max(1)
            && !cache.entries.contains_key(key)
        {
            if let Some(oldest) = cache
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            {
                cache.entries.remove(&oldest);
            }
        }
        let used = cache.clock;
        cache.entries.insert(
            key.to_string(),
            CacheEntry {
                kind,
                source_hash,
                script: script.clone(),
                used,
            },
        );
        Ok(script)
    }

    /// Drop a cached script (a revision deleted, say).
    pub fn evict(&self, key: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .remove(key);
    }

    /// Number of scripts in the cache.
    pub fn cached_count(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }

    /// Run a `SEGMENT` script: is the customer in?
    pub fn eval_segment(
        &self,
        script: &CompiledScript,
        customer: &ScriptCustomer,
        now: Micros,
    ) -> Outcome<bool> {
        let c = Dynamic::from(customer.at(now));
        self.call(script, ScriptKind::Segment, now, vec![c], |v, pos| {
            v.as_bool().map_err(|t| {
                wrong_type(&self.engine, pos, "`matches` must return true or false", t)
            })
        })
    }

    /// Run an `OFFER` script: its offers, highest score first (ties keep the script's order).
    pub fn eval_offers(
        &self,
        script: &CompiledScript,
        customer: &ScriptCustomer,
        catalog: &Catalog,
        now: Micros,
    ) -> Outcome<Vec<Offer>> {
        let args = vec![
            Dynamic::from(customer.at(now)),
            Dynamic::from(catalog.clone()),
        ];
        self.call(script, ScriptKind::Offer, now, args, |v, pos| {
            if v.is_unit() {
                return Ok(Vec::new());
            }
            let type_name = v.type_name();
            let arr = v.try_cast::<rhai::Array>().ok_or_else(|| {
                wrong_type(
                    &self.engine,
                    pos,
                    "`offers` must return an array of offer(...)",
                    type_name,
                )
            })?;
            let mut offers = Vec::with_capacity(arr.len());
            for (i, item) in arr.into_iter().enumerate() {
                let t = item.type_name();
                let o = item.try_cast::<Offer>().ok_or_else(|| {
                    wrong_type(
                        &self.engine,
                        pos,
                        &format!("`offers` returned an array whose item {i} is not an offer(...)"),
                        t,
                    )
                })?;
                offers.push(o);
            }
            offers.sort_by(|a, b| b.score.total_cmp(&a.score));
            Ok(offers)
        })
    }

    /// Run a `MESSAGE` script: the message to send, or `None` when it returns `()`.
    pub fn eval_message(
        &self,
        script: &CompiledScript,
        customer: &ScriptCustomer,
        event: &Event,
        now: Micros,
    ) -> Outcome<Option<Message>> {
        let args = vec![
            Dynamic::from(customer.at(now)),
            Dynamic::from(event.clone()),
        ];
        self.call(script, ScriptKind::Message, now, args, |v, pos| {
            if v.is_unit() {
                return Ok(None);
            }
            let t = v.type_name();
            v.try_cast::<Message>().map(Some).ok_or_else(|| {
                wrong_type(
                    &self.engine,
                    pos,
                    "`message` must return message(...) or ()",
                    t,
                )
            })
        })
    }

    /// Run a `ROUTING` script for a ticket of `customer`: the route, or `None` when it returns
    /// `()`. A map with an unknown key, a value of the wrong type or a malformed name fails
    /// with [`ErrorCategory::WrongReturnType`].
    pub fn eval_route(
        &self,
        script: &CompiledScript,
        ticket: &ScriptTicket,
        customer: &ScriptCustomer,
        now: Micros,
    ) -> Outcome<Option<Route>> {
        let args = vec![
            Dynamic::from(ticket.clone()),
            Dynamic::from(customer.at(now)),
        ];
        self.call(script, ScriptKind::Routing, now, args, |v, pos| {
            Route::from_dynamic(v).map_err(|m| crate::ticket::route_error(m).at(pos))
        })
    }

    /// [`ScriptHost::eval_route`] for a dry run: the route as JSON (`{"team": …, "priority":
    /// …}`, only the keys set) or `null`.
    pub fn dry_run_route(
        &self,
        script: &CompiledScript,
        ticket: &ScriptTicket,
        customer: &ScriptCustomer,
        now: Micros,
    ) -> Outcome<serde_json::Value> {
        self.eval_route(script, ticket, customer, now)
            .map(|r| serde_json::to_value(r).unwrap_or_default())
    }

    /// Run a script of any kind for a dry run and give its result as JSON: `true`/`false` for
    /// a segment, `[{"sku","score","reason"}...]` for offers, `{"channel","subject","body"}` or
    /// `null` for a message. `event` is only read by message scripts (see [`Event::from_json`];
    /// `None` means `{"kind": "campaign"}`).
    pub fn dry_run(
        &self,
        script: &CompiledScript,
        customer: &ScriptCustomer,
        catalog: &Catalog,
        event: Option<&serde_json::Value>,
        now: Micros,
    ) -> Outcome<serde_json::Value> {
        use serde_json::json;
        match script.kind {
            ScriptKind::Segment => self.eval_segment(script, customer, now).map(|b| json!(b)),
            ScriptKind::Offer => self
                .eval_offers(script, customer, catalog, now)
                .map(|o| serde_json::to_value(o).unwrap_or_default()),
            ScriptKind::Message => {
                let event = match event {
                    None | Some(serde_json::Value::Null) => Event::new("campaign"),
                    Some(v) => match Event::from_json(v) {
                        Ok(e) => e,
                        Err(e) => return Outcome::failed(e),
                    },
                };
                self.eval_message(script, customer, &event, now)
                    .map(|m| serde_json::to_value(m).unwrap_or_default())
            }
            ScriptKind::Routing => Outcome::failed(ScriptError::input(
                "a ROUTING script needs a ticket: use dry_run_route",
            )),
        }
    }

    /// Run one call of `script`'s entry point, its result converted by `convert`, and tell the
    /// observer how it went.
    fn call<T>(
        &self,
        script: &CompiledScript,
        kind: ScriptKind,
        now: Micros,
        args: Vec<Dynamic>,
        convert: impl FnOnce(Dynamic, Position) -> Result<T, ScriptError>,
    ) -> Outcome<T> {
        let (outcome, limit) = self.run(script, kind, now, args, convert);
        if let Some(o) = &self.observer {
            let failure = outcome.value.as_ref().err().map(|e| Failure {
                category: e.category,
                // a limit rhai reports as another error (a wrong return type) is still a hit
                limit: limit.filter(|_| e.category == ErrorCategory::Limit),
            });
            o.call_finished(kind, failure);
        }
        outcome
    }

    fn run<T>(
        &self,
        script: &CompiledScript,
        kind: ScriptKind,
        now: Micros,
        args: Vec<Dynamic>,
        convert: impl FnOnce(Dynamic, Position) -> Result<T, ScriptError>,
    ) -> (Outcome<T>, Option<Limit>) {
        if script.kind != kind {
            let err = ScriptError::input(format!(
                "a {} script cannot be run as {}",
                script.kind, kind
            ));
            return (Outcome::failed(err), None);
        }
        if self.stopping.is_cancelled() {
            let err = Stop::Cancelled.error(self.config.deadline.as_millis());
            return (Outcome::failed(err), None);
        }
        let start = Instant::now();
        let guard = CtxGuard::enter(CallCtx {
            now,
            deadline: start + self.config.deadline,
            operations: 0,
            max_operations: self.config.max_operations,
            stop: None,
            logs: Vec::new(),
            max_logs: self.config.max_log_lines,
            dropped_logs: 0,
        });
        let mut scope = Scope::new();
        // A panic inside the engine (a bug in rhai or in bakkal's API) fails this call only.
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.engine.call_fn_with_options::<Dynamic>(
                CallFnOptions::new().eval_ast(true).rewind_scope(true),
                &mut scope,
                &script.ast,
                kind.entry_point(),
                args,
            )
        }));
        let ctx = guard.finish();
        let elapsed = start.elapsed();
        let deadline_ms = self.config.deadline.as_millis();
        let mut limit = None;
        let value = match (result, ctx.stop) {
            (Err(panic), _) => Err(ScriptError::panicked(panic.as_ref()).at(script.entry_pos)),
            // Stopped, whatever the script made of it (rhai drops errors of sort comparators).
            (Ok(result), Some(stop)) => {
                limit = Limit::of_stop(stop);
                Err(stop.error_at(result.err().as_deref(), deadline_ms, script.entry_pos))
            }
            (Ok(Ok(v)), None) => convert(v, script.entry_pos),
            (Ok(Err(e)), None) => {
                limit = Limit::of_eval(&e);
                Err(ScriptError::from_eval(&e, deadline_ms, script.entry_pos))
            }
        };
        let mut logs = ctx.logs;
        if ctx.dropped_logs > 0 {
            logs.push(format!("… {} more log lines dropped", ctx.dropped_logs));
        }
        let outcome = Outcome {
            value,
            logs,
            operations: ctx.operations,
            elapsed,
        };
        (outcome, limit)
    }
}

fn wrong_type(engine: &Engine, pos: Position, what: &str, got: &str) -> ScriptError {
    let got = match engine.map_type_name(got) {
        "()" => "() (nothing)".to_string(),
        t => t.rsplit("::").next().unwrap_or(t).to_string(),
    };
    ScriptError::new(ErrorCategory::WrongReturnType, format!("{what}, got {got}")).at(pos)
}
