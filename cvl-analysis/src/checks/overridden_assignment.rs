//! `overridden-assignment`: an assignment that a later one in the same
//! object overrides (a warning: it has no effect).

use rustc_hash::FxHashMap;

use super::{warning, ObjectCtx};
use crate::diagnostics::{Code, LocalDiagnostic};

pub(super) fn check(ctx: &ObjectCtx<'_>, out: &mut Vec<LocalDiagnostic>) {
    let mut latest: FxHashMap<&[&str], usize> = FxHashMap::default();
    for (index, assignment) in ctx.assignments.iter().enumerate() {
        let key = assignment.key.as_slice();
        if let Some(&earlier) = latest.get(key) {
            let first = &ctx.assignments[earlier].item;
            out.push(
                warning(
                    Code::OverriddenAssignment,
                    format!(
                        "this assignment to `{}` is overridden later in `{}` and has no effect",
                        key.join("."),
                        ctx.def.name
                    ),
                    ctx.at(first.range),
                )
                .label(ctx.at(assignment.item.range), "overridden here"),
            );
        }
        latest.insert(key, index);
    }
}
