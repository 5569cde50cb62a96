//! `missing-required`: a "required" parameter without a value in the
//! deployed appliance (an error, naming what needs it and where to set it,
//! with the fix of adding the assignment), or, in an object that is not
//! deployed, a hint that its users must set it. It reads the evaluation:
//! the evaluator groups the missing values by the parameter they come from.

use crate::db::Db;
use crate::diagnostics::{Code, Loc, LocalDiagnostic, Severity};
use crate::eval::Evaluation;
use crate::resolve::Def;

pub(crate) fn check(
    db: &dyn Db,
    def: &Def,
    ev: &Evaluation,
    deployed: bool,
) -> Vec<LocalDiagnostic> {
    let mut out = Vec::new();
    let name_loc = crate::resolve::object_data(db, def.file, def.name.clone())
        .as_ref()
        .map(|d| Loc::in_object(def, d.name.range));
    for group in &ev.missing {
        let root = &ev.slots[group.root];
        let path = ev.dotted(root);
        let var = root.decl.var(db);
        let decl_loc = Loc::in_object(&root.decl.owner, var.name.range);
        let needed: Vec<String> = group
            .needed_by
            .iter()
            .map(|&s| format!("`{}`", ev.dotted(&ev.slots[s])))
            .collect();
        let (severity, message) = if deployed {
            let message = if root.decl.required {
                format!("required parameter `{path}` of `{}` has no value", def.name)
            } else {
                format!(
                    "{} required, but {} from `{path}`, which is never set",
                    needed.join(", "),
                    if needed.len() == 1 {
                        "it gets its value"
                    } else {
                        "they get their value"
                    }
                )
            };
            (Severity::Error, message)
        } else {
            (
                Severity::Hint,
                format!("users of `{}` must set `{path}` (required)", def.name),
            )
        };
        let mut diagnostic =
            LocalDiagnostic::new(Code::MissingRequired, severity, message, decl_loc);
        if let (true, Some(loc)) = (deployed, &name_loc) {
            diagnostic = diagnostic.label(loc.clone(), format!("`{}` is deployed here", def.name));
        }
        if !needed.is_empty() && root.decl.required {
            let verb = if needed.len() == 1 {
                "gets its value"
            } else {
                "get their value"
            };
            diagnostic = diagnostic.note(format!("{} {verb} from `{path}`", needed.join(", ")));
        }
        let last = path.rsplit('.').next().unwrap_or(&path);
        let top = ev.instances[root.instance].path.is_empty();
        let fix = if top && !deployed {
            format!(
                "set it in an object that extends `{}`: `{last} = \"...\";`",
                def.name
            )
        } else if top {
            // The deployed object is the user's own: the value goes there.
            format!("set it in `{}`: `{last} = \"...\";`", def.name)
        } else {
            format!("set it in `{}`: `{path} = \"...\";`", def.name)
        };
        let mut diagnostic = diagnostic.note(fix);
        // The fix: an assignment in the object being checked, before its `}`.
        if let Some(data) = crate::resolve::object_data(db, def.file, def.name.clone()) {
            let end = data.range.end() - cvl_syntax::TextSize::from(1);
            let at = Loc::in_object(def, cvl_syntax::TextRange::empty(end));
            let target = if ev.instances[root.instance].path.is_empty() {
                last.to_string()
            } else {
                path.clone()
            };
            diagnostic = diagnostic.with_fix(
                format!("Add `{target} = \"\";` to `{}`", def.name),
                vec![(at, format!("  {target} = \"\";\n"))],
            );
        }
        out.push(diagnostic);
    }
    out
}
