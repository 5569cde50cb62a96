//! `reference-cycle`: parameters that get their values from each other in a
//! cycle. The evaluator finds the cycle (`Problem::ReferenceCycle`, starting
//! at its first assignment in source order); `analysis.rs` keeps one
//! diagnostic per cycle however many evaluations meet it.

use crate::diagnostics::{Code, Loc, LocalDiagnostic, Severity};

pub(crate) fn diagnostic(names: &[String], places: &[Loc]) -> LocalDiagnostic {
    let mut diagnostic = LocalDiagnostic::new(
        Code::ReferenceCycle,
        Severity::Error,
        format!("reference cycle: {} -> {}", names.join(" -> "), names[0]),
        places[0].clone(),
    )
    .note("each of these parameters gets its value from the next: give one of them a value of its own");
    for loc in &places[1..] {
        diagnostic = diagnostic.label(loc.clone(), "part of the cycle");
    }
    diagnostic
}
