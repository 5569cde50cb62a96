//! Sensitive values: `sensitive-flow` when a sensitive parameter flows
//! into one that is not sensitive (its value would be stored and shown in
//! plaintext); `sensitive-literal` when a sensitive parameter is given a
//! value written in the file (with the fix of removing the assignment: the
//! user agent supplies the value at deploy time).

use super::{error, ObjectCtx};
use crate::diagnostics::{Code, Loc, LocalDiagnostic};
use crate::model::Target;

pub(super) fn check(ctx: &ObjectCtx<'_>, out: &mut Vec<LocalDiagnostic>) {
    let db = ctx.db;
    for assignment in &ctx.assignments {
        let key = assignment.key.join(".");
        let target = match &assignment.target {
            Ok(Target::Param(p)) => Some(p),
            _ => None,
        };
        for (path, range, resolved) in &assignment.refs {
            let Ok(Target::Param(p)) = resolved else {
                continue;
            };
            let into_plain = target.is_some_and(|t| !t.sensitive);
            if !(p.sensitive && into_plain) {
                continue;
            }
            let var = p.var(db);
            out.push(
                error(
                    Code::SensitiveFlow,
                    format!(
                        "sensitive `{}` flows into `{key}`, which is not sensitive: its value \
                         would be stored and shown in plaintext; declare `{}` \"sensitive\" too",
                        path.iter()
                            .map(|n| n.text.as_ref())
                            .collect::<Vec<_>>()
                            .join("."),
                        assignment.key.last().expect("a path has a segment")
                    ),
                    ctx.at(*range),
                )
                .label(
                    Loc::in_object(&p.owner, var.name.range),
                    "declared \"sensitive\" here",
                ),
            );
        }
        let Some(t) = target.filter(|t| t.sensitive) else {
            continue;
        };
        let mut literals = Vec::new();
        assignment
            .item
            .values
            .iter()
            .for_each(|v| v.literals(&mut literals));
        for range in literals {
            let var = t.var(db);
            out.push(
                error(
                    Code::SensitiveLiteral,
                    format!(
                        "`{key}` is sensitive, so its value must not be written in a file: \
                         remove this assignment and let the user agent supply it at deploy time"
                    ),
                    ctx.at(range),
                )
                .label(
                    Loc::in_object(&t.owner, var.name.range),
                    "declared \"sensitive\" here",
                )
                .with_fix(
                    format!("Remove the written value of `{key}`: the user agent supplies it"),
                    vec![(ctx.at(assignment.item.range), String::new())],
                ),
            );
        }
    }
}
