//! Tests at the IDE layer, through the front door (`AnalysisHost` /
//! `Analysis`), in the manner of rust-analyzer's `hover/tests.rs`: a
//! fixture of one or more files with `$0` marking the cursor, and the
//! answer rendered as text beside it in an inline snapshot. They need no
//! language server; `cvl/tests/lsp.rs` drives the real binary end to end.

mod fixture;

mod code_actions;
mod completion;
mod hierarchy;
mod hover;
mod inlay_hints;
mod navigation;
mod rename;
