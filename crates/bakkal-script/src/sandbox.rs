//! The one rhai [`Engine`] configuration: which of rhai's packages scripts get, the symbols
//! turned off and the size limits. Operation counting, the deadline and cancellation are
//! wired in by [`crate::ScriptHost`], which owns the per-call state they read.

use rhai::module_resolvers::DummyModuleResolver;
use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicBlobPackage, BasicFnPackage, BasicIteratorPackage,
    BasicMapPackage, BasicMathPackage, BasicStringPackage, BitFieldPackage, LogicPackage,
    MoreStringPackage, Package,
};
use rhai::Engine;

use crate::host::HostConfig;

/// Built-ins of rhai's standard library that scripts do not get, and why: each blocks the
/// thread, reads the system clock or steps outside the call. They are not registered at all
/// (so no function pointer reaches them either); validation names them with the reason.
pub(crate) const UNAVAILABLE: &[(&str, &str)] = &[
    ("sleep", "it would block the server; scripts cannot wait"),
    ("timestamp", "scripts read the time with now()"),
    ("elapsed", "scripts read the time with now()"),
    ("time_diff", "scripts read the time with now()"),
    ("exit", "return a value from the entry point instead"),
    ("eval", "scripts cannot run code built at run time"),
    ("get_fn_metadata_list", "scripts cannot inspect the engine"),
];

/// The engine, without bakkal's own API (see [`crate::register`]). rhai's `StandardPackage`
/// minus `LanguageCorePackage` (`sleep`, `exit`, `take`, tags, `parse_json`, reflection) and
/// `BasicTimePackage` (`timestamp`, `elapsed`): arithmetic, logic, strings, arrays, blobs,
/// maps, ranges, maths and function pointers stay.
pub(crate) fn engine(config: &HostConfig) -> Engine {
    let mut engine = Engine::new_raw();
    for package in [
        ArithmeticPackage::new().as_shared_module(),
        BasicStringPackage::new().as_shared_module(),
        BasicIteratorPackage::new().as_shared_module(),
        BasicFnPackage::new().as_shared_module(),
        BitFieldPackage::new().as_shared_module(),
        LogicPackage::new().as_shared_module(),
        BasicMathPackage::new().as_shared_module(),
        BasicArrayPackage::new().as_shared_module(),
        BasicBlobPackage::new().as_shared_module(),
        BasicMapPackage::new().as_shared_module(),
        MoreStringPackage::new().as_shared_module(),
    ] {
        engine.register_global_module(package);
    }
    engine
        // Operations are counted by the host's progress callback, across callbacks too (rhai
        // counts a closure called by `sort` or `map` on a copy of the caller's count).
        .set_max_operations(0)
        .set_max_call_levels(config.max_call_levels)
        .set_max_expr_depths(config.max_expr_depth, config.max_function_expr_depth)
        .set_max_string_size(config.max_string_size)
        .set_max_array_size(config.max_array_size)
        .set_max_map_size(config.max_map_size)
        .set_max_strings_interned(256)
        .set_strict_variables(true)
        .set_fail_on_invalid_map_property(false)
        .set_module_resolver(DummyModuleResolver::new())
        .disable_symbol("eval")
        .disable_symbol("import")
        .disable_symbol("export");
    engine
}
