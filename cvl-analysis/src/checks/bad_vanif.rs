//! `bad-vanif`: `vanIF` does not name an interface it may name (found by the
//! evaluator once every value is known: `Problem::BadVanif`). A `vanIF`
//! without a value is `missing-required`'s, and one through a component of
//! unknown type is reported where that starts.

use crate::diagnostics::{Code, Loc, LocalDiagnostic, Severity};
use crate::eval::VanifProblem;

pub(crate) fn diagnostic(problem: &VanifProblem, at: &Loc) -> LocalDiagnostic {
    let message = match problem {
        VanifProblem::NotOfAComponent { path } => {
            format!("`{path}` must name an interface of a component, e.g. \"f.ethernet1\"")
        }
        VanifProblem::NotAnInterfaceOf {
            path,
            object,
            interfaces,
        } => format!(
            "vanIF \"{path}\" names no interface of `{object}`; its interfaces: {}",
            interfaces.join(", ")
        ),
        VanifProblem::NotAComponentInterface { path, object } => format!(
            "vanIF \"{path}\" names no interface of a component of `{object}` (write \
             \"component.interface\", e.g. \"f.ethernet1\")"
        ),
        VanifProblem::Several(n) => format!("vanIF must be one interface, not {n} values"),
    };
    LocalDiagnostic::new(Code::BadVanif, Severity::Error, message, at.clone())
}
