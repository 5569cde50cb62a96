//! What an object extends: `unresolved-name` for a parent that names
//! nothing (with the close name as a fix), `invalid-extends` for a parent
//! that may not be extended (`Appliance`, `Interface`).

use super::{error, unresolved, ObjectCtx};
use crate::diagnostics::{Code, LocalDiagnostic};
use crate::resolve::{self, Def, Resolved};

/// The predefined objects no object may extend directly.
pub(super) fn is_abstract(def: &Def) -> bool {
    matches!(def.name.as_ref(), "Appliance" | "Interface")
}

pub(super) fn check(ctx: &ObjectCtx<'_>, out: &mut Vec<LocalDiagnostic>) {
    let db = ctx.db;
    let Some(parent) = &ctx.data.parent else {
        return;
    };
    match resolve::resolve_type(db, ctx.def.file, &parent.text) {
        Resolved::Unresolved | Resolved::Root => {
            let names = resolve::type_names(db, ctx.def.file);
            let suggestion =
                crate::suggest::did_you_mean(&parent.text, names.iter().map(String::as_str));
            let hint = suggestion
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_else(|| "; import it, or extend VMAppliance or VANAppliance".into());
            out.push(unresolved(
                format!("no object named `{}`{hint}", parent.text),
                ctx.at(parent.range),
                suggestion,
            ));
        }
        Resolved::BrokenImport(_) => {}
        Resolved::Def(p) if p.file == db.prelude() && is_abstract(&p) => {
            out.push(error(
                Code::InvalidExtends,
                format!(
                    "objects cannot extend `{}` directly: extend VMAppliance (a VM) or \
                     VANAppliance (a network of appliances)",
                    p.name
                ),
                ctx.at(parent.range),
            ));
        }
        Resolved::Def(_) => {}
    }
}
