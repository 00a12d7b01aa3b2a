//! bakkal's script host: marketers' [Rhai](https://rhai.rs) scripts that pick segments, make
//! offers and write messages, run sandboxed and under limits.
//!
//! * [`ScriptHost`] holds one configured engine (`Send + Sync`; share it by `Arc`).
//! * [`ScriptHost::compile`] / [`ScriptHost::compile_cached`] check a script of a
//!   [`ScriptKind`] and give a [`CompiledScript`] runnable from many threads.
//! * [`ScriptHost::eval_segment`], [`ScriptHost::eval_offers`], [`ScriptHost::eval_message`]
//!   run it for one [`ScriptCustomer`] at a given `now`, giving an [`Outcome`] with the
//!   typed value or a [`ScriptError`], the logs and the operations used.
//! * [`ScriptHost::eval_route`] runs a `ROUTING` script for a [`ScriptTicket`] and its
//!   customer, giving a [`Route`] (team, priority, assignee, topic).
//! * [`ScriptHost::dry_run`] does the same with JSON in and out; [`ScriptCustomer::from_json`]
//!   builds an inline test customer (shape in `scripts/README.md`).
//!
//! Time in scripts: instants are integer microseconds since 1970-01-01 UTC (`now()`,
//! `o.placed_time`); durations are whole days (`days_since(t)`, `c.tenure_days`). Money is a
//! float in currency units.
//!
//! This crate knows nothing of gRPC or SQL.

mod api;
pub mod cancel;
pub mod error;
mod host;
mod json;
pub mod observe;
mod sandbox;
pub mod ticket;
pub mod time;
pub mod types;
mod validate;

pub use cancel::{Cancel, CancelOnDrop};
pub use error::{Diagnostic, ErrorCategory, ScriptError};
pub use host::{CompiledScript, HostConfig, Outcome, ScriptHost, ScriptKind};
pub use observe::{Failure, Limit, ScriptObserver};
pub use ticket::{Route, ScriptTicket};
pub use types::{totals_from_orders, Catalog, Event, Message, Offer, ScriptCustomer};

/// Register bakkal's types and functions on an engine.
fn register(engine: &mut rhai::Engine) {
    use rhai::exported_module;
    engine
        .register_type_with_name::<types::ScriptCustomer>("Customer")
        .register_type_with_name::<types::ScriptOrder>("Order")
        .register_type_with_name::<types::ScriptOrderLine>("OrderLine")
        .register_type_with_name::<types::ScriptProduct>("Product")
        .register_type_with_name::<types::Catalog>("Catalog")
        .register_type_with_name::<types::Event>("Event")
        .register_type_with_name::<types::Offer>("Offer")
        .register_type_with_name::<types::Message>("Message")
        .register_type_with_name::<ticket::ScriptTicket>("Ticket")
        .register_iterator::<types::Catalog>();
    engine.register_global_module(exported_module!(api::bakkal_api).into());
    engine.register_global_module(exported_module!(ticket::ticket_api).into());
    #[cfg(feature = "fault-injection")]
    engine.register_fn("panic_for_tests", |message: &str| -> bool {
        panic!("panic_for_tests: {message}")
    });
}
