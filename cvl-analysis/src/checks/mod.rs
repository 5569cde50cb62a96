//! Checks that need no evaluation, one module per rule, in the manner of
//! rust-analyzer's `ide-diagnostics/src/handlers/`. Two queries run them:
//! [`file_checks`] over a file's top level, [`object_checks`] over one
//! object's own text (keyed by the object, so an edit in one object re-runs
//! only its own checks and its descendants').
//!
//! To add a rule: declare its code once in `diagnostics.rs` (`codes!`),
//! write a module here with a `check` function taking the [`FileCtx`] or
//! [`ObjectCtx`] and pushing what it finds (with a fix where there is an
//! obvious one), call it below, and add a case folder
//! `cvl/tests/diagnostics/<code>/` with `.cvl` inputs (their snapshots are
//! written beside them on the first run). Rules over an evaluation
//! (`missing_required`, and the problems the evaluator records as it
//! evaluates: `reference_cycle`, `map_value_not_scalar`, `bad_vanif`) and
//! over a deployment's start order (`requires_unsatisfied`,
//! `dependency_cycle`) are called from `analysis.rs`; the evaluator and
//! `deploy.rs` record facts, these modules word them. Only invalid-vm, which
//! reads files, is `cvl-repo`'s (`appliance.rs`).

use std::sync::Arc;

use cvl_syntax::TextRange;

use crate::db::{Db, SourceFile};
use crate::diagnostics::{Code, Loc, LocalDiagnostic, Severity};
use crate::item_tree::{AssignItem, ItemTree, Named, ObjectData};
use crate::model::{resolve_path, PathError, Target};
use crate::resolve::{item_tree, object_data, Def, Name};

mod assignment_names;
pub(crate) mod bad_vanif;
mod component_kind;
pub(crate) mod dependency_cycle;
mod duplicate_declaration;
mod extends;
mod imports;
mod inheritance_cycle;
pub(crate) mod map_value_not_scalar;
pub(crate) mod missing_required;
mod overridden_assignment;
pub(crate) mod reference_cycle;
pub(crate) mod requires_unsatisfied;
mod sensitive;
mod unknown_attribute;
mod version;

/// What the checks of a file's top level read.
pub(crate) struct FileCtx<'a> {
    pub db: &'a dyn Db,
    pub file: SourceFile,
    pub tree: &'a ItemTree,
}

impl FileCtx<'_> {
    pub fn at(&self, range: TextRange) -> Loc {
        Loc::in_file(self.file, range)
    }
}

/// Checks of a file's top level.
#[salsa::tracked(returns(ref))]
pub fn file_checks(db: &dyn Db, file: SourceFile) -> Arc<Vec<LocalDiagnostic>> {
    let tree = item_tree(db, file);
    let ctx = FileCtx { db, file, tree };
    let mut out = Vec::new();
    version::check(&ctx, &mut out);
    imports::check(&ctx, &mut out);
    duplicate_declaration::check_file(&ctx, &mut out);
    Arc::new(out)
}

/// One assignment of the object, its target and the names in its values
/// resolved once for every rule that reads them.
pub(crate) struct Assignment<'a> {
    pub item: &'a AssignItem,
    /// The target's path, as written.
    pub key: Vec<&'a str>,
    pub target: Result<Target, PathError>,
    /// Each name in the values, where it is, and what it denotes.
    pub refs: Vec<(Vec<Named>, TextRange, Result<Target, PathError>)>,
}

/// What the checks of one object read.
pub(crate) struct ObjectCtx<'a> {
    pub db: &'a dyn Db,
    pub def: &'a Def,
    pub data: &'a ObjectData,
    pub assignments: Vec<Assignment<'a>>,
}

impl ObjectCtx<'_> {
    /// A place in the object's text.
    pub fn at(&self, range: TextRange) -> Loc {
        Loc::in_object(self.def, range)
    }
}

/// The checks of `def`'s own text.
pub fn object_checks<'db>(db: &'db dyn Db, def: &Def) -> &'db Arc<Vec<LocalDiagnostic>> {
    object_checks_query(db, def.file, def.name.clone())
}

#[salsa::tracked(returns(ref))]
fn object_checks_query(db: &dyn Db, file: SourceFile, name: Name) -> Arc<Vec<LocalDiagnostic>> {
    let def = Def { file, name };
    let mut out = Vec::new();
    if def.file == db.prelude() {
        return Arc::new(out);
    }
    let Some(data) = object_data(db, def.file, def.name.clone()).clone() else {
        return Arc::new(out);
    };
    let assignments = data
        .assigns
        .iter()
        .map(|item| {
            let mut names = Vec::new();
            item.values.iter().for_each(|v| v.refs(&mut names));
            Assignment {
                item,
                key: item.target.iter().map(|n| n.text.as_ref()).collect(),
                target: resolve_path(db, &def, &item.target),
                refs: names
                    .into_iter()
                    .map(|(path, range)| {
                        let target = resolve_path(db, &def, &path);
                        (path, range, target)
                    })
                    .collect(),
            }
        })
        .collect();
    let ctx = ObjectCtx {
        db,
        def: &def,
        data: &data,
        assignments,
    };
    extends::check(&ctx, &mut out);
    inheritance_cycle::check(&ctx, &mut out);
    duplicate_declaration::check_object(&ctx, &mut out);
    unknown_attribute::check(&ctx, &mut out);
    component_kind::check(&ctx, &mut out);
    overridden_assignment::check(&ctx, &mut out);
    assignment_names::check(&ctx, &mut out);
    sensitive::check(&ctx, &mut out);
    Arc::new(out)
}

fn error(code: Code, message: impl Into<String>, loc: Loc) -> LocalDiagnostic {
    LocalDiagnostic::new(code, Severity::Error, message, loc)
}

fn warning(code: Code, message: impl Into<String>, loc: Loc) -> LocalDiagnostic {
    LocalDiagnostic::new(code, Severity::Warning, message, loc)
}

/// An unresolved name, with the fix of replacing it by a close name.
fn unresolved(message: String, loc: Loc, suggestion: Option<&str>) -> LocalDiagnostic {
    let diagnostic = error(Code::UnresolvedName, message, loc.clone());
    match suggestion {
        Some(s) => diagnostic.with_fix(format!("Change to `{s}`"), vec![(loc, s.to_string())]),
        None => diagnostic,
    }
}
