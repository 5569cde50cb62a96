//! One module per editor feature: each takes a snapshot and the request's
//! parameters, asks the analysis, and converts the answer with `to_proto`.
//! Document changes (`documents`) and publishing diagnostics
//! (`diagnostics`) are the only handlers that touch the world itself.

pub mod code_actions;
pub mod completion;
pub mod diagnostics;
pub mod documents;
pub mod folding;
pub mod formatting;
pub mod hierarchy;
pub mod hover;
pub mod inlay_hints;
pub mod lifecycle;
pub mod navigation;
pub mod plan;
pub mod rename;
pub mod semantic_tokens;
pub mod symbols;
