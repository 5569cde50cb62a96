//! The analysis API in plain data: every diagnostic of a file, ready to
//! render, and the evaluated parameters of a deployed object. What the CLI
//! and the language server call.

use rustc_hash::FxHashSet;

use crate::checks::{
    bad_vanif, dependency_cycle, map_value_not_scalar, missing_required, reference_cycle,
    requires_unsatisfied,
};
use crate::checks::{file_checks, object_checks};
use crate::db::{Db, SourceFile};
use crate::deploy::start_order;
use crate::diagnostics::{Code, Diagnostic, Loc, LocalDiagnostic, Severity};
use crate::eval::{evaluate, evaluate_with, Allocations, Evaluation, Problem};
use crate::resolve::{item_tree, Def};

/// How a file is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Objects of the file that are deployed: their required parameters and
    /// dependencies are errors. Other objects are libraries, for which
    /// missing required parameters are hints to their users.
    pub deploy: Vec<String>,
}

/// Every diagnostic of `file`, sorted by position.
pub fn file_diagnostics(db: &dyn Db, file: SourceFile, options: &CheckOptions) -> Vec<Diagnostic> {
    file_diagnostics_query(db, file, options.deploy.clone())
        .as_ref()
        .clone()
}

/// Memoized per file, so that re-checking a workspace after an edit costs
/// only a validation for the files the edit does not reach.
#[salsa::tracked(returns(ref))]
fn file_diagnostics_query(
    db: &dyn Db,
    file: SourceFile,
    deploy: Vec<String>,
) -> std::sync::Arc<Vec<Diagnostic>> {
    let options = CheckOptions { deploy };
    std::sync::Arc::new(compute_file_diagnostics(db, file, &options))
}

fn compute_file_diagnostics(
    db: &dyn Db,
    file: SourceFile,
    options: &CheckOptions,
) -> Vec<Diagnostic> {
    let mut local: Vec<LocalDiagnostic> = Vec::new();
    local.extend(file_checks(db, file).iter().cloned());
    for (def, deployed, hints) in checked_objects(db, file, options) {
        local.extend(
            object_diagnostics(db, def.file, def.name, deployed, hints)
                .iter()
                .cloned(),
        );
    }
    let mut out: Vec<Diagnostic> =
        crate::Diagnostic::from_syntax_errors(file.name(db), &item_tree(db, file).syntax_errors);
    // An error anywhere in what the file imports breaks it too: a file that
    // does not parse, an import that fails or was tampered with, a broken
    // object. (Their warnings and hints belong to their own checks.)
    for imported in imported_files(db, file) {
        out.extend(crate::Diagnostic::from_syntax_errors(
            imported.name(db),
            &item_tree(db, imported).syntax_errors,
        ));
        let errors = |d: &&LocalDiagnostic| d.severity == Severity::Error;
        local.extend(file_checks(db, imported).iter().filter(errors).cloned());
        for object in &item_tree(db, imported).objects {
            let def = Def {
                file: imported,
                name: object.data.name.text.clone(),
            };
            local.extend(object_checks(db, &def).iter().filter(errors).cloned());
        }
    }
    let mut seen = FxHashSet::default();
    local.retain(|d| seen.insert((d.code, d.loc.clone(), d.message.clone())));
    // A reference cycle met by several evaluations (the object's own, a
    // VAN's that has it as a component) is one cycle: the same places. Kept
    // once, in the wording with the shortest names (the object's own).
    let places = |d: &LocalDiagnostic| -> FxHashSet<Loc> {
        std::iter::once(d.loc.clone())
            .chain(d.labels.iter().map(|(l, _)| l.clone()))
            .collect()
    };
    let mut best: Vec<(FxHashSet<Loc>, usize)> = Vec::new();
    for (i, d) in local.iter().enumerate() {
        if d.code == Code::ReferenceCycle {
            let places = places(d);
            match best.iter_mut().find(|(p, _)| *p == places) {
                Some((_, kept)) if d.message.len() < local[*kept].message.len() => *kept = i,
                Some(_) => {}
                None => best.push((places, i)),
            }
        }
    }
    let keep: FxHashSet<usize> = best.into_iter().map(|(_, i)| i).collect();
    local = local
        .into_iter()
        .enumerate()
        .filter(|(i, d)| d.code != Code::ReferenceCycle || keep.contains(i))
        .map(|(_, d)| d)
        .collect();
    out.extend(local.iter().map(|d| d.render(db)));
    // This file's diagnostics first, then those pointing into its imports.
    out.sort_by(|a, b| {
        (a.span.file != *file.name(db), a.span.range.start(), a.code).cmp(&(
            b.span.file != *file.name(db),
            b.span.range.start(),
            b.code,
        ))
    });
    out
}

/// The objects of `file` that are checked, each once (a duplicate is
/// reported by `file_checks`), with whether it is deployed and whether its
/// "users must set" hints are shown.
fn checked_objects(
    db: &dyn Db,
    file: SourceFile,
    options: &CheckOptions,
) -> Vec<(Def, bool, bool)> {
    let tree = item_tree(db, file);
    // Objects that others in the file build on are not what users deploy:
    // only the file's top objects get "users must set" hints.
    let used: FxHashSet<&str> = tree
        .objects
        .iter()
        .flat_map(|o| {
            let data = &o.data;
            data.parent
                .iter()
                .map(|p| p.text.as_ref())
                .chain(data.components.iter().map(|c| c.ty.text.as_ref()))
        })
        .collect();
    let mut seen = FxHashSet::default();
    tree.objects
        .iter()
        .filter(|o| seen.insert(o.data.name.text.as_ref()))
        .map(|o| {
            let name = o.data.name.text.clone();
            let deployed = options.deploy.iter().any(|d| **d == *name);
            let hints = options.deploy.is_empty() && !used.contains(&*name);
            (Def { file, name }, deployed, hints)
        })
        .collect()
}

/// One object's own diagnostics (declarations, evaluation, dependencies
/// when deployed), memoized per object: after an edit, the file's list is
/// assembled from these, and only the objects the edit reaches are checked
/// again.
#[salsa::tracked(returns(ref))]
fn object_diagnostics(
    db: &dyn Db,
    file: SourceFile,
    name: crate::resolve::Name,
    deployed: bool,
    hints: bool,
) -> std::sync::Arc<Vec<LocalDiagnostic>> {
    let def = Def { file, name };
    let mut out: Vec<LocalDiagnostic> = object_checks(db, &def).as_ref().clone();
    let evaluated = if deployed {
        evaluation_diagnostics(db, &def, true)
    } else {
        evaluation_facts(db, &def).diagnostics.clone()
    };
    out.extend(
        evaluated
            .into_iter()
            .filter(|d| d.severity != Severity::Hint || hints),
    );
    std::sync::Arc::new(out)
}

/// What checking an object needs of its evaluation when it is not
/// deployed: the diagnostics and the `vm` setting, without the evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationFacts {
    /// [`evaluation_diagnostics`] of the object as a library (hints kept).
    pub diagnostics: Vec<LocalDiagnostic>,
    /// See [`vm_setting`].
    pub vm: Option<(String, Loc)>,
}

/// Memoized per object in place of its evaluation: checking a file keeps
/// these few facts of each object, not the evaluation (instances, every
/// parameter's slot), which was the largest part of the memory a large
/// file's check held. What needs the evaluation itself (`cvl eval`,
/// hovers, deployed objects) asks [`evaluate`], memoized on its own.
pub fn evaluation_facts<'db>(db: &'db dyn Db, def: &Def) -> &'db EvaluationFacts {
    evaluation_facts_query(db, def.file, def.name.clone())
}

#[salsa::tracked(returns(ref))]
fn evaluation_facts_query(
    db: &dyn Db,
    file: SourceFile,
    name: crate::resolve::Name,
) -> EvaluationFacts {
    let def = Def { file, name };
    let ev = evaluate_with(db, &def, &Allocations::default());
    EvaluationFacts {
        diagnostics: diagnostics_of(db, &def, &ev, false),
        vm: ev.vm,
    }
}

/// Every file `file` imports, directly or not, each once.
pub fn imported_files(db: &dyn Db, file: SourceFile) -> Vec<SourceFile> {
    let mut seen = FxHashSet::default();
    seen.insert(file);
    let mut stack = vec![file];
    let mut out = Vec::new();
    while let Some(f) = stack.pop() {
        for (_, resolution) in &f.imports(db).entries {
            if let Ok(resolved) = resolution {
                if seen.insert(resolved.file) {
                    out.push(resolved.file);
                    stack.push(resolved.file);
                }
            }
        }
    }
    out
}

/// Evaluation problems of `def` (its cycles and maps, vanIF, required
/// parameters), plus dependency problems when it is deployed.
pub fn evaluation_diagnostics(db: &dyn Db, def: &Def, deployed: bool) -> Vec<LocalDiagnostic> {
    diagnostics_of(db, def, evaluate(db, def), deployed)
}

fn diagnostics_of(db: &dyn Db, def: &Def, ev: &Evaluation, deployed: bool) -> Vec<LocalDiagnostic> {
    let mut out: Vec<LocalDiagnostic> = ev
        .problems
        .iter()
        .map(|problem| match problem {
            Problem::ReferenceCycle { names, places } => reference_cycle::diagnostic(names, places),
            Problem::MapValueNotScalar { param, values, at } => {
                map_value_not_scalar::diagnostic(param, *values, at)
            }
            Problem::BadVanif { problem, at } => bad_vanif::diagnostic(problem, at),
        })
        .collect();
    out.extend(missing_required::check(db, def, ev, deployed));
    if deployed {
        let order = start_order(db, def);
        requires_unsatisfied::check(db, def, ev, order, &mut out);
        dependency_cycle::check(db, ev, order, &mut out);
    }
    out
}

/// One evaluated parameter, for `cvl eval` and hovers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluatedParam {
    /// The dotted path relative to the deployed object.
    pub path: String,
    /// The final strings, or `None` when the utility allocates a part of it
    /// at deploy time.
    pub value: Option<Vec<String>>,
    pub sensitive: bool,
    /// Where the winning assignment is, if any.
    pub assigned_at: Option<crate::Span>,
    /// Where the parameter is declared.
    pub declared_at: crate::Span,
}

/// Every parameter of `def` and of its components at every depth, in
/// declaration order, components after their container's parameters.
pub fn evaluated_params(db: &dyn Db, def: &Def) -> Vec<EvaluatedParam> {
    params_of(db, evaluate(db, def))
}

/// [`evaluated_params`] once the utility has allocated `allocations`.
pub fn evaluated_params_with(
    db: &dyn Db,
    def: &Def,
    allocations: &Allocations,
) -> Vec<EvaluatedParam> {
    if allocations.values.is_empty() {
        return evaluated_params(db, def);
    }
    params_of(db, &evaluate_with(db, def, allocations))
}

fn params_of(db: &dyn Db, ev: &Evaluation) -> Vec<EvaluatedParam> {
    let mut order: Vec<usize> = (0..ev.slots.len()).collect();
    // Instances are in breadth-first order; show depth-first, as people read.
    let mut instance_rank = vec![0; ev.instances.len()];
    let mut stack = vec![0usize];
    let mut rank = 0;
    while let Some(i) = stack.pop() {
        instance_rank[i] = rank;
        rank += 1;
        for (_, child) in ev.instances[i].children.iter().rev() {
            stack.push(*child);
        }
    }
    order.sort_by_key(|&s| (instance_rank[ev.slots[s].instance], s));
    order
        .into_iter()
        .map(|s| param_of(db, ev, &ev.slots[s]))
        .collect()
}

/// The `vm` a VM appliance sets: its one value and where it was assigned
/// (`None` for other objects, or when `vm` is unset or not one string).
/// One of the object's [`EvaluationFacts`], so it costs no memo of its own,
/// and an edit elsewhere leaves it valid.
pub fn vm_setting<'db>(db: &'db dyn Db, def: &Def) -> &'db Option<(String, Loc)> {
    &evaluation_facts(db, def).vm
}

fn param_of(db: &dyn Db, ev: &Evaluation, slot: &crate::eval::Slot) -> EvaluatedParam {
    let var = slot.decl.var(db);
    EvaluatedParam {
        path: ev.dotted(slot),
        value: slot.value.strings(),
        sensitive: slot.value.sensitive,
        assigned_at: ev.origin(db, slot).map(|l| l.span(db)),
        declared_at: Loc::in_object(&slot.decl.owner, var.name.range).span(db),
    }
}
