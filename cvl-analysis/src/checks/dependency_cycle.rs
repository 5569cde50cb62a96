//! `dependency-cycle`: components of the deployed appliance require each
//! other's services in a cycle, so none can start first. One cycle, one
//! diagnostic, at its first member, with a label at each other one.

use crate::db::Db;
use crate::deploy::{label_of, requires_loc, StartOrder};
use crate::diagnostics::{Code, LocalDiagnostic, Severity};
use crate::eval::Evaluation;

pub(crate) fn check(
    db: &dyn Db,
    ev: &Evaluation,
    order: &StartOrder,
    out: &mut Vec<LocalDiagnostic>,
) {
    let Some(cycle) = &order.cycle else {
        return;
    };
    let names: Vec<String> = cycle.iter().map(|&i| label_of(ev, i)).collect();
    let mut diagnostic = LocalDiagnostic::new(
        Code::DependencyCycle,
        Severity::Error,
        format!(
            "dependency cycle: {} -> {}: none of them can start first",
            names.join(" -> "),
            names[0]
        ),
        requires_loc(db, ev, cycle[0]),
    );
    for &i in &cycle[1..] {
        diagnostic = diagnostic.label(requires_loc(db, ev, i), "part of the cycle");
    }
    out.push(diagnostic);
}
