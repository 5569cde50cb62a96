//! `duplicate-declaration`: a name bound twice. In a file: two imports or
//! two objects of one name, an object named like an import or a predefined
//! object. In an object: a parameter or component declared twice, or
//! declared again when an ancestor declares it.

use rustc_hash::FxHashMap;

use super::{error, FileCtx, ObjectCtx};
use crate::diagnostics::{Code, Loc, LocalDiagnostic};
use crate::item_tree::Named;
use crate::model::object_model;
use crate::resolve::{self, item_tree, Resolved};

pub(super) fn check_file(ctx: &FileCtx<'_>, out: &mut Vec<LocalDiagnostic>) {
    let (db, file, tree) = (ctx.db, ctx.file, ctx.tree);
    let mut names: FxHashMap<&str, Loc> = FxHashMap::default();
    for import in &tree.imports {
        let Some(name) = &import.name else { continue };
        if let Some(first) = names.get(name.text.as_ref()) {
            out.push(
                error(
                    Code::DuplicateDeclaration,
                    format!("`{}` is imported twice", name.text),
                    ctx.at(name.range),
                )
                .label(first.clone(), "first bound here"),
            );
        } else {
            names.insert(&name.text, ctx.at(name.range));
        }
    }
    let prelude = item_tree(db, db.prelude());
    for object in &tree.objects {
        let name = &object.data.name;
        // Absolute: a second object of the same name has no Loc of its own.
        let loc = ctx.at(name.range + object.start);
        if let Some(first) = names.get(name.text.as_ref()) {
            let (message, label) = if tree
                .object(&name.text)
                .is_some_and(|o| o.start != object.start)
            {
                (
                    format!("object `{}` is declared twice in this file", name.text),
                    "first declared here",
                )
            } else {
                (
                    format!("object `{}` has the name of an import", name.text),
                    "imported here",
                )
            };
            out.push(error(Code::DuplicateDeclaration, message, loc).label(first.clone(), label));
            continue;
        }
        if file != db.prelude() && prelude.object(&name.text).is_some() {
            out.push(error(
                Code::DuplicateDeclaration,
                format!(
                    "`{}` is a predefined object: choose another name",
                    name.text
                ),
                loc,
            ));
            continue;
        }
        names.insert(&name.text, loc);
    }
}

pub(super) fn check_object(ctx: &ObjectCtx<'_>, out: &mut Vec<LocalDiagnostic>) {
    let (db, def) = (ctx.db, ctx.def);
    let parent_model = ctx.data.parent.as_ref().and_then(|parent| {
        match resolve::resolve_type(db, def.file, &parent.text) {
            // Extending these is invalid (see `extends`): nothing inherited.
            Resolved::Def(p) if p.file == db.prelude() && super::extends::is_abstract(&p) => None,
            Resolved::Def(p) => Some(object_model(db, &p).clone()),
            _ => None,
        }
    });
    let inherited = |name: &str| -> Option<(Loc, String)> {
        let pm = parent_model.as_ref()?;
        if let Some(p) = pm.param(name) {
            let var = p.var(db);
            return Some((
                Loc::in_object(&p.owner, var.name.range),
                p.owner.name.to_string(),
            ));
        }
        let c = pm.component(name)?;
        let item = c.item(db);
        Some((
            Loc::in_object(&c.owner, item.name.range),
            c.owner.name.to_string(),
        ))
    };
    let mut own: FxHashMap<&str, Loc> = FxHashMap::default();
    let declared = ctx
        .data
        .vars
        .iter()
        .map(|v| (&v.name, "parameter"))
        .chain(ctx.data.components.iter().map(|c| (&c.name, "component")));
    for (name, what) in declared {
        let name: &Named = name;
        if let Some(first) = own.get(name.text.as_ref()) {
            out.push(
                error(
                    Code::DuplicateDeclaration,
                    format!("`{}` is declared twice in `{}`", name.text, def.name),
                    ctx.at(name.range),
                )
                .label(first.clone(), "first declared here"),
            );
        } else if let Some((loc, owner)) = inherited(&name.text) {
            out.push(
                error(
                    Code::DuplicateDeclaration,
                    format!(
                        "{what} `{}` is already declared in `{owner}`, which `{}` extends: \
                         assign it instead of declaring it again",
                        name.text, def.name
                    ),
                    ctx.at(name.range),
                )
                .label(loc, format!("declared in `{owner}`")),
            );
        } else {
            own.insert(&name.text, ctx.at(name.range));
        }
    }
}
