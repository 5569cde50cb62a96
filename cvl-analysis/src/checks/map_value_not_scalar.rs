//! `map-value-not-scalar`: a map value refers to a parameter with several
//! values, and a map value holds one (found by the evaluator as it encodes
//! the map: `Problem::MapValueNotScalar`).

use crate::diagnostics::{Code, Loc, LocalDiagnostic, Severity};

pub(crate) fn diagnostic(param: &str, values: usize, at: &Loc) -> LocalDiagnostic {
    LocalDiagnostic::new(
        Code::MapValueNotScalar,
        Severity::Error,
        format!(
            "`{param}` has {values} values, and a map value holds one: refer to a parameter \
             with a single value"
        ),
        at.clone(),
    )
}
