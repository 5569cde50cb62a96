//! A component's type: `unresolved-name` when it names nothing (with the
//! close name as a fix); `invalid-component-kind` when its kind may not be
//! placed in this object (an appliance in a VM, an interface in a VAN,
//! `Appliance` itself) or when the object would contain itself.

use super::{error, unresolved, ObjectCtx};
use crate::diagnostics::{Code, LocalDiagnostic};
use crate::model::object_model;
use crate::resolve::{self, ancestry, kind_of, Def, Kind, Resolved};

pub(super) fn check(ctx: &ObjectCtx<'_>, out: &mut Vec<LocalDiagnostic>) {
    let (db, def) = (ctx.db, ctx.def);
    let kind = object_model(db, def).kind;
    for comp in &ctx.data.components {
        let ty = match resolve::resolve_type(db, def.file, &comp.ty.text) {
            Resolved::Unresolved | Resolved::Root => {
                let names = resolve::type_names(db, def.file);
                let suggestion =
                    crate::suggest::did_you_mean(&comp.ty.text, names.iter().map(String::as_str));
                let hint = suggestion
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_else(|| "; import it first".into());
                out.push(unresolved(
                    format!("no object named `{}`{hint}", comp.ty.text),
                    ctx.at(comp.ty.range),
                    suggestion,
                ));
                continue;
            }
            Resolved::BrokenImport(_) => continue,
            Resolved::Def(ty) => ty,
        };
        let ck = kind_of(db, &ty);
        let problem = match (kind, ck) {
            (_, Kind::Unknown) | (Kind::Unknown, _) => None,
            (_, Kind::Appliance) => Some(
                "`Appliance` is abstract: components are VM appliances, VANs or Interfaces"
                    .to_string(),
            ),
            (Kind::Van, Kind::Vm | Kind::Van) | (Kind::Vm, Kind::Interface) => None,
            (Kind::Van, Kind::Interface) => Some(format!(
                "`{}` is an Interface, and only VM appliances have interfaces; a VAN \
                 exports a component's interface with `vanIF = \"c.ethernet1\";`",
                comp.ty.text
            )),
            (Kind::Vm, _) => Some(format!(
                "`{}` is {}, and only VAN appliances have appliance components: make \
                 `{}` extend VANAppliance",
                comp.ty.text,
                ck.describe(),
                def.name
            )),
            (k, _) => Some(format!(
                "{} cannot have components of kind {}",
                k.describe(),
                ck.describe()
            )),
        };
        if let Some(message) = problem {
            out.push(error(
                Code::InvalidComponentKind,
                message,
                ctx.at(comp.ty.range),
            ));
        } else if ancestry(db, &ty).chain.contains(def) || contains(db, &ty, def) {
            out.push(error(
                Code::InvalidComponentKind,
                format!(
                    "`{}` would contain itself through component `{}`",
                    def.name, comp.name.text
                ),
                ctx.at(comp.ty.range),
            ));
        }
    }
}

/// Does `ty` contain `def` among its components, at any depth?
fn contains(db: &dyn crate::db::Db, ty: &Def, def: &Def) -> bool {
    let mut stack = vec![ty.clone()];
    let mut seen = rustc_hash::FxHashSet::default();
    while let Some(t) = stack.pop() {
        if !seen.insert(t.clone()) {
            continue;
        }
        for (_, comp) in object_model(db, &t).components() {
            if let Some(c) = &comp.ty {
                if c == def || ancestry(db, c).chain.contains(def) {
                    return true;
                }
                stack.push(c.clone());
            }
        }
    }
    false
}
