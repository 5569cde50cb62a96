//! The walk: carries a plan's actions out over the hosts, each as soon as
//! the actions it waits for have finished, independent ones in parallel
//! (bounded). The state is written on the caller's thread, one transaction
//! per step: the intent before an action, its outcome after, so that after a
//! crash the state says what may be half done and the next plan finishes it.
//! A failed action skips what depends on it; independent work goes on.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cvl_planner::model::{Change, ComponentPath, MoveFigures, ParamValue};
use cvl_planner::plan::{Action, ActionKind, Plan, Reason};
use cvl_planner::record;

use crate::protocol::{HostErrorKind, Nic, ProgramSource, Request, Response, StartSpec, VmId};
use crate::staging::{Staging, WebFallback};
use crate::transport::{Connector, Links, LiveLimits, MigrateError};

/// What the caller prepares for each component: where its program comes
/// from, and its parameters on the wire (sensitive values included: kept in
/// memory, sent only inside host requests).
#[derive(Clone)]
pub struct Prepared {
    pub program: ProgramSource,
    /// The VM description's name (the `vm` parameter).
    pub description: String,
    pub params: String,
    /// The program's files as this machine has them, for hosts that cannot
    /// fetch them themselves (a `file://` repository or a folder here).
    pub staging: Option<std::sync::Arc<Staging>>,
    /// For a web repository: the files this machine downloads and sends
    /// when a host answers that it cannot reach the repository.
    pub web_fallback: Option<std::sync::Arc<WebFallback>>,
    /// A recovery's data (its host fenced): put on its new host from the
    /// newest backups before the walk (what was put back, for the history),
    /// or why it cannot be (then it is not started empty).
    pub recovered: Option<Result<String, String>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("program", &self.program)
            .field("description", &self.description)
            .field("params", &"<not shown: may hold sensitive values>")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub parallelism: usize,
    pub stop_timeout_secs: u64,
    pub ready_timeout_secs: u64,
    /// Components whose data disks go back to their newest snapshot with
    /// this prefix before they start (a rollback's data from before the
    /// update); an update of one of them takes no snapshot of its own.
    pub restore_data: BTreeMap<ComponentPath, String>,
    /// How many pre-update snapshots each data disk keeps.
    pub keep_snapshots: u32,
    /// Appliances of a fenced host a person lets start with empty data
    /// disks when no backup can give them theirs (`--accept-empty`).
    pub accept_empty: std::collections::BTreeSet<ComponentPath>,
    /// How long a live move may take and pause its guest.
    pub live: LiveLimits,
    /// A live move that does not finish within `live.timeout` is done
    /// offline instead (stopped, copied, started), saying so; without it,
    /// it fails and the VM runs where it was.
    pub offline_fallback: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            parallelism: 8,
            stop_timeout_secs: 180,
            ready_timeout_secs: 120,
            restore_data: BTreeMap::new(),
            keep_snapshots: 1,
            accept_empty: Default::default(),
            live: LiveLimits::default(),
            offline_fallback: false,
        }
    }
}

/// Progress, for the caller to draw.
#[derive(Debug, Clone)]
pub enum Event {
    Began {
        component: ComponentPath,
        action: ActionKind,
    },
    Finished {
        component: ComponentPath,
        action: ActionKind,
        outcome: Outcome,
        elapsed: Duration,
        /// A move that was done: how, and what it cost.
        moved: Option<MoveFigures>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done(String),
    Failed(Failure),
    /// Not run: something it waits for failed.
    Skipped(ComponentPath),
}

/// Why an action failed: what kind of failure, for callers that decide by
/// it (the service's health gate), and the host's words, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    /// Nothing of the VM changed: it runs where and as it did (a live move
    /// cancelled). The state keeps its record as it was.
    pub untouched: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The guest started but did not become ready within its gate (it
    /// stayed silent, said it failed, or powered off while booting): the
    /// host stopped it. The health gate's failure.
    NotReady,
    /// The host could not do it: QEMU would not start, a disk or file
    /// failed, the program could not be had.
    Host,
    /// The host could not be reached, or its conversation broke.
    Unreachable,
    /// The plan could not be carried out as written (a component it does
    /// not describe or allocate): a bug, or a plan from elsewhere.
    Plan,
}

impl Failure {
    fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
            untouched: false,
        }
    }

    /// A failure that left the VM as it was.
    fn untouched(mut self) -> Failure {
        self.untouched = true;
        self
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// How the apply went.
/// Milliseconds a host spent on one start, apart (see
/// [`Response::Started`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StartTiming {
    pub fetch_ms: u64,
    pub prepare_ms: u64,
    pub launch_ms: u64,
    pub boot_ms: u64,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub done: Vec<ComponentPath>,
    pub failed: Vec<(ComponentPath, Failure)>,
    pub skipped: Vec<ComponentPath>,
    /// Per started VM: where the time of its start went.
    pub timings: BTreeMap<ComponentPath, StartTiming>,
    /// Program files sent to hosts that lacked them: how many, how many bytes.
    pub sent: (u64, u64),
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty()
    }
}

/// The parameters of `vm` on the wire (spec §9): one `name=value` line per
/// list element, sorted by name, values escaped as in maps. Sensitive ones
/// from `secrets` (by parameter name), which only the caller's memory holds.
pub fn wire_params(
    params: &BTreeMap<String, ParamValue>,
    secrets: &BTreeMap<String, Vec<String>>,
) -> Result<String, String> {
    let mut out = String::new();
    for (name, value) in params {
        let values = match value {
            ParamValue::Plain { values } => values,
            ParamValue::Sensitive {
                fingerprint: None, ..
            } => continue,
            ParamValue::Sensitive { supply, .. } => secrets.get(name).ok_or_else(|| {
                format!("the sensitive value of {name} is not at hand: set {supply}")
            })?,
        };
        for v in values {
            out.push_str(name);
            out.push('=');
            out.push_str(&cvl_analysis::eval::escape(v));
            out.push('\n');
        }
    }
    Ok(out)
}

enum Step {
    Call(Request),
    /// On another host than the action's (a move's old host).
    CallOn(String, Request),
    /// A move's data disks, from the old host to the action's.
    Carry {
        from: String,
        vm: VmId,
        files: Vec<String>,
    },
    /// A live move: the VM's migration from the old host into the
    /// incoming start on the action's, within `limits`. When it is too
    /// slow and `fallback` holds an offline move's steps, those run
    /// instead of the rest.
    Migrate {
        from: String,
        vm: VmId,
        limits: LiveLimits,
        fallback: Option<Vec<Step>>,
    },
    /// A call on another host whose failure is said, not the action's (the
    /// old host's QEMU after a live move: the VM runs on the new host).
    Tidy(String, Request),
    /// Changes to the state, recorded before the next step runs (a live
    /// move falling back to an offline one records its intent first: the
    /// VM is about to stop where the state says it runs).
    Record(Vec<Change>),
    /// What was done for the action before the walk, for its detail.
    Said(String),
    /// A start, after sending the program's files where the host lacks
    /// them; with a web fallback, sent only if the host cannot fetch them.
    Start(
        Box<StartSpec>,
        Option<std::sync::Arc<Staging>>,
        Option<std::sync::Arc<WebFallback>>,
    ),
}

/// Runs `plan`. `record_changes` writes state changes (one transaction a
/// call); `events` draws progress. Both run on this thread. When every
/// action succeeded, the caller records [`record::finished`].
pub fn apply(
    plan: &Plan,
    prepared: &BTreeMap<ComponentPath, Prepared>,
    connector: &dyn Connector,
    record_changes: &mut dyn FnMut(&[Change]) -> Result<(), String>,
    events: &mut dyn FnMut(&Event),
    options: &Options,
) -> Result<Summary, String> {
    let n = plan.actions.len();
    let index: BTreeMap<&ComponentPath, usize> = plan
        .actions
        .iter()
        .enumerate()
        .map(|(i, a)| (&a.component, i))
        .collect();
    let mut waiting: Vec<usize> = vec![0; n];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, a) in plan.actions.iter().enumerate() {
        for dep in &a.after {
            if let Some(&j) = index.get(dep) {
                waiting[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    let mut ready: Vec<usize> = (0..n).rev().filter(|&i| waiting[i] == 0).collect();
    let mut summary = Summary::default();
    let mut skipped = vec![false; n];
    let mut running = 0;
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut finished = 0;
    let links = Links::new(connector);
    let links = &links;
    std::thread::scope(|scope| -> Result<(), String> {
        while finished < n {
            while running < options.parallelism.max(1) {
                let Some(i) = ready.pop() else { break };
                let action = &plan.actions[i];
                record_changes(&record::intent(plan, action))?;
                events(&Event::Began {
                    component: action.component.clone(),
                    action: action.action,
                });
                // What it cannot even describe fails it, not the apply.
                let steps = steps(plan, action, prepared, options)
                    .map_err(|e| Failure::new(FailureKind::Plan, e));
                let host = plan
                    .allocations
                    .get(&action.component)
                    .map(|a| a.host.clone())
                    .unwrap_or_default();
                let tx = tx.clone();
                running += 1;
                scope.spawn(move || {
                    let started = Instant::now();
                    // Changes a step asks for, recorded by this loop (one
                    // writer), before the step after it runs.
                    let record = |changes: Vec<Change>| -> Result<(), String> {
                        let (reply, recorded) = mpsc::channel();
                        tx.send(Msg::Record(changes, reply))
                            .map_err(|e| e.to_string())?;
                        recorded.recv().map_err(|e| e.to_string())?
                    };
                    let result = steps.and_then(|steps| run(links, &host, steps, &record));
                    let _ = tx.send(Msg::Done(i, result, started));
                });
            }
            let (i, outcome, started) = loop {
                match rx.recv().map_err(|e| e.to_string())? {
                    Msg::Record(changes, reply) => {
                        let _ = reply.send(record_changes(&changes));
                    }
                    Msg::Done(i, result, started) => break (i, result, started),
                }
            };
            running -= 1;
            finished += 1;
            let action = &plan.actions[i];
            let mut moved = None;
            let outcome = match outcome {
                Ok(Ran {
                    detail,
                    timing,
                    moved: figures,
                }) => {
                    moved = figures;
                    record_changes(&record::applied(plan, action))?;
                    summary.done.push(action.component.clone());
                    if let Some(t) = timing {
                        summary.timings.insert(action.component.clone(), t);
                    }
                    for &d in &dependents[i] {
                        waiting[d] -= 1;
                        if waiting[d] == 0 && !skipped[d] {
                            ready.push(d);
                        }
                    }
                    Outcome::Done(detail)
                }
                Err(failure) => {
                    if !failure.untouched {
                        record_changes(&record::failed(plan, action))?;
                    }
                    summary
                        .failed
                        .push((action.component.clone(), failure.clone()));
                    // Everything that waits on it, transitively, is skipped.
                    let mut stack = dependents[i].clone();
                    while let Some(d) = stack.pop() {
                        if !skipped[d] {
                            skipped[d] = true;
                            finished += 1;
                            summary.skipped.push(plan.actions[d].component.clone());
                            events(&Event::Finished {
                                component: plan.actions[d].component.clone(),
                                action: plan.actions[d].action,
                                outcome: Outcome::Skipped(action.component.clone()),
                                elapsed: Duration::ZERO,
                                moved: None,
                            });
                            stack.extend(dependents[d].iter().copied());
                        }
                    }
                    Outcome::Failed(failure)
                }
            };
            events(&Event::Finished {
                component: action.component.clone(),
                action: action.action,
                outcome,
                elapsed: started.elapsed(),
                moved,
            });
        }
        Ok(())
    })?;
    summary.sent = links.sent();
    Ok(summary)
}

/// The host requests one action takes.
fn steps(
    plan: &Plan,
    action: &Action,
    prepared: &BTreeMap<ComponentPath, Prepared>,
    options: &Options,
) -> Result<Vec<Step>, String> {
    let vm = VmId {
        deployment: plan.deployment.clone(),
        path: action.component.0.clone(),
    };
    let stop = Request::Stop {
        vm: vm.clone(),
        timeout_secs: options.stop_timeout_secs,
    };
    // An update keeps the data as it was (a snapshot) unless this walk
    // puts it back (a rollback).
    let restore = options.restore_data.get(&action.component).cloned();
    let snapshot = (action.action == ActionKind::Update).then(|| {
        let from = match &action.why {
            Reason::VersionChanged { from, .. } => *from,
            _ => None,
        };
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        crate::protocol::snapshot_name(from, unix)
    });
    let start = |fresh: bool, incoming: bool| -> Result<Step, String> {
        let desired = plan
            .desired
            .get(&action.component)
            .ok_or_else(|| format!("the plan has no description of {}", action.component))?;
        let alloc = plan
            .allocations
            .get(&action.component)
            .ok_or_else(|| format!("the plan allocates nothing to {}", action.component))?;
        let prep = prepared
            .get(&action.component)
            .ok_or_else(|| format!("{} was not prepared", action.component))?;
        let nics = alloc
            .interfaces
            .iter()
            .map(|(name, i)| Nic {
                name: name.clone(),
                mac: i.mac.clone(),
                network: i.network,
                public: i.network.is_none() && i.ip.is_some(),
                ip: i.ip.clone().filter(|_| i.network.is_none()),
            })
            .collect();
        Ok(Step::Start(
            Box::new(StartSpec {
                vm: vm.clone(),
                program: prep.program.clone(),
                description: prep.description.clone(),
                memory_mib: desired.memory_mib,
                nics,
                data_disks: desired
                    .data_disks
                    .iter()
                    .map(|d| (d.device.clone(), d.size.clone()))
                    .collect(),
                params: prep.params.clone(),
                fresh_program: fresh,
                ready_timeout_secs: options.ready_timeout_secs,
                adopt: Vec::new(),
                expect_digest: desired
                    .appliance
                    .version
                    .map(|_| desired.appliance.digest.clone()),
                snapshot_data: snapshot.clone().filter(|_| restore.is_none()),
                restore_data: restore.clone(),
                keep_snapshots: options.keep_snapshots.max(1),
                incoming,
                accel: None,
            }),
            prep.staging.clone(),
            prep.web_fallback.clone(),
        ))
    };
    Ok(match action.action {
        ActionKind::Start => vec![start(false, false)?],
        ActionKind::Update => vec![Step::Call(stop), start(true, false)?],
        ActionKind::Resend => {
            let prep = prepared
                .get(&action.component)
                .ok_or_else(|| format!("{} was not prepared", action.component))?;
            vec![Step::Call(Request::Resend {
                vm,
                params: prep.params.clone(),
            })]
        }
        ActionKind::Stop => vec![Step::Call(stop)],
        ActionKind::Remove => vec![Step::Call(stop), Step::Call(Request::Attic { vm })],
        // The old host is fenced (off): nothing to stop or carry; the data
        // was restored on the new host from its backups before the walk.
        ActionKind::Move if matches!(action.why, Reason::Recovered { .. }) => {
            let restored = prepared
                .get(&action.component)
                .and_then(|p| p.recovered.clone())
                .unwrap_or_else(|| Err("its data was not restored".to_string()))?;
            vec![Step::Said(restored), start(true, false)?]
        }
        // Live: started on the new host waiting for it, migrated there
        // while it runs, then the old host's QEMU and folder discarded.
        ActionKind::Move if action.how.as_ref().is_some_and(|h| h.live) => {
            let from = from_host(action)?;
            vec![
                start(true, true)?,
                Step::Migrate {
                    from: from.clone(),
                    vm: vm.clone(),
                    limits: options.live,
                    fallback: options
                        .offline_fallback
                        .then(|| {
                            let mut offline = action.clone();
                            offline.how = None;
                            let intent = Step::Record(record::intent(plan, &offline));
                            offline_move(plan, action, &vm, stop.clone(), start(true, false))
                                .map(|steps| std::iter::once(intent).chain(steps).collect())
                        })
                        .transpose()?,
                },
                Step::Tidy(from, Request::Discard { vm }),
            ]
        }
        ActionKind::Move => offline_move(plan, action, &vm, stop, start(true, false))?,
    })
}

/// The host a move leaves.
fn from_host(action: &Action) -> Result<String, String> {
    action
        .from_host
        .clone()
        .ok_or_else(|| format!("the move of {} names no host to leave", action.component))
}

/// An offline move's steps: stopped on the old host, its data disks
/// carried over, started on the new one, the old folder to the attic.
fn offline_move(
    plan: &Plan,
    action: &Action,
    vm: &VmId,
    stop: Request,
    start: Result<Step, String>,
) -> Result<Vec<Step>, String> {
    let from = from_host(action)?;
    let files = plan
        .desired
        .get(&action.component)
        .map(|d| {
            d.data_disks
                .iter()
                .map(|disk| crate::protocol::data_disk_file(&disk.device))
                .collect()
        })
        .unwrap_or_default();
    Ok(vec![
        Step::CallOn(from.clone(), stop),
        Step::Carry {
            from: from.clone(),
            vm: vm.clone(),
            files,
        },
        start?,
        Step::CallOn(from, Request::Attic { vm: vm.clone() }),
    ])
}

/// What an action's steps did: its detail for people, where a start's
/// time went, and a move's figures.
struct Ran {
    detail: String,
    timing: Option<StartTiming>,
    moved: Option<MoveFigures>,
}

type StepResult = Result<Ran, Failure>;

/// What an action's thread tells the apply's loop.
enum Msg {
    /// Record these changes and answer whether they were.
    Record(Vec<Change>, mpsc::Sender<Result<(), String>>),
    /// The action `.0` finished, begun at `.2`.
    Done(usize, StepResult, Instant),
}

/// A host request's answer; a conversation that broke is `Unreachable`.
fn call(links: &Links, host: &str, request: &Request) -> Result<Response, Failure> {
    links
        .call(host, request)
        .map_err(|e| Failure::new(FailureKind::Unreachable, e))
}

fn run(
    links: &Links,
    host: &str,
    steps: Vec<Step>,
    record: &dyn Fn(Vec<Change>) -> Result<(), String>,
) -> StepResult {
    let unreachable = |e: String| Failure::new(FailureKind::Unreachable, e);
    let began = Instant::now();
    let mut detail = Vec::new();
    let mut timing = None;
    let mut moved_how: Option<MoveFigures> = None;
    let mut adopt = Vec::new();
    // The start waits for a migration: no boot to time.
    let mut incoming_start = false;
    let mut steps = std::collections::VecDeque::from(steps);
    while let Some(step) = steps.pop_front() {
        let response = match step {
            Step::Call(request) => call(links, host, &request)?,
            Step::CallOn(other, request) => call(links, &other, &request)?,
            Step::Tidy(other, request) => {
                match call(links, &other, &request) {
                    Ok(Response::Error { message, .. }) => {
                        detail.push(format!("{other} could not tidy up: {message}"))
                    }
                    Err(e) => detail.push(format!("{other} could not tidy up: {e}")),
                    Ok(_) => {}
                }
                continue;
            }
            Step::Record(changes) => {
                record(changes).map_err(|e| {
                    Failure::new(
                        FailureKind::Host,
                        format!("cannot record in the state before going on: {e}"),
                    )
                })?;
                continue;
            }
            Step::Said(said) => {
                detail.push(said);
                continue;
            }
            Step::Migrate {
                from,
                vm,
                limits,
                fallback,
            } => {
                let moved = match links.migrate(&from, host, &vm, limits) {
                    Ok(moved) => moved,
                    Err(MigrateError::TooSlow(e)) if fallback.is_some() => {
                        detail.push(format!(
                            "{e}; so moved offline instead (--offline-fallback)"
                        ));
                        steps = fallback.unwrap_or_default().into();
                        continue;
                    }
                    Err(e) => {
                        return Err(Failure::new(
                            FailureKind::Host,
                            format!("{e}; it still runs on {from}, and {host} keeps nothing of it"),
                        )
                        .untouched())
                    }
                };
                moved_how = Some(MoveFigures {
                    from: from.clone(),
                    to: host.to_string(),
                    live: true,
                    millis: 0,
                    bytes: Some(moved.relayed),
                    downtime_ms: moved.downtime_ms,
                });
                detail.push(format!(
                    "moved live from {from}: {} MB in {:.1} s, the guest paused {}",
                    moved.relayed / 1_000_000,
                    moved.seconds,
                    moved
                        .downtime_ms
                        .map_or("(QEMU did not say how long)".to_string(), |ms| format!(
                            "{ms} ms (QEMU's figure)"
                        ))
                ));
                if let Some(why) = moved.unrouted {
                    detail.push(format!("its public addresses still lead to {from}: {why}"));
                }
                continue;
            }
            Step::Carry { from, vm, files } => {
                adopt = links
                    .carry(&from, host, &vm, &files)
                    .map_err(|e| Failure::new(FailureKind::Host, e))?;
                detail.push(format!("{} data disk(s) carried from {from}", adopt.len()));
                moved_how = Some(MoveFigures {
                    from,
                    to: host.to_string(),
                    live: false,
                    millis: 0,
                    bytes: None,
                    downtime_ms: None,
                });
                continue;
            }
            Step::Start(mut spec, staging, fallback) => {
                if let Some(staging) = staging {
                    if let Some(program) = links.stage(host, &staging).map_err(unreachable)? {
                        spec.program = program;
                    }
                }
                spec.adopt = std::mem::take(&mut adopt);
                let incoming = spec.incoming;
                incoming_start = incoming;
                if incoming {
                    // It must run here on the accelerator it runs on there.
                    let from = steps.iter().find_map(|s| match s {
                        Step::Migrate { from, .. } => Some(from.clone()),
                        _ => None,
                    });
                    if let Some(from) = from {
                        spec.accel = links.status_of(&from, &spec.vm).ok().and_then(|v| v.accel);
                    }
                }
                let request = Request::Start(spec.clone());
                let mut response = call(links, host, &request).map_err(|e| {
                    if incoming {
                        e.untouched()
                    } else {
                        e
                    }
                })?;
                if incoming && matches!(response, Response::Error { .. }) {
                    // Nothing of a live move that could not begin stays on
                    // the new host.
                    let _ = call(
                        links,
                        host,
                        &Request::Discard {
                            vm: spec.vm.clone(),
                        },
                    );
                }
                if let (Some(fallback), Response::Error { kind, message }) = (&fallback, &response)
                {
                    if *kind == HostErrorKind::Unreachable {
                        // The host cannot reach the repository; this machine
                        // can (it read the CVL from it): send the files.
                        let staging = fallback.staging().map_err(|e| {
                            Failure::new(
                                FailureKind::Host,
                                format!(
                                    "{message}; and this machine could not fetch it either: {e}"
                                ),
                            )
                        })?;
                        if let Some(program) = links.stage(host, &staging).map_err(unreachable)? {
                            spec.program = program;
                        }
                        detail.push(format!(
                            "{host} cannot reach the repository: its files were sent over SSH"
                        ));
                        response = call(links, host, &Request::Start(spec))?;
                    }
                }
                response
            }
        };
        match response {
            Response::Error { kind, message } => {
                let kind = match kind {
                    HostErrorKind::Timeout => FailureKind::NotReady,
                    HostErrorKind::BadRequest => FailureKind::Plan,
                    HostErrorKind::Failed | HostErrorKind::Unreachable => FailureKind::Host,
                };
                let failure = Failure::new(kind, message);
                // A live move's new host could not begin: the VM runs on.
                return Err(if incoming_start {
                    failure.untouched()
                } else {
                    failure
                });
            }
            Response::Started {
                pid,
                already,
                accel,
                fetch_ms,
                prepare_ms,
                launch_ms,
                boot_ms,
                data,
            } => {
                if incoming_start {
                    detail.push(format!("waiting on {host} (pid {pid}, {accel})"));
                    continue;
                }
                if !data.is_empty() {
                    detail.push(format!("data disks {data}"));
                }
                timing = Some(StartTiming {
                    fetch_ms,
                    prepare_ms,
                    launch_ms,
                    boot_ms,
                });
                detail.push(if already {
                    format!("already running (pid {pid})")
                } else {
                    format!(
                        "started (pid {pid}, {accel}, ready after {:.1} s)",
                        boot_ms as f64 / 1e3
                    )
                });
            }
            Response::Stopped { how } => detail.push(format!("stopped ({how})")),
            Response::Resent => detail.push("parameters resent, reload hook ran".to_string()),
            Response::Moved { to } if to.is_empty() => detail.push("nothing to move".to_string()),
            Response::Moved { to } => detail.push(format!("moved to {to}")),
            Response::Discarded => {}
            other => {
                return Err(Failure::new(
                    FailureKind::Host,
                    format!("unexpected answer from the host: {other:?}"),
                ))
            }
        }
    }
    if let Some(m) = &mut moved_how {
        m.millis = began.elapsed().as_millis() as u64;
    }
    Ok(Ran {
        detail: detail.join("; "),
        timing,
        moved: moved_how,
    })
}
