//! Semantic analysis of CVL, incremental on salsa: from file texts (and how
//! their imports resolved) to resolved objects, evaluated appliances and
//! diagnostics with stable codes.
//!
//! Layers, each a module: `item_tree` (per-file summary) → `resolve` (names,
//! inheritance) → `model` (an object through its chain) → `checks`
//! (declarations) → `eval` (values of a deployed object) → `deploy`
//! (dependencies, start order) → `analysis` and `ide` (answers in plain
//! data) → `host`, the front door: [`AnalysisHost`] takes changes and hands
//! out [`Analysis`] snapshots whose every answer is cancellable.
//! This crate does no I/O: imports arrive resolved, as inputs.

pub mod analysis;
pub mod checks;
pub mod db;
pub mod deploy;
pub mod diagnostics;
pub mod eval;
pub mod host;
pub mod ide;
pub mod item_tree;
pub mod model;
pub mod params_file;
pub mod prelude;
pub mod resolve;
mod suggest;

pub use analysis::{evaluated_params, file_diagnostics, vm_setting, CheckOptions, EvaluatedParam};
pub use db::{Db, ImportResolutions, ResolvedImport, RootDatabase, SourceFile};
pub use diagnostics::{Code, Diagnostic, Label, Severity, Span};
pub use host::{Analysis, AnalysisHost, Cancellable, Cancelled};
pub use resolve::Def;
