//! `requires-unsatisfied`: a component of the deployed appliance requires a
//! service that no component provides. Read from the start order, which
//! `deploy.rs` computes from `provides` and `requires`.

use crate::db::Db;
use crate::deploy::{label_of, requires_loc, StartOrder};
use crate::diagnostics::{Code, LocalDiagnostic, Severity};
use crate::eval::Evaluation;
use crate::resolve::Def;

pub(crate) fn check(
    db: &dyn Db,
    def: &Def,
    ev: &Evaluation,
    order: &StartOrder,
    out: &mut Vec<LocalDiagnostic>,
) {
    for (vm, service) in &order.unsatisfied {
        out.push(
            LocalDiagnostic::new(
                Code::RequiresUnsatisfied,
                Severity::Error,
                format!(
                    "{} requires \"{service}\", which no component of `{}` provides",
                    label_of(ev, *vm),
                    def.name
                ),
                requires_loc(db, ev, *vm),
            )
            .note(format!(
                "add a component whose `provides` includes \"{service}\""
            )),
        );
    }
}
