//! `unresolved-name` in assignments: a target or a name in a value that
//! names nothing (with the close name as a fix), or that names a component
//! where a parameter is needed.

use super::{error, unresolved, ObjectCtx};
use crate::diagnostics::{Code, LocalDiagnostic};
use crate::model::Target;

pub(super) fn check(ctx: &ObjectCtx<'_>, out: &mut Vec<LocalDiagnostic>) {
    for assignment in &ctx.assignments {
        let path = &assignment.item.target;
        match &assignment.target {
            Ok(Target::Param(_)) => {}
            Ok(Target::Component(_)) => {
                let name = path.last().expect("a path has a segment");
                out.push(error(
                    Code::UnresolvedName,
                    format!(
                        "`{}` is a component, which has no value: assign one of its \
                         parameters, e.g. `{}.name`",
                        name.text,
                        assignment.key.join(".")
                    ),
                    ctx.at(name.range),
                ));
            }
            Err(e) if !e.consequential => {
                let loc = ctx.at(path[e.segment].range);
                out.push(unresolved(e.message.clone(), loc, e.suggestion.as_deref()));
            }
            Err(_) => {} // its cause is reported where it is
        }
        for (path, range, resolved) in &assignment.refs {
            match resolved {
                Ok(Target::Param(_)) => {}
                Ok(Target::Component(_)) => out.push(error(
                    Code::UnresolvedName,
                    format!(
                        "`{}` is a component, not a parameter: refer to one of its parameters, \
                         e.g. `{}.name`",
                        path.last().expect("a path has a segment").text,
                        path.iter()
                            .map(|n| n.text.as_ref())
                            .collect::<Vec<_>>()
                            .join(".")
                    ),
                    ctx.at(*range),
                )),
                Err(e) if !e.consequential => {
                    let loc = ctx.at(path[e.segment].range);
                    out.push(unresolved(e.message.clone(), loc, e.suggestion.as_deref()));
                }
                Err(_) => {}
            }
        }
    }
}
