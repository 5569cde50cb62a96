//! The diff: desired against state, as actions with reasons, ordered by the
//! provides/requires graph (spec §6). Starts, updates and resends wait for
//! the starts and updates of what they require; stops and removes wait for
//! the stops and removes of what requires them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;

use rustc_hash::FxHashMap;

use crate::alloc::Allocation;
use crate::model::{
    ComponentPath, DeploymentState, Desired, DesiredVm, ParamValue, Status, UtilityState,
};
use crate::plan::{
    Action, ActionKind, Basis, MissingSecret, MoveHow, ParamChange, Plan, Reason, Shown,
    FORMAT_VERSION,
};

/// What to plan.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only this component (or subtree) and what its actions wait for.
    pub target: Option<ComponentPath>,
    /// Components recorded running whose QEMU their host says is gone (or
    /// failed when the service restarted them): each is started again (the
    /// utility service's restart of a crash).
    pub crashed: std::collections::BTreeSet<ComponentPath>,
    /// Components a person moves to a host of their choosing (`cvl move`):
    /// the allocation placed them there ([`crate::allocate_pinned`]).
    pub pins: BTreeMap<ComponentPath, Pin>,
}

/// Where a person moves a component, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub host: String,
    /// Stop, copy and start (`--offline`), rather than live.
    pub offline: bool,
}

impl Options {
    /// The hosts the pins name, for [`crate::allocate_pinned`].
    pub fn pinned_hosts(&self) -> BTreeMap<ComponentPath, String> {
        self.pins
            .iter()
            .map(|(path, pin)| (path.clone(), pin.host.clone()))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// The actions wait on each other in a circle.
    Cycle(Vec<ComponentPath>),
    /// `--target` names nothing in the deployment.
    UnknownTarget {
        target: ComponentPath,
        known: Vec<ComponentPath>,
    },
    /// `cvl stop` of a deployment the state does not know.
    UnknownDeployment { name: String, known: Vec<String> },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::Cycle(paths) => {
                let names: Vec<String> = paths.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "the components wait for each other in a circle: {} -> {}",
                    names.join(" -> "),
                    names.first().map_or("", String::as_str)
                )
            }
            PlanError::UnknownTarget { target, known } => {
                let names: Vec<&str> = known.iter().map(|p| p.0.as_str()).collect();
                write!(
                    f,
                    "--target `{}` names no component of the deployment (it has: {})",
                    target.0,
                    names.join(", ")
                )
            }
            PlanError::UnknownDeployment { name, known } => write!(
                f,
                "the utility runs no deployment named `{name}` ({})",
                if known.is_empty() {
                    "it runs none".to_string()
                } else {
                    format!("it runs: {}", known.join(", "))
                }
            ),
        }
    }
}

impl std::error::Error for PlanError {}

/// Plans `desired` (allocated as `alloc`) against the utility's `state`.
/// Both move into the plan, which carries them to the executor.
pub fn plan(
    desired: Desired,
    alloc: Allocation,
    state: &UtilityState,
    options: &Options,
) -> Result<Plan, PlanError> {
    let empty = DeploymentState::default();
    let current = state.deployments.get(&desired.deployment).unwrap_or(&empty);
    let mut actions = Vec::new();
    for (path, want) in &desired.vms {
        let Some(have) = current.vms.get(path) else {
            actions.push(action(ActionKind::Start, path, Reason::New, Vec::new()));
            continue;
        };
        let changes = param_changes(&have.spec, want);
        let program = program_reason(&have.spec, want);
        let moved = alloc.vms.get(path) != Some(&have.alloc);
        if let Some(to) = alloc
            .vms
            .get(path)
            .map(|a| &a.host)
            .filter(|to| **to != have.alloc.host)
        {
            let from = have.alloc.host.clone();
            let source = state.hosts.iter().find(|h| h.name == from);
            let fenced = source.is_some_and(|h| h.fenced.is_some());
            let pin = options.pins.get(path);
            let why = if fenced {
                Reason::Recovered {
                    from,
                    to: to.clone(),
                }
            } else if pin.is_some() {
                Reason::MoveAsked {
                    from,
                    to: to.clone(),
                }
            } else {
                Reason::Moved {
                    from,
                    to: to.clone(),
                }
            };
            let wanted = match pin {
                Some(pin) if pin.offline => Err("asked offline (`cvl move --offline`)"),
                Some(_) => Ok("`cvl move` moves it running"),
                None if source.is_some_and(|h| h.drain_live) => Ok("the host is drained live"),
                None => {
                    Err("the host is drained offline (`cvl host drain --live` moves VMs running)")
                }
            };
            let how = (!fenced).then(|| {
                move_how(
                    wanted,
                    have,
                    alloc.vms.get(path),
                    program.is_some() || !changes.is_empty(),
                )
            });
            let mut a = action(ActionKind::Move, path, why, changes);
            a.from_host = Some(have.alloc.host.clone());
            a.how = how;
            actions.push(a);
            continue;
        }
        match (program, have.status) {
            (Some(reason), _) => actions.push(action(ActionKind::Update, path, reason, changes)),
            (None, Status::Running | Status::Failed)
                if options.crashed.contains(path) && !moved =>
            {
                actions.push(action(ActionKind::Start, path, Reason::Crashed, changes))
            }
            (None, Status::Running) if !changes.is_empty() && !want.agent && !moved => {
                let reason = Reason::ResendNeedsRestart {
                    component: path.clone(),
                    changes: changes.clone(),
                };
                actions.push(action(ActionKind::Update, path, reason, changes));
            }
            (None, Status::Running) if !changes.is_empty() => {
                let reason = Reason::ParamsChanged {
                    changes: changes.clone(),
                };
                let kind = if moved {
                    // A new host or network needs a restart to take effect.
                    ActionKind::Update
                } else {
                    ActionKind::Resend
                };
                actions.push(action(kind, path, reason, changes));
            }
            (None, Status::Running) if moved => actions.push(action(
                ActionKind::Update,
                path,
                Reason::ParamsChanged {
                    changes: Vec::new(),
                },
                changes,
            )),
            (None, Status::Running) => {}
            (None, status) => actions.push(action(
                ActionKind::Start,
                path,
                Reason::NotRunning { status },
                changes,
            )),
        }
    }
    for path in current.vms.keys() {
        if !desired.vms.contains_key(path) {
            actions.push(action(
                ActionKind::Remove,
                path,
                Reason::Removed,
                Vec::new(),
            ));
        }
    }
    let actions = order(actions, &desired.vms, current)?;
    let actions = match &options.target {
        None => actions,
        Some(target) => {
            let known = desired.vms.keys().chain(current.vms.keys());
            if !known.clone().any(|p| p.is_within(target)) {
                return Err(PlanError::UnknownTarget {
                    target: target.clone(),
                    known: desired.vms.keys().cloned().collect(),
                });
            }
            restrict(actions, |p| p.is_within(target))
        }
    };
    // What is removed keeps its recorded allocation: the executor needs
    // its host.
    let mut allocations = alloc.vms;
    for a in actions.iter().filter(|a| a.action == ActionKind::Remove) {
        if let Some(record) = current.vms.get(&a.component) {
            allocations.insert(a.component.clone(), record.alloc.clone());
        }
    }
    Ok(Plan {
        format_version: FORMAT_VERSION.to_string(),
        deployment: desired.deployment.clone(),
        basis: Basis {
            lineage: state.lineage.clone(),
            serial: state.serial,
            inputs_digest: desired.inputs_digest.clone(),
        },
        actions,
        missing_secrets: missing_secrets(&desired),
        allocations,
        vans: desired.vans,
        desired: desired.vms,
        source: None,
    })
}

/// Plans stopping a deployment, or one component and everything that
/// requires it (transitively), dependents first.
pub fn plan_stop(
    state: &UtilityState,
    deployment: &str,
    target: Option<&ComponentPath>,
) -> Result<Plan, PlanError> {
    let current =
        state
            .deployments
            .get(deployment)
            .ok_or_else(|| PlanError::UnknownDeployment {
                name: deployment.to_string(),
                known: state.deployments.keys().cloned().collect(),
            })?;
    let mut stopping: BTreeMap<ComponentPath, Reason> = BTreeMap::new();
    match target {
        None => {
            for path in current.vms.keys() {
                stopping.insert(path.clone(), Reason::StopRequested { because_of: None });
            }
        }
        Some(target) => {
            let roots: Vec<&ComponentPath> =
                current.vms.keys().filter(|p| p.is_within(target)).collect();
            if roots.is_empty() {
                return Err(PlanError::UnknownTarget {
                    target: target.clone(),
                    known: current.vms.keys().cloned().collect(),
                });
            }
            let mut queue: Vec<ComponentPath> = roots.into_iter().cloned().collect();
            for p in &queue {
                stopping.insert(p.clone(), Reason::StopRequested { because_of: None });
            }
            while let Some(p) = queue.pop() {
                let provides = &current.vms[&p].spec.provides;
                for (other, record) in &current.vms {
                    if !stopping.contains_key(other)
                        && record.spec.requires.iter().any(|s| provides.contains(s))
                    {
                        stopping.insert(
                            other.clone(),
                            Reason::StopRequested {
                                because_of: Some(p.clone()),
                            },
                        );
                        queue.push(other.clone());
                    }
                }
            }
        }
    }
    let actions: Vec<Action> = stopping
        .into_iter()
        .filter(|(p, _)| !matches!(current.vms[p].status, Status::Stopped))
        .map(|(p, reason)| action(ActionKind::Stop, &p, reason, Vec::new()))
        .collect();
    let desired: BTreeMap<ComponentPath, DesiredVm> = current
        .vms
        .iter()
        .map(|(p, r)| (p.clone(), r.spec.clone()))
        .collect();
    let actions = order(actions, &desired, current)?;
    Ok(Plan {
        format_version: FORMAT_VERSION.to_string(),
        deployment: deployment.to_string(),
        basis: Basis {
            lineage: state.lineage.clone(),
            serial: state.serial,
            inputs_digest: String::new(),
        },
        actions,
        allocations: current
            .vms
            .iter()
            .map(|(p, r)| (p.clone(), r.alloc.clone()))
            .collect(),
        vans: current.vans.clone(),
        desired,
        missing_secrets: Vec::new(),
        source: None,
    })
}

fn action(
    kind: ActionKind,
    path: &ComponentPath,
    why: Reason,
    changes: Vec<ParamChange>,
) -> Action {
    Action {
        action: kind,
        component: path.clone(),
        reason: why.to_string(),
        why,
        changes,
        after: Vec::new(),
        from_host: None,
        how: None,
    }
}

/// How a running VM's move goes: live when live is `wanted` (its `Ok`
/// says why: the host is drained live, or a person moves it) and only its
/// host changes (the same program, parameters and interfaces: a live move
/// carries the running guest as it is); offline otherwise, saying why.
fn move_how(
    wanted: Result<&str, &str>,
    have: &crate::model::VmRecord,
    to: Option<&crate::model::VmAlloc>,
    changes: bool,
) -> MoveHow {
    let offline = |because: &str| MoveHow {
        live: false,
        because: because.to_string(),
    };
    let because = match wanted {
        Ok(because) => because,
        Err(because) => return offline(because),
    };
    if have.status != Status::Running {
        return offline("it is not running");
    }
    if changes {
        return offline("its program or parameters change too, which needs a restart");
    }
    if to.is_some_and(|to| to.interfaces != have.alloc.interfaces) {
        return offline("its interfaces change too");
    }
    MoveHow {
        live: true,
        because: because.to_string(),
    }
}

/// Why the program must be swapped, if it must.
fn program_reason(have: &DesiredVm, want: &DesiredVm) -> Option<Reason> {
    let (a, b) = (&have.appliance, &want.appliance);
    if a.source != b.source || a.name != b.name {
        return Some(Reason::ApplianceReplaced {
            from: a.name.clone(),
            to: b.name.clone(),
        });
    }
    if a.version != b.version {
        return Some(Reason::VersionChanged {
            appliance: b.name.clone(),
            from: a.version,
            to: b.version,
            site: b.import_site.clone(),
        });
    }
    if a.digest != b.digest
        || have.memory_mib != want.memory_mib
        || have.data_disks != want.data_disks
    {
        return Some(Reason::ProgramChanged {
            appliance: b.name.clone(),
        });
    }
    None
}

/// The parameters whose value a guest would see change.
fn param_changes(have: &DesiredVm, want: &DesiredVm) -> Vec<ParamChange> {
    let mut out = Vec::new();
    if have.params == want.params
        && have.provides == want.provides
        && have.requires == want.requires
    {
        return out; // the common case, without building name lists
    }
    let names = have
        .params
        .keys()
        .chain(want.params.keys().filter(|k| !have.params.contains_key(*k)));
    let mut names: Vec<&String> = names.collect();
    names.sort();
    for name in names {
        let (before, after) = (have.params.get(name), want.params.get(name));
        let same = match (before, after) {
            (Some(a), Some(b)) => a.same_as(b),
            (None, None) => true,
            (Some(v), None) | (None, Some(v)) => {
                matches!(v, ParamValue::Plain { values } if values.is_empty())
            }
        };
        if !same {
            out.push(ParamChange::new(name, before, after));
        }
    }
    // `provides` and `requires` are parameters (spec §3); lowered desired
    // states carry them in `params` too, but the order depends on them.
    for (name, a, b) in [
        ("provides", &have.provides, &want.provides),
        ("requires", &have.requires, &want.requires),
    ] {
        if a != b && !out.iter().any(|c| c.param == name) {
            out.push(ParamChange {
                param: name.to_string(),
                before: Shown::Values(a.clone()),
                after: Shown::Values(b.clone()),
                fingerprints: None,
            });
        }
    }
    out
}

fn missing_secrets(desired: &Desired) -> Vec<MissingSecret> {
    let mut by_supply: BTreeMap<String, MissingSecret> = BTreeMap::new();
    for (path, vm) in &desired.vms {
        for (param, value) in &vm.params {
            if let ParamValue::Sensitive {
                fingerprint: None,
                supply,
            } = value
            {
                let entry = by_supply
                    .entry(supply.clone())
                    .or_insert_with(|| MissingSecret {
                        param: param.clone(),
                        supply: supply.clone(),
                        components: Vec::new(),
                    });
                entry.components.push(path.clone());
            }
        }
    }
    by_supply.into_values().collect()
}

/// Fills every action's `after` and sorts the actions into an order the
/// graph allows (stops first, then by path), refusing a cycle.
fn order(
    mut actions: Vec<Action>,
    desired: &BTreeMap<ComponentPath, DesiredVm>,
    current: &DeploymentState,
) -> Result<Vec<Action>, PlanError> {
    let index: FxHashMap<ComponentPath, usize> = actions
        .iter()
        .enumerate()
        .map(|(i, a)| (a.component.clone(), i))
        .collect();
    // Who provides and who requires each service: desired for what starts,
    // the state for what stops.
    let mut providers: FxHashMap<&str, Vec<&ComponentPath>> = FxHashMap::default();
    for (path, vm) in desired {
        for s in &vm.provides {
            providers.entry(s).or_default().push(path);
        }
    }
    let mut requirers: FxHashMap<&str, Vec<&ComponentPath>> = FxHashMap::default();
    for (path, record) in &current.vms {
        for s in &record.spec.requires {
            requirers.entry(s).or_default().push(path);
        }
    }
    let mut edges: Vec<(usize, usize)> = Vec::new(); // (before, after)
    for (i, a) in actions.iter().enumerate() {
        if a.action.is_stopping() {
            let Some(record) = current.vms.get(&a.component) else {
                continue;
            };
            for s in &record.spec.provides {
                for r in requirers.get(s.as_str()).into_iter().flatten() {
                    if let Some(&j) = index.get(*r) {
                        if j != i && actions[j].action.is_stopping() {
                            edges.push((j, i));
                        }
                    }
                }
            }
        } else {
            let Some(vm) = desired.get(&a.component) else {
                continue;
            };
            for s in &vm.requires {
                for p in providers.get(s.as_str()).into_iter().flatten() {
                    if let Some(&j) = index.get(*p) {
                        let restarts =
                            matches!(actions[j].action, ActionKind::Start | ActionKind::Update);
                        if j != i && restarts {
                            edges.push((j, i));
                        }
                    }
                }
            }
        }
    }
    edges.sort_unstable();
    edges.dedup();
    let n = actions.len();
    let mut indegree = vec![0usize; n];
    let mut out_edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(b, a) in &edges {
        indegree[a] += 1;
        out_edges[b].push(a);
        let before = actions[b].component.clone();
        actions[a].after.push(before);
    }
    for a in &mut actions {
        a.after.sort();
    }
    // Kahn's algorithm; among the ready, stops first, then by path.
    let key = |a: &Action| (!a.action.is_stopping(), a.component.clone());
    let mut ready: BinaryHeap<Reverse<((bool, ComponentPath), usize)>> = (0..n)
        .filter(|&i| indegree[i] == 0)
        .map(|i| Reverse((key(&actions[i]), i)))
        .collect();
    let mut sorted = Vec::with_capacity(n);
    while let Some(Reverse((_, i))) = ready.pop() {
        sorted.push(i);
        for &j in &out_edges[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push(Reverse((key(&actions[j]), j)));
            }
        }
    }
    if sorted.len() < n {
        let stuck: Vec<ComponentPath> = (0..n)
            .filter(|&i| indegree[i] > 0)
            .map(|i| actions[i].component.clone())
            .collect();
        return Err(PlanError::Cycle(stuck));
    }
    let mut slots: Vec<Option<Action>> = actions.into_iter().map(Some).collect();
    Ok(sorted
        .into_iter()
        .map(|i| slots[i].take().expect("each action once"))
        .collect())
}

/// The actions `keep` selects and, transitively, those they wait for.
fn restrict(actions: Vec<Action>, keep: impl Fn(&ComponentPath) -> bool) -> Vec<Action> {
    let by_path: FxHashMap<&ComponentPath, &Action> =
        actions.iter().map(|a| (&a.component, a)).collect();
    let mut wanted: rustc_hash::FxHashSet<ComponentPath> = Default::default();
    let mut stack: Vec<&ComponentPath> = actions
        .iter()
        .map(|a| &a.component)
        .filter(|p| keep(p))
        .collect();
    while let Some(p) = stack.pop() {
        if wanted.insert(p.clone()) {
            if let Some(a) = by_path.get(p) {
                stack.extend(a.after.iter());
            }
        }
    }
    actions
        .into_iter()
        .filter(|a| wanted.contains(&a.component))
        .collect()
}
