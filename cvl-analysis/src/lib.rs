//! Semantic analysis of CVL.

pub mod diagnostics;

pub use diagnostics::{Code, Diagnostic, Label, Severity, Span};
