//! What deploying an object needs beyond evaluation: every `requires`
//! satisfied by some component VM appliance's `provides`, no dependency
//! cycle, and the start order itself (the planner's input; stop is the
//! reverse).

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::db::{Db, SourceFile};
use crate::diagnostics::Loc;
use crate::eval::{evaluate, Evaluation, Writer};
use crate::resolve::{Def, Kind, Name};

/// An edge: `before` must be running before `after` starts, for `service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub before: usize,
    pub after: usize,
    pub service: String,
}

/// The component VM appliances of a deployed object and their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOrder {
    /// Instances (indices into the evaluation's instances) that are VMs.
    pub vms: Vec<usize>,
    pub edges: Vec<Edge>,
    /// Layers: every VM of a layer can start once the previous layers run.
    /// Empty when there is a cycle.
    pub layers: Vec<Vec<usize>>,
    /// A requirement nobody provides: the VM and the service.
    pub unsatisfied: Vec<(usize, String)>,
    /// A dependency cycle, as instances in order.
    pub cycle: Option<Vec<usize>>,
}

fn strings_of(ev: &Evaluation, instance: usize, name: &str) -> Vec<String> {
    ev.slots
        .iter()
        .find(|s| s.instance == instance && &*s.name == name)
        .and_then(|s| s.value.strings())
        .unwrap_or_default()
}

/// The start order of deploying `def` (stop in reverse).
pub fn start_order<'db>(db: &'db dyn Db, def: &Def) -> &'db Arc<StartOrder> {
    start_order_query(db, def.file, def.name.clone())
}

#[salsa::tracked(returns(ref))]
fn start_order_query(db: &dyn Db, file: SourceFile, name: Name) -> Arc<StartOrder> {
    Arc::new(compute_start_order(evaluate(db, &Def { file, name })))
}

/// The start order of an evaluation (also for one with allocations).
pub fn compute_start_order(ev: &Evaluation) -> StartOrder {
    let vms: Vec<usize> = (0..ev.instances.len())
        .filter(|&i| ev.instances[i].kind == Kind::Vm)
        .collect();
    let mut providers: FxHashMap<String, Vec<usize>> = FxHashMap::default();
    for &vm in &vms {
        for service in strings_of(ev, vm, "provides") {
            providers.entry(service).or_default().push(vm);
        }
    }
    let mut edges = Vec::new();
    let mut unsatisfied = Vec::new();
    for &vm in &vms {
        for service in strings_of(ev, vm, "requires") {
            let others: Vec<usize> = providers
                .get(&service)
                .map(|p| p.iter().copied().filter(|&p| p != vm).collect())
                .unwrap_or_default();
            let provides_itself = providers.get(&service).is_some_and(|p| p.contains(&vm));
            if others.is_empty() && !provides_itself {
                unsatisfied.push((vm, service.clone()));
            }
            for before in others {
                edges.push(Edge {
                    before,
                    after: vm,
                    service: service.clone(),
                });
            }
        }
    }
    // Kahn's algorithm, layer by layer, in declaration order within a layer.
    let mut indegree: FxHashMap<usize, usize> = vms.iter().map(|&v| (v, 0)).collect();
    for e in &edges {
        *indegree.get_mut(&e.after).expect("edges join VMs") += 1;
    }
    let mut layers = Vec::new();
    let mut placed: FxHashSet<usize> = FxHashSet::default();
    loop {
        let layer: Vec<usize> = vms
            .iter()
            .copied()
            .filter(|v| !placed.contains(v) && indegree[v] == 0)
            .collect();
        if layer.is_empty() {
            break;
        }
        for &v in &layer {
            placed.insert(v);
            for e in edges.iter().filter(|e| e.before == v) {
                *indegree.get_mut(&e.after).expect("edges join VMs") -= 1;
            }
        }
        layers.push(layer);
    }
    let cycle = (placed.len() < vms.len()).then(|| {
        // Walk backwards along unplaced edges until a VM repeats.
        let mut at = *vms
            .iter()
            .find(|v| !placed.contains(v))
            .expect("some VM is unplaced");
        let mut path = vec![at];
        loop {
            let prev = edges
                .iter()
                .find(|e| e.after == at && !placed.contains(&e.before))
                .map(|e| e.before)
                .expect("an unplaced VM waits on another unplaced VM");
            if let Some(pos) = path.iter().position(|&p| p == prev) {
                let mut cycle = path[pos..].to_vec();
                cycle.reverse();
                break cycle;
            }
            path.push(prev);
            at = prev;
        }
    });
    StartOrder {
        vms,
        edges,
        layers: if cycle.is_some() { Vec::new() } else { layers },
        unsatisfied,
        cycle,
    }
}

/// Where an appliance states what it requires (for diagnostics).
pub(crate) fn requires_loc(db: &dyn Db, ev: &Evaluation, instance: usize) -> Loc {
    let slot = ev
        .slots
        .iter()
        .find(|s| s.instance == instance && &*s.name == "requires")
        .expect("every appliance has requires");
    match &slot.writer {
        Some(Writer::Assign { assign, .. }) => Loc::in_object(&assign.owner, assign.item(db).range),
        _ => Loc::in_object(&slot.decl.owner, slot.decl.var(db).name.range),
    }
}

/// An appliance as diagnostics name it: its path and its object.
pub(crate) fn label_of(ev: &Evaluation, instance: usize) -> String {
    let inst = &ev.instances[instance];
    if inst.path.is_empty() {
        format!("`{}`", inst.ty.name)
    } else {
        format!("`{}` ({})", inst.path.join("."), inst.ty.name)
    }
}
