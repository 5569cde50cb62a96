//! Checks that need no evaluation: per file (imports, the language version,
//! duplicate objects) and per object (extends, declarations, kinds of
//! components, assignment targets and references, sensitive values).
//!
//! Each object's checks are one query, keyed by the object, so an edit in one
//! object re-runs only its own checks and its descendants'.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::db::{Db, SourceFile};
use crate::diagnostics::{Code, Loc, LocalDiagnostic, Severity};
use crate::item_tree::Named;
use crate::model::{object_model, resolve_path, Target};
use crate::resolve::{
    self, ancestry, item_tree, kind_of, object_data, ChainEnd, Def, Kind, Resolved,
};

/// An unresolved name, with the fix of replacing it by a close name.
fn unresolved(message: String, loc: Loc, suggestion: Option<&str>) -> LocalDiagnostic {
    let diagnostic = error(Code::UnresolvedName, message, loc.clone());
    match suggestion {
        Some(s) => diagnostic.with_fix(format!("Change to `{s}`"), vec![(loc, s.to_string())]),
        None => diagnostic,
    }
}

fn error(code: Code, message: impl Into<String>, loc: Loc) -> LocalDiagnostic {
    LocalDiagnostic::new(code, Severity::Error, message, loc)
}

fn warning(code: Code, message: impl Into<String>, loc: Loc) -> LocalDiagnostic {
    LocalDiagnostic::new(code, Severity::Warning, message, loc)
}

const SUPPORTED_VERSION: &str = "0.8";

/// Checks of a file's top level.
#[salsa::tracked(returns(ref))]
pub fn file_checks(db: &dyn Db, file: SourceFile) -> Arc<Vec<LocalDiagnostic>> {
    let tree = item_tree(db, file);
    let mut out = Vec::new();
    let at = |range| Loc::in_file(file, range);

    for (version, range) in &tree.versions {
        match version {
            Some(v) if v == SUPPORTED_VERSION => {}
            Some(v) => out.push(error(
                Code::UnsupportedVersion,
                format!("CVL version \"{v}\" is not supported: this toolchain reads CVL 0.8"),
                at(*range),
            )),
            None => out.push(error(
                Code::UnsupportedVersion,
                "the CVL version must be a string: `CVL = \"0.8\";`",
                at(*range),
            )),
        }
    }
    for stray in &tree.stray_assignments {
        out.push(error(
            Code::SyntaxError,
            format!(
                "`{}` cannot be assigned at the top level: only `CVL = \"0.8\";` can; \
                 assignments belong in an object's body",
                stray.text
            ),
            at(stray.range),
        ));
    }

    let mut names: FxHashMap<&str, Loc> = FxHashMap::default();
    for import in &tree.imports {
        for (range, message, is_error) in &import.problems {
            let code = if *is_error {
                Code::BadImport
            } else {
                Code::UnknownAttribute
            };
            let diag = if *is_error {
                error(code, message, at(*range))
            } else {
                warning(code, message, at(*range))
            };
            out.push(diag);
        }
        let map_is_bad = import.problems.iter().any(|(_, _, is_error)| *is_error);
        if let Some(key) = import.key().filter(|_| !map_is_bad) {
            match file.imports(db).get(&key) {
                Some(Err(message)) => out.push(error(
                    Code::BadImport,
                    format!("cannot import `{}` from {}: {message}", key.cvl, key.url),
                    at(import.range),
                )),
                None => out.push(error(
                    Code::BadImport,
                    format!("`{}` from {} was not loaded", key.cvl, key.url),
                    at(import.range),
                )),
                Some(Ok(resolved)) => {
                    if let Some(message) = &resolved.blacklisted {
                        let range = import.version.as_ref().map_or(import.range, |v| v.range);
                        out.push(error(Code::BlacklistedVersion, message, at(range)));
                    }
                    if let Err(message) = resolve::exported_object(db, resolved.file) {
                        out.push(error(
                            Code::BadImport,
                            format!("cannot import from `{}`: {message}", resolved.file.name(db)),
                            at(import.range),
                        ));
                    }
                }
            }
        }
        if let Some(name) = &import.name {
            if let Some(first) = names.get(name.text.as_str()) {
                out.push(
                    error(
                        Code::DuplicateDeclaration,
                        format!("`{}` is imported twice", name.text),
                        at(name.range),
                    )
                    .label(first.clone(), "first bound here"),
                );
            } else {
                names.insert(&name.text, at(name.range));
            }
        }
    }
    let prelude = item_tree(db, db.prelude());
    for object in &tree.objects {
        let name = &object.data.name;
        // Absolute: a second object of the same name has no Loc of its own.
        let loc = Loc::in_file(file, name.range + object.start);
        if let Some(first) = names.get(name.text.as_str()) {
            if tree
                .object(&name.text)
                .is_some_and(|o| o.start != object.start)
            {
                out.push(
                    error(
                        Code::DuplicateDeclaration,
                        format!("object `{}` is declared twice in this file", name.text),
                        loc,
                    )
                    .label(first.clone(), "first declared here"),
                );
            } else {
                out.push(
                    error(
                        Code::DuplicateDeclaration,
                        format!("object `{}` has the name of an import", name.text),
                        loc,
                    )
                    .label(first.clone(), "imported here"),
                );
            }
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
    Arc::new(out)
}

/// The checks of `def`'s own text.
pub fn object_checks<'db>(db: &'db dyn Db, def: &Def) -> &'db Arc<Vec<LocalDiagnostic>> {
    object_checks_query(db, def.file, def.name.clone())
}

#[salsa::tracked(returns(ref))]
fn object_checks_query(db: &dyn Db, file: SourceFile, name: String) -> Arc<Vec<LocalDiagnostic>> {
    let def = Def { file, name };
    let mut out = Vec::new();
    if def.file == db.prelude() {
        return Arc::new(out);
    }
    let Some(data) = object_data(db, def.file, def.name.clone()).clone() else {
        return Arc::new(out);
    };
    let at = |range| Loc::in_object(&def, range);

    // extends
    let mut parent_model = None;
    if let Some(parent) = &data.parent {
        match resolve::resolve_type(db, def.file, &parent.text) {
            Resolved::Unresolved | Resolved::Root => {
                let names = resolve::type_names(db, def.file);
                let suggestion =
                    crate::suggest::did_you_mean(&parent.text, names.iter().map(String::as_str));
                let hint = suggestion
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_else(|| "; import it, or extend VMAppliance or VANAppliance".into());
                out.push(unresolved(
                    format!("no object named `{}`{hint}", parent.text),
                    at(parent.range),
                    suggestion,
                ));
            }
            Resolved::BrokenImport(_) => {}
            Resolved::Def(p) => {
                if p.file == db.prelude() && matches!(p.name.as_str(), "Appliance" | "Interface") {
                    out.push(error(
                        Code::InvalidExtends,
                        format!(
                            "objects cannot extend `{}` directly: extend VMAppliance (a VM) or \
                             VANAppliance (a network of appliances)",
                            p.name
                        ),
                        at(parent.range),
                    ));
                } else {
                    parent_model = Some(object_model(db, &p).clone());
                }
            }
        }
        let chain = ancestry(db, &def);
        if chain.end == ChainEnd::Cycle {
            let last = chain.chain.last().expect("a chain holds its object");
            let closes_on_self = resolve::parent_name(db, last.file, last.name.clone())
                .as_ref()
                .map(|p| resolve::resolve_type(db, last.file, p))
                == Some(Resolved::Def(def.clone()));
            // One cycle, one diagnostic: its first member in source order
            // reports it, naming the whole cycle.
            let first = closes_on_self
                && chain
                    .chain
                    .iter()
                    .map(|d| resolve::source_order(db, d))
                    .min()
                    == Some(resolve::source_order(db, &def));
            if first {
                let names: Vec<&str> = chain.chain.iter().map(|d| d.name.as_str()).collect();
                let mut diag = error(
                    Code::InheritanceCycle,
                    format!(
                        "inheritance cycle: {} extends {}",
                        names.join(" extends "),
                        def.name
                    ),
                    at(parent.range),
                );
                for other in chain.chain.iter().skip(1) {
                    if let Some(d) = object_data(db, other.file, other.name.clone()) {
                        if let Some(p) = &d.parent {
                            diag = diag.label(
                                Loc::in_object(other, p.range),
                                format!("`{}` extends `{}` here", other.name, p.text),
                            );
                        }
                    }
                }
                out.push(diag);
            }
        }
    }

    let model = object_model(db, &def);
    let kind = model.kind;

    // declarations
    let mut own: FxHashMap<String, Loc> = FxHashMap::default();
    let inherited_loc = |name: &str| -> Option<(Loc, String)> {
        let pm = parent_model.as_ref()?;
        if let Some(p) = pm.params.get(name) {
            let var = p.var(db);
            return Some((
                Loc::in_object(&p.owner, var.name.range),
                p.owner.name.clone(),
            ));
        }
        let c = pm.components.get(name)?;
        let item = c.item(db);
        Some((
            Loc::in_object(&c.owner, item.name.range),
            c.owner.name.clone(),
        ))
    };
    let mut declare = |out: &mut Vec<LocalDiagnostic>, name: &Named, what: &str| {
        if let Some(first) = own.get(name.text.as_str()) {
            out.push(
                error(
                    Code::DuplicateDeclaration,
                    format!("`{}` is declared twice in `{}`", name.text, def.name),
                    at(name.range),
                )
                .label(first.clone(), "first declared here"),
            );
        } else if let Some((loc, owner)) = inherited_loc(&name.text) {
            out.push(
                error(
                    Code::DuplicateDeclaration,
                    format!(
                        "{what} `{}` is already declared in `{owner}`, which `{}` extends: \
                         assign it instead of declaring it again",
                        name.text, def.name
                    ),
                    at(name.range),
                )
                .label(loc, format!("declared in `{owner}`")),
            );
        } else {
            own.insert(name.text.clone(), at(name.range));
        }
    };
    for var in &data.vars {
        declare(&mut out, &var.name, "parameter");
        for attr in &var.unknown_attributes {
            out.push(warning(
                Code::UnknownAttribute,
                format!(
                    "unknown attribute \"{}\": the attributes are \"required\" and \"sensitive\"",
                    attr.text
                ),
                at(attr.range),
            ));
        }
    }
    for comp in &data.components {
        declare(&mut out, &comp.name, "component");
        match resolve::resolve_type(db, def.file, &comp.ty.text) {
            Resolved::Unresolved | Resolved::Root => {
                let names = resolve::type_names(db, def.file);
                let suggestion =
                    crate::suggest::did_you_mean(&comp.ty.text, names.iter().map(String::as_str));
                let hint = suggestion
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_else(|| "; import it first".into());
                out.push(unresolved(
                    format!("no object named `{}`{hint}", comp.ty.text),
                    at(comp.ty.range),
                    suggestion,
                ));
            }
            Resolved::BrokenImport(_) => {}
            Resolved::Def(ty) => {
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
                        at(comp.ty.range),
                    ));
                } else if ancestry(db, &ty).chain.contains(&def) || contains(db, &ty, &def) {
                    out.push(error(
                        Code::InvalidComponentKind,
                        format!(
                            "`{}` would contain itself through component `{}`",
                            def.name, comp.name.text
                        ),
                        at(comp.ty.range),
                    ));
                }
            }
        }
    }

    // assignments
    let mut targets: FxHashMap<Vec<&str>, usize> = FxHashMap::default();
    for (index, assign) in data.assigns.iter().enumerate() {
        let key: Vec<&str> = assign.target.iter().map(|n| n.text.as_str()).collect();
        if let Some(&earlier) = targets.get(&key) {
            let first = &data.assigns[earlier];
            out.push(
                warning(
                    Code::OverriddenAssignment,
                    format!(
                        "this assignment to `{}` is overridden later in `{}` and has no effect",
                        key.join("."),
                        def.name
                    ),
                    at(first.range),
                )
                .label(at(assign.range), "overridden here"),
            );
        }
        targets.insert(key.clone(), index);

        let target = match resolve_path(db, &def, &assign.target) {
            Ok(Target::Param(p)) => Some(p),
            Ok(Target::Component(_)) => {
                let name = &assign.target.last().expect("a path has a segment");
                out.push(error(
                    Code::UnresolvedName,
                    format!(
                        "`{}` is a component, which has no value: assign one of its \
                         parameters, e.g. `{}.name`",
                        name.text,
                        key.join(".")
                    ),
                    at(name.range),
                ));
                None
            }
            Err(e) => {
                if !e.consequential {
                    let loc = at(assign.target[e.segment].range);
                    out.push(unresolved(e.message, loc, e.suggestion.as_deref()));
                }
                None
            }
        };
        let mut refs = Vec::new();
        for value in &assign.values {
            value.refs(&mut refs);
        }
        for (path, range) in refs {
            match resolve_path(db, &def, &path) {
                Ok(Target::Param(p)) => {
                    if p.sensitive && target.as_ref().is_some_and(|t| !t.sensitive) {
                        let var = p.var(db);
                        out.push(
                            error(
                                Code::SensitiveFlow,
                                format!(
                                    "sensitive `{}` flows into `{}`, which is not sensitive: its \
                                     value would be stored and shown in plaintext; declare `{}` \
                                     \"sensitive\" too",
                                    path.iter()
                                        .map(|n| n.text.as_str())
                                        .collect::<Vec<_>>()
                                        .join("."),
                                    key.join("."),
                                    key.last().expect("a path has a segment")
                                ),
                                at(range),
                            )
                            .label(
                                Loc::in_object(&p.owner, var.name.range),
                                "declared \"sensitive\" here",
                            ),
                        );
                    }
                }
                Ok(Target::Component(_)) => {
                    out.push(error(
                        Code::UnresolvedName,
                        format!(
                        "`{}` is a component, not a parameter: refer to one of its parameters, \
                         e.g. `{}.name`",
                        path.last().expect("a path has a segment").text,
                        path.iter().map(|n| n.text.as_str()).collect::<Vec<_>>().join(".")
                    ),
                        at(range),
                    ))
                }
                Err(e) => {
                    if !e.consequential {
                        let loc = at(path[e.segment].range);
                        out.push(unresolved(e.message, loc, e.suggestion.as_deref()));
                    }
                }
            }
        }
        if let Some(t) = &target {
            if t.sensitive {
                let mut literals = Vec::new();
                assign.values.iter().for_each(|v| v.literals(&mut literals));
                for range in literals {
                    let var = t.var(db);
                    out.push(
                        error(
                            Code::SensitiveLiteral,
                            format!(
                                "`{}` is sensitive, so its value must not be written in a file: \
                                 remove this assignment and let the user agent supply it at \
                                 deploy time",
                                key.join(".")
                            ),
                            at(range),
                        )
                        .label(
                            Loc::in_object(&t.owner, var.name.range),
                            "declared \"sensitive\" here",
                        )
                        .with_fix(
                            format!(
                                "Remove the written value of `{}`: the user agent supplies it",
                                key.join(".")
                            ),
                            vec![(at(assign.range), String::new())],
                        ),
                    );
                }
            }
        }
    }
    Arc::new(out)
}

/// Does `ty` contain `def` among its components, at any depth?
fn contains(db: &dyn Db, ty: &Def, def: &Def) -> bool {
    let mut stack = vec![ty.clone()];
    let mut seen = rustc_hash::FxHashSet::default();
    while let Some(t) = stack.pop() {
        if !seen.insert(t.clone()) {
            continue;
        }
        for comp in object_model(db, &t).components.values() {
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
