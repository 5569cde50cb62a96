//! Evaluation of a deployed object: the tree of its component instances, the
//! final value of every parameter of every instance, and the problems only
//! evaluation can see (reference cycles, maps over lists, `vanIF`, required
//! parameters left empty).
//!
//! Semantics (language reference §4, §6): assignments of a component's own
//! chain run first (parent first, in source order), then those of the objects
//! that contain it, outermost last; the last one wins. References are lazy:
//! they denote the final value of the referenced parameter, resolved from the
//! instance that holds the assignment. Values the utility allocates at deploy
//! time come from [`Allocations`] or stay unknown.

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::db::{Db, SourceFile};
use crate::diagnostics::Loc;
use crate::item_tree::{Expr, Named};
use crate::model::{object_model, AssignRef, ParamDecl};
use crate::prelude::UTILITY_ALLOCATED;
use crate::resolve::{Def, Kind, Name};

/// Instances with more parameters than this find them through a map.
const MAX_SCANNED_SLOTS: usize = 32;

/// Instances deeper or more numerous than this are not expanded.
const MAX_INSTANCES: usize = 1_000_000;

/// One element of a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Elem {
    Str(String),
    /// Known only at deploy time, when the utility allocates it.
    Unknown,
}

/// A parameter's final value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Value {
    pub elems: Vec<Elem>,
    /// Holds (or derives from) a sensitive parameter.
    pub sensitive: bool,
}

impl Value {
    pub fn is_known(&self) -> bool {
        self.elems.iter().all(|e| matches!(e, Elem::Str(_)))
    }

    /// The strings, when every element is known.
    pub fn strings(&self) -> Option<Vec<String>> {
        self.elems
            .iter()
            .map(|e| match e {
                Elem::Str(s) => Some(s.clone()),
                Elem::Unknown => None,
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.elems.is_empty()
    }

    /// The value as people read it; a sensitive value is never shown.
    pub fn display(&self) -> String {
        if self.sensitive && !self.is_empty() {
            return "<redacted>".to_string();
        }
        match self.strings() {
            None => "(allocated at deploy time)".to_string(),
            Some(v) if v.is_empty() => "(unset)".to_string(),
            Some(v) => v
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Values known only at deploy time, by dotted path relative to the
/// deployed object: what the utility allocated (`f.ethernet0.ip`), and the
/// sensitive values the user supplied for parameters nobody assigns
/// (`rootpw`). They live in memory only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allocations {
    pub values: FxHashMap<String, String>,
}

/// A component instance of the deployed object (the root has an empty path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub path: Vec<Name>,
    pub ty: Def,
    pub kind: Kind,
    pub parent: Option<usize>,
    /// Components in declaration order: name and instance index.
    pub children: Vec<(Name, usize)>,
}

impl Instance {
    pub fn dotted(&self, param: &str) -> String {
        let mut dotted = String::new();
        for part in &self.path {
            dotted.push_str(part);
            dotted.push('.');
        }
        dotted.push_str(param);
        dotted
    }

    fn child(&self, name: &str) -> Option<usize> {
        self.children
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, i)| *i)
    }
}

/// Who gave a parameter its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// An assignment, run in the context of an instance.
    Assign { assign: AssignRef, context: usize },
    /// The containing VAN's `defaultroute`, passed to a component's VAN
    /// interface (reference §6).
    VanDefaultRoute { van: usize },
}

/// One parameter of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub instance: usize,
    pub name: Name,
    pub decl: ParamDecl,
    pub writer: Option<Writer>,
    pub value: Value,
}

/// A required parameter left empty, grouped by the parameter whose absence
/// causes it: `root` is the slot to set, `needed_by` the copies that need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingRequired {
    pub root: usize,
    pub needed_by: Vec<usize>,
}

/// A problem found while evaluating, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Parameters that get their values from each other in a cycle: their
    /// dotted names, and where each is assigned (first in source order
    /// first).
    ReferenceCycle {
        names: Vec<String>,
        places: Vec<Loc>,
    },
    /// A map value refers to a parameter with several values.
    MapValueNotScalar {
        param: String,
        values: usize,
        at: Loc,
    },
    /// `vanIF` names no interface it may name.
    BadVanif { problem: VanifProblem, at: Loc },
}

/// Why a `vanIF` is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VanifProblem {
    /// A VAN's `vanIF` names an interface, not one of a component's.
    NotOfAComponent { path: String },
    /// A VM's `vanIF` names none of its interfaces (`interfaces`).
    NotAnInterfaceOf {
        path: String,
        object: String,
        interfaces: Vec<String>,
    },
    /// A VAN's `vanIF` names no interface of its components.
    NotAComponentInterface { path: String, object: String },
    /// `vanIF` has several values.
    Several(usize),
}

impl Problem {
    fn at(&self) -> &Loc {
        match self {
            Problem::ReferenceCycle { places, .. } => &places[0],
            Problem::MapValueNotScalar { at, .. } | Problem::BadVanif { at, .. } => at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub def: Def,
    pub instances: Vec<Instance>,
    pub slots: Vec<Slot>,
    /// What the evaluation found wrong (reference cycles, maps over lists,
    /// bad `vanIF`s), each once; the rules of `checks/` word them.
    pub problems: Vec<Problem>,
    pub missing: Vec<MissingRequired>,
    /// For every empty sensitive slot, the empty sensitive slot nobody
    /// assigns that it comes from (itself, when it is that one): where the
    /// user must supply a value.
    pub sensitive_sources: FxHashMap<usize, usize>,
    /// For a VM appliance, its `vm` when that is one string: the value and
    /// where it is assigned (what the VM-description check reads).
    pub vm: Option<(String, Loc)>,
}

impl Evaluation {
    /// The slot of a dotted path relative to the deployed object.
    pub fn slot(&self, dotted: &str) -> Option<&Slot> {
        let (instance_path, name) = match dotted.rsplit_once('.') {
            Some((path, name)) => (path.split('.').collect::<Vec<_>>(), name),
            None => (Vec::new(), dotted),
        };
        self.slots.iter().find(|s| {
            let path = &self.instances[s.instance].path;
            &*s.name == name && path.iter().map(|p| &**p).eq(instance_path.iter().copied())
        })
    }

    pub fn dotted(&self, slot: &Slot) -> String {
        self.instances[slot.instance].dotted(&slot.name)
    }

    /// Where a slot's value was assigned, if anywhere.
    pub fn origin(&self, db: &dyn Db, slot: &Slot) -> Option<Loc> {
        origin(db, slot)
    }
}

/// Where a slot's value was assigned, if anywhere.
fn origin(db: &dyn Db, slot: &Slot) -> Option<Loc> {
    match &slot.writer {
        Some(Writer::Assign { assign, .. }) => {
            Some(Loc::in_object(&assign.owner, assign.item(db).range))
        }
        _ => None,
    }
}

/// The evaluation of `def` with nothing allocated yet: what `check` and
/// `eval` show.
pub fn evaluate<'db>(db: &'db dyn Db, def: &Def) -> &'db Arc<Evaluation> {
    evaluate_query(db, def.file, def.name.clone())
}

#[salsa::tracked(returns(ref))]
fn evaluate_query(db: &dyn Db, file: SourceFile, name: Name) -> Arc<Evaluation> {
    Arc::new(evaluate_with(
        db,
        &Def { file, name },
        &Allocations::default(),
    ))
}

/// The evaluation of `def` once the utility has allocated `allocations`.
pub fn evaluate_with(db: &dyn Db, def: &Def, allocations: &Allocations) -> Evaluation {
    let mut ev = Evaluator {
        db,
        allocations,
        instances: Vec::new(),
        slots: Vec::new(),
        instance_slots: Vec::new(),
        large_instances: FxHashMap::default(),
        problems: Vec::new(),
        seen_problems: FxHashSet::default(),
        done: Vec::new(),
    };
    ev.build_instances(def);
    ev.build_slots();
    ev.assign_writers();
    // vanIF decides which interface a VAN's defaultroute flows to.
    let vanifs: Vec<usize> = (0..ev.slots.len())
        .filter(|&s| &*ev.slots[s].name == "vanIF")
        .collect();
    ev.done = vec![false; ev.slots.len()];
    for s in vanifs {
        ev.compute(s);
    }
    ev.route_van_defaults();
    ev.done = vec![false; ev.slots.len()];
    for s in 0..ev.slots.len() {
        ev.compute(s);
    }
    ev.check_vanifs();
    let missing = ev.missing_required();
    let sensitive_sources = (0..ev.slots.len())
        .filter(|&s| ev.slots[s].decl.sensitive && ev.slots[s].value.is_empty())
        .map(|s| (s, ev.root_cause(s)))
        .collect();
    let vm = ev.vm_setting();
    Evaluation {
        def: def.clone(),
        instances: ev.instances,
        slots: ev.slots,
        problems: ev.problems,
        missing,
        sensitive_sources,
        vm,
    }
}

struct Evaluator<'a> {
    db: &'a dyn Db,
    allocations: &'a Allocations,
    instances: Vec<Instance>,
    slots: Vec<Slot>,
    /// Each instance's slots: they are contiguous, in declaration order.
    instance_slots: Vec<std::ops::Range<usize>>,
    /// Slots by name for instances with many (others are scanned).
    large_instances: FxHashMap<usize, FxHashMap<Name, usize>>,
    problems: Vec<Problem>,
    seen_problems: FxHashSet<(std::mem::Discriminant<Problem>, Loc)>,
    done: Vec<bool>,
}

impl Evaluator<'_> {
    /// Records a problem, once per kind and place.
    fn report(&mut self, problem: Problem) {
        let key = (std::mem::discriminant(&problem), problem.at().clone());
        if self.seen_problems.insert(key) {
            self.problems.push(problem);
        }
    }

    /// The root's `vm`, if the root is a VM appliance and `vm` is one
    /// assigned string.
    fn vm_setting(&self) -> Option<(String, Loc)> {
        if self.instances.first()?.kind != Kind::Vm {
            return None;
        }
        let slot = &self.slots[self.slot_of(0, "vm")?];
        match slot.value.elems.as_slice() {
            [Elem::Str(value)] => Some((value.clone(), origin(self.db, slot)?)),
            _ => None,
        }
    }

    fn build_instances(&mut self, root: &Def) {
        self.instances.push(Instance {
            path: Vec::new(),
            ty: root.clone(),
            kind: object_model(self.db, root).kind,
            parent: None,
            children: Vec::new(),
        });
        let mut next = 0;
        while next < self.instances.len() && self.instances.len() < MAX_INSTANCES {
            let model = object_model(self.db, &self.instances[next].ty).clone();
            for (name, comp) in model.components() {
                let Some(ty) = comp.ty.clone() else {
                    continue;
                };
                // A type that contains itself was reported by the checks.
                if self.ancestors_have_type(next, &ty) {
                    continue;
                }
                let mut path = self.instances[next].path.clone();
                path.push(name.clone());
                let index = self.instances.len();
                self.instances.push(Instance {
                    path,
                    kind: object_model(self.db, &ty).kind,
                    ty,
                    parent: Some(next),
                    children: Vec::new(),
                });
                self.instances[next].children.push((name.clone(), index));
            }
            next += 1;
        }
    }

    fn ancestors_have_type(&self, mut instance: usize, ty: &Def) -> bool {
        loop {
            if &self.instances[instance].ty == ty {
                return true;
            }
            match self.instances[instance].parent {
                Some(p) => instance = p,
                None => return false,
            }
        }
    }

    /// The slot of parameter `name` of `instance`.
    fn slot_of(&self, instance: usize, name: &str) -> Option<usize> {
        let range = self.instance_slots.get(instance)?;
        match self.large_instances.get(&instance) {
            Some(by_name) => by_name.get(name).copied(),
            None => range.clone().find(|&s| &*self.slots[s].name == name),
        }
    }

    fn build_slots(&mut self) {
        for (i, instance) in self.instances.iter().enumerate() {
            let model = object_model(self.db, &instance.ty);
            let first = self.slots.len();
            for (name, decl) in model.params() {
                self.slots.push(Slot {
                    instance: i,
                    name: name.clone(),
                    decl: decl.clone(),
                    writer: None,
                    value: Value::default(),
                });
            }
            let range = first..self.slots.len();
            if range.len() > MAX_SCANNED_SLOTS {
                let by_name = range.clone().map(|s| (self.slots[s].name.clone(), s));
                self.large_instances.insert(i, by_name.collect());
            }
            self.instance_slots.push(range);
        }
    }

    /// The instance a path of component names leads to from `from`.
    fn walk(&self, from: usize, path: &[Named]) -> Option<usize> {
        let mut at = from;
        for segment in path {
            at = self.instances[at].child(&segment.text)?;
        }
        Some(at)
    }

    /// The slot a dotted reference denotes from instance `from`.
    fn resolve(&self, from: usize, path: &[Named]) -> Option<usize> {
        let (last, components) = path.split_last()?;
        let instance = self.walk(from, components)?;
        self.slot_of(instance, &last.text)
    }

    fn assign_writers(&mut self) {
        // Deepest instances first, so that containing objects write last.
        let mut order: Vec<usize> = (0..self.instances.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.instances[i].path.len()));
        for context in order {
            let model = object_model(self.db, &self.instances[context].ty).clone();
            for assign in model.assigns() {
                let item = assign.item(self.db);
                if let Some(slot) = self.resolve(context, &item.target) {
                    self.slots[slot].writer = Some(Writer::Assign {
                        assign: assign.clone(),
                        context,
                    });
                }
            }
        }
    }

    /// The interface instance through which `instance` joins its VAN.
    fn van_interface(&self, instance: usize) -> Option<usize> {
        let slot = self.slot_of(instance, "vanIF")?;
        let strings = self.slots[slot].value.strings()?;
        let [path] = strings.as_slice() else {
            return None;
        };
        let target = self.walk(instance, &dotted_path(path))?;
        (self.instances[target].kind == Kind::Interface).then_some(target)
    }

    fn route_van_defaults(&mut self) {
        for van in 0..self.instances.len() {
            if self.instances[van].kind != Kind::Van {
                continue;
            }
            for (_, child) in self.instances[van].children.clone() {
                let Some(interface) = self.van_interface(child) else {
                    continue;
                };
                if let Some(slot) = self.slot_of(interface, "defaultroute") {
                    if self.slots[slot].writer.is_none() {
                        self.slots[slot].writer = Some(Writer::VanDefaultRoute { van });
                    }
                }
            }
        }
    }

    /// The slots a slot's value reads, with the reference's place.
    fn dependencies(&self, slot: usize) -> Vec<usize> {
        match &self.slots[slot].writer {
            None => Vec::new(),
            Some(Writer::VanDefaultRoute { van }) => {
                self.slot_of(*van, "defaultroute").into_iter().collect()
            }
            Some(Writer::Assign { assign, context }) => {
                let mut refs = Vec::new();
                for value in &assign.item(self.db).values {
                    value.refs(&mut refs);
                }
                refs.iter()
                    .filter_map(|(path, _)| self.resolve(*context, path))
                    .collect()
            }
        }
    }

    /// Computes a slot's value after its dependencies, without recursion;
    /// a dependency met again while still open is a reference cycle.
    fn compute(&mut self, start: usize) {
        if self.done[start] {
            return;
        }
        let mut open: FxHashMap<usize, usize> = FxHashMap::default(); // slot -> stack position
        let mut stack: Vec<(usize, Vec<usize>)> = vec![(start, self.dependencies(start))];
        open.insert(start, 0);
        while let Some((slot, deps)) = stack.last_mut() {
            let slot = *slot;
            if let Some(dep) = deps.pop() {
                if self.done[dep] {
                    continue;
                }
                if let Some(&position) = open.get(&dep) {
                    let cycle: Vec<usize> = stack[position..].iter().map(|(s, _)| *s).collect();
                    self.report_cycle(&cycle);
                    continue;
                }
                open.insert(dep, stack.len());
                let deps = self.dependencies(dep);
                stack.push((dep, deps));
                continue;
            }
            stack.pop();
            open.remove(&slot);
            let value = self.value_of(slot);
            self.slots[slot].value = value;
            self.done[slot] = true;
        }
    }

    fn report_cycle(&mut self, cycle: &[usize]) {
        // Start at the assignment first in source order, so that every
        // evaluation meeting this cycle words it alike.
        let key = |s: usize| match &self.slots[s].writer {
            Some(Writer::Assign { assign, .. }) => {
                Some(Loc::in_object(&assign.owner, assign.item(self.db).range).order_key(self.db))
            }
            _ => None,
        };
        let start = (0..cycle.len())
            .min_by_key(|&i| {
                let k = key(cycle[i]);
                (k.is_none(), k)
            })
            .unwrap_or(0);
        let cycle: Vec<usize> = cycle[start..]
            .iter()
            .chain(&cycle[..start])
            .copied()
            .collect();
        let names: Vec<String> = cycle
            .iter()
            .map(|&s| self.instances[self.slots[s].instance].dotted(&self.slots[s].name))
            .collect();
        let mut locs = Vec::new();
        for &s in &cycle {
            if let Some(Writer::Assign { assign, .. }) = &self.slots[s].writer {
                locs.push(Loc::in_object(&assign.owner, assign.item(self.db).range));
            }
        }
        if locs.is_empty() {
            return;
        }
        self.report(Problem::ReferenceCycle {
            names,
            places: locs,
        });
    }

    fn value_of(&mut self, slot: usize) -> Value {
        let sensitive = self.slots[slot].decl.sensitive;
        let instance = self.slots[slot].instance;
        match self.slots[slot].writer.clone() {
            None => {
                let name = &*self.slots[slot].name;
                let inst = &self.instances[instance];
                let elems = if inst.kind == Kind::Interface && UTILITY_ALLOCATED.contains(&name) {
                    match self.allocations.values.get(&inst.dotted(name)) {
                        Some(v) => vec![Elem::Str(v.clone())],
                        None => vec![Elem::Unknown],
                    }
                } else if sensitive {
                    // Supplied at deploy time, if at all.
                    match self.allocations.values.get(&inst.dotted(name)) {
                        Some(v) => vec![Elem::Str(v.clone())],
                        None => Vec::new(),
                    }
                } else if name == "name" {
                    let own = inst.path.last().unwrap_or(&inst.ty.name).to_string();
                    vec![Elem::Str(own)]
                } else {
                    Vec::new()
                };
                Value { elems, sensitive }
            }
            Some(Writer::VanDefaultRoute { van }) => {
                let mut value = self
                    .slot_of(van, "defaultroute")
                    .map(|s| self.slots[s].value.clone())
                    .unwrap_or_default();
                value.sensitive |= sensitive;
                value
            }
            Some(Writer::Assign { assign, context }) => {
                let item = assign.item(self.db);
                let mut value = Value {
                    elems: Vec::new(),
                    sensitive,
                };
                for expr in &item.values {
                    match expr {
                        Expr::Str { value: s, .. } => value.elems.push(Elem::Str(s.clone())),
                        Expr::Ref { path, .. } => {
                            if let Some(dep) = self.resolve(context, path) {
                                let v = &self.slots[dep].value;
                                value.sensitive |= v.sensitive;
                                value.elems.extend(v.elems.iter().cloned());
                            }
                        }
                        Expr::Map { .. } => {
                            let (elem, tainted) = self.encode_map(expr, context, &assign);
                            value.sensitive |= tainted;
                            value.elems.push(elem);
                        }
                    }
                }
                value
            }
        }
    }

    /// A map as one string (`a=b&c=d`, escaped so maps nest), or unknown.
    fn encode_map(&mut self, expr: &Expr, context: usize, assign: &AssignRef) -> (Elem, bool) {
        let Expr::Map { pairs, .. } = expr else {
            unreachable!("called on maps")
        };
        let mut parts = Vec::with_capacity(pairs.len());
        let mut tainted = false;
        for (key, value) in pairs {
            let text = match value {
                Expr::Str { value, .. } => value.clone(),
                Expr::Map { .. } => match self.encode_map(value, context, assign) {
                    (Elem::Str(s), t) => {
                        tainted |= t;
                        s
                    }
                    (Elem::Unknown, _) => return (Elem::Unknown, tainted),
                },
                Expr::Ref { path, range } => {
                    let Some(dep) = self.resolve(context, path) else {
                        parts.push(format!("{}=", escape(&key.text)));
                        continue;
                    };
                    let v = self.slots[dep].value.clone();
                    tainted |= v.sensitive;
                    if v.elems.len() > 1 {
                        let dotted =
                            self.instances[self.slots[dep].instance].dotted(&self.slots[dep].name);
                        self.report(Problem::MapValueNotScalar {
                            param: dotted,
                            values: v.elems.len(),
                            at: Loc::in_object(&assign.owner, *range),
                        });
                    }
                    match v.elems.first() {
                        None => String::new(),
                        Some(Elem::Str(s)) => s.clone(),
                        Some(Elem::Unknown) => return (Elem::Unknown, tainted),
                    }
                }
            };
            parts.push(format!("{}={}", escape(&key.text), escape(&text)));
        }
        (Elem::Str(parts.join("&")), tainted)
    }

    fn check_vanifs(&mut self) {
        for i in 0..self.instances.len() {
            let kind = self.instances[i].kind;
            if !matches!(kind, Kind::Vm | Kind::Van) {
                continue;
            }
            let Some(slot) = self.slot_of(i, "vanIF") else {
                continue;
            };
            let Some(strings) = self.slots[slot].value.strings() else {
                continue;
            };
            if strings.is_empty() {
                continue; // missing-required says it
            }
            let problem = match strings.as_slice() {
                [path] => {
                    let segments = dotted_path(path);
                    let target = self.walk(i, &segments);
                    let ok = target.is_some_and(|t| self.instances[t].kind == Kind::Interface);
                    // A component whose object is unknown (a failed import,
                    // an unresolved name) has no known interfaces: that
                    // error is reported where it starts, not again here.
                    let component_unknown = || {
                        segments.first().is_some_and(|first| {
                            let model = object_model(self.db, &self.instances[i].ty);
                            let untyped =
                                model.component(&first.text).is_some_and(|c| c.ty.is_none());
                            untyped
                                || self.instances[i].children.iter().any(|(n, c)| {
                                    **n == *first.text && self.instances[*c].kind == Kind::Unknown
                                })
                        })
                    };
                    if !ok && component_unknown() {
                        continue;
                    }
                    let path = path.clone();
                    if ok && kind == Kind::Van && segments.len() < 2 {
                        Some(VanifProblem::NotOfAComponent { path })
                    } else if ok {
                        None
                    } else if kind == Kind::Vm {
                        let interfaces = self.instances[i]
                            .children
                            .iter()
                            .filter(|(_, c)| self.instances[*c].kind == Kind::Interface)
                            .map(|(n, _)| n.to_string())
                            .collect();
                        Some(VanifProblem::NotAnInterfaceOf {
                            path,
                            object: self.instances[i].ty.name.to_string(),
                            interfaces,
                        })
                    } else {
                        Some(VanifProblem::NotAComponentInterface {
                            path,
                            object: self.instances[i].ty.name.to_string(),
                        })
                    }
                }
                _ => Some(VanifProblem::Several(strings.len())),
            };
            if let Some(problem) = problem {
                let at = match &self.slots[slot].writer {
                    Some(Writer::Assign { assign, .. }) => {
                        Loc::in_object(&assign.owner, assign.item(self.db).range)
                    }
                    _ => {
                        let decl = &self.slots[slot].decl;
                        Loc::in_object(&decl.owner, decl.var(self.db).name.range)
                    }
                };
                self.report(Problem::BadVanif { problem, at });
            }
        }
    }

    /// Required parameters left empty, grouped by root cause: a parameter
    /// empty only because it refers to another empty one is reported once,
    /// at that one.
    fn missing_required(&self) -> Vec<MissingRequired> {
        let mut groups: FxHashMap<usize, Vec<usize>> = FxHashMap::default();
        let mut order = Vec::new();
        for (s, slot) in self.slots.iter().enumerate() {
            let exempt = slot.decl.sensitive
                || (self.instances[slot.instance].kind == Kind::Interface
                    && UTILITY_ALLOCATED.contains(&&*slot.name));
            if !slot.decl.required || exempt || !slot.value.is_empty() {
                continue;
            }
            let root = self.root_cause(s);
            let group = groups.entry(root).or_default();
            if group.is_empty() {
                order.push(root);
            }
            if root != s {
                group.push(s);
            }
        }
        order
            .into_iter()
            .map(|root| MissingRequired {
                root,
                needed_by: groups.remove(&root).unwrap_or_default(),
            })
            .collect()
    }

    /// Follows an empty slot's references to the empty slot nobody set.
    fn root_cause(&self, mut slot: usize) -> usize {
        let mut seen = FxHashSet::default();
        while seen.insert(slot) {
            let next = self
                .dependencies(slot)
                .into_iter()
                .find(|&d| self.slots[d].value.is_empty());
            match next {
                Some(d) => slot = d,
                None => break,
            }
        }
        slot
    }
}

/// A `vanIF`-style string (`f.ethernet1`) as path segments.
fn dotted_path(text: &str) -> Vec<Named> {
    text.split('.')
        .map(|s| Named {
            text: s.into(),
            range: Default::default(),
        })
        .collect()
}

/// Escapes a map key or value: every byte that is not ASCII alphanumeric
/// becomes `%XX` (upper-case hex).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Reverses [`escape`]: every `%XX` becomes its byte (anything else stays
/// as it is).
pub fn unescape(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if let (b'%', Some(&h), Some(&l)) = (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            if let (Some(h), Some(l)) = (hex(h), hex(l)) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::{escape, unescape};

    #[test]
    fn escaping_nests() {
        assert_eq!(escape("x y"), "x%20y");
        assert_eq!(escape("a=x%20y"), "a%3Dx%2520y");
        assert_eq!(escape("é"), "%C3%A9");
    }

    #[test]
    fn unescaping_reverses_escaping() {
        for text in ["x y", "a=x%20y", "é", "ide0:1", ""] {
            assert_eq!(unescape(&escape(text)), text);
        }
        assert_eq!(unescape("100%"), "100%");
        assert_eq!(unescape("%zz%4"), "%zz%4");
    }
}
