//! What the utility service does by itself, as pure functions of a plan,
//! the deployment as recorded, a policy, what the service knows of its own
//! sensitive values, and the clock: which actions it carries out (updates
//! and resends of running appliances) and which wait for a person (starts,
//! stops, removals, moves; anything that would start an appliance a person
//! stopped; anything that would put back a sensitive value a person
//! changed), whether the policy lets it act now and when it will, which
//! running appliances violate the blacklist, and how long a failing
//! repository is left alone. The service's loop (`cvl-service`) only wires
//! these to the planner, the executor and the state.

use std::collections::BTreeMap;

use cvl_planner::model::{
    ComponentPath, DeploymentState, ParamValue, Policy, Status, UtilityState,
};
use cvl_planner::plan::{ActionKind, Plan, Reason};
use cvl_repo::blacklist::Blacklist;

/// What the service does with a plan made from the newest allowed versions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Indices into the plan's actions it carries out, in the plan's order
    /// (dependencies first): updates and resends of running appliances,
    /// and starts that finish what an interrupted start began.
    pub act: Vec<usize>,
    /// Indices of the actions that wait for a person, and why.
    pub pending: Vec<(usize, Wait)>,
    /// Why the service does not act now although there is work (the
    /// policy), when it does not.
    pub held: Option<String>,
    /// Indices of the actions the policy holds (it would carry them out
    /// otherwise); `act` then holds only restarts of crashed appliances,
    /// which no window holds.
    pub held_actions: Vec<usize>,
}

/// Why an action waits for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// Starts, stops, removals and moves are a person's to do.
    Kind(ActionKind),
    /// The appliance is recorded stopped (or stopping): a person stopped it
    /// (`cvl stop`), and only a person starts it again, whatever the action
    /// (an update or a resend would start it).
    Stopped(Status),
    /// A crashed appliance, whose deployment's policy says restarts are off.
    RestartOff,
    /// An update to a version from a repository its publisher did not sign
    /// (the URL its import writes), which the deployment's policy does not
    /// allow the service to take by itself.
    Unsigned(String),
    /// Sensitive values the service would send differ from those a person
    /// applied, and the service's own source did not change them since it
    /// last obtained them: sending them would undo the person's change
    /// (a rotated password put back).
    AppliedByOthers(Vec<String>),
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wait::Kind(kind) => write!(f, "a {} is a person's to do", kind.as_str()),
            Wait::Unsigned(url) => write!(
                f,
                "{url} is not signed, and the service installs software only from signed \
                 repositories (`cvl policy set DEPLOYMENT --allow-unsigned on` to take it anyway)"
            ),
            Wait::RestartOff => f.write_str(
                "it crashed, and the deployment's policy says restarts are off (`cvl policy \
                 set DEPLOYMENT --restart on`)",
            ),
            Wait::Stopped(status) => write!(
                f,
                "it is recorded {}: a person stopped it, and only a person starts it again",
                status.as_str()
            ),
            Wait::AppliedByOthers(params) => write!(
                f,
                "the service's value of {} differs from the one applied, and the service's own \
                 source did not change it: not resent",
                params.join(", ")
            ),
        }
    }
}

/// Whether the service may carry out `kind` by itself at all.
pub fn automatic(kind: ActionKind) -> bool {
    matches!(kind, ActionKind::Update | ActionKind::Resend)
}

/// What the service knew of each sensitive value when it last planned a
/// deployment: (component, parameter) to the fingerprints of the value its
/// own source gave (its environment, or the user agent it reads) and of
/// the value applied then.
pub type Seen = BTreeMap<(ComponentPath, String), SeenValue>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenValue {
    pub ours: String,
    pub applied: String,
}

/// A sensitive value the service would send that differs from the one
/// recorded as applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensitiveDifference {
    pub component: ComponentPath,
    pub param: String,
    /// The fingerprint the service's source gives now.
    pub ours: String,
    /// The fingerprint of what runs.
    pub applied: String,
    /// The service's own source changed the value since the service last
    /// planned, and nobody applied another value since: the change is the
    /// service's to send.
    pub ours_changed: bool,
}

/// Every sensitive value of `plan` (the service's values) that differs
/// from what `recorded` says runs, and whether each is the service's own
/// change; and what the service knows after this planning (to pass next
/// time). A difference is the service's only when its source changed the
/// value since it last planned while what runs stayed as it was: a value
/// the service has never seen (it just started), or one applied by anyone
/// since, is a person's, and is never put back.
pub fn sensitive_differences(
    plan: &Plan,
    recorded: Option<&DeploymentState>,
    seen: &Seen,
) -> (Vec<SensitiveDifference>, Seen) {
    let mut out = Vec::new();
    let mut next = Seen::new();
    let Some(recorded) = recorded else {
        return (out, next);
    };
    for (component, desired) in &plan.desired {
        let Some(vm) = recorded.vms.get(component) else {
            continue;
        };
        for (param, value) in &desired.params {
            let ParamValue::Sensitive {
                fingerprint: Some(ours),
                ..
            } = value
            else {
                continue;
            };
            let Some(ParamValue::Sensitive {
                fingerprint: Some(applied),
                ..
            }) = vm.spec.params.get(param)
            else {
                continue;
            };
            let key = (component.clone(), param.clone());
            let now = SeenValue {
                ours: ours.clone(),
                applied: applied.clone(),
            };
            if ours == applied {
                next.insert(key, now);
                continue;
            }
            let before = seen.get(&key);
            let ours_changed = before.is_some_and(|b| b.applied == *applied && b.ours != *ours);
            // The service's own change is remembered as not yet sent, so
            // that it is still its own next time (a held update, a busy lock).
            next.insert(
                key,
                match before {
                    Some(b) if ours_changed => b.clone(),
                    _ => now,
                },
            );
            out.push(SensitiveDifference {
                component: component.clone(),
                param: param.clone(),
                ours: ours.clone(),
                applied: applied.clone(),
                ours_changed,
            });
        }
    }
    (out, next)
}

/// What [`decide`] weighs besides the plan.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The deployment as the state has it.
    pub recorded: Option<&'a DeploymentState>,
    /// What [`sensitive_differences`] found.
    pub differences: &'a [SensitiveDifference],
    pub policy: &'a Policy,
    /// UTC minutes since midnight.
    pub minute: u16,
    /// Repositories nobody signed that the plan's appliances come from (by
    /// the URL imports write).
    pub unsigned: &'a std::collections::BTreeSet<String>,
}

/// Splits `plan` into what the service carries out now, what waits for a
/// person (and why), and whether the policy holds it back now.
pub fn decide(plan: &Plan, cx: &Context) -> Decision {
    let Context {
        recorded,
        differences,
        policy,
        minute,
        unsigned,
    } = *cx;
    let mut decision = Decision::default();
    for (i, action) in plan.actions.iter().enumerate() {
        let status = recorded
            .and_then(|d| d.vms.get(&action.component))
            .map(|vm| vm.status);
        let others: Vec<String> = differences
            .iter()
            .filter(|d| d.component == action.component && !d.ours_changed)
            .map(|d| d.param.clone())
            .collect();
        let crashed = action.why == Reason::Crashed;
        // Its host fenced: started elsewhere as a crashed one is restarted.
        let recovering = matches!(action.why, Reason::Recovered { .. });
        let new_program = matches!(
            action.why,
            Reason::VersionChanged { .. }
                | Reason::ProgramChanged { .. }
                | Reason::ApplianceReplaced { .. }
        );
        let from_unsigned = plan
            .desired
            .get(&action.component)
            .map(|d| d.appliance.source.clone())
            .filter(|source| new_program && unsigned.contains(source));
        let wait = if (crashed || recovering) && !policy.restart {
            Some(Wait::RestartOff)
        } else if finishes_a_start(action) || crashed {
            None
        } else if let Some(status @ (Status::Stopped | Status::Stopping)) = status {
            Some(Wait::Stopped(status))
        } else if recovering {
            None
        } else if !automatic(action.action) {
            Some(Wait::Kind(action.action))
        } else if !others.is_empty() {
            Some(Wait::AppliedByOthers(others))
        } else {
            from_unsigned
                .filter(|_| !policy.allow_unsigned)
                .map(Wait::Unsigned)
        };
        match wait {
            Some(wait) => decision.pending.push((i, wait)),
            None => decision.act.push(i),
        }
    }
    // Restarting what crashed, or recovering what a fenced host ran, is
    // never held by the policy's window: it runs now, and only what else
    // there is waits.
    let urgent = |i: usize| {
        matches!(
            plan.actions[i].why,
            Reason::Crashed | Reason::Recovered { .. }
        )
    };
    let held_work = decision.act.iter().any(|&i| !urgent(i));
    if held_work {
        decision.held = held(policy, minute);
        if decision.held.is_some() {
            let (now, later): (Vec<usize>, Vec<usize>) =
                decision.act.iter().partition(|&&i| urgent(i));
            decision.act = now;
            decision.held_actions = later;
        }
    }
    decision
}

/// How often the service restarts a crashed appliance before it gives up
/// on it: `burst` restarts within `window` seconds (systemd's
/// `StartLimitBurst`/`StartLimitIntervalSec`, whose burst counts the first
/// start too: the default, 4 restarts in 60 s, is its five starts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartLimit {
    pub burst: usize,
    /// Seconds.
    pub window: u64,
}

impl Default for RestartLimit {
    fn default() -> RestartLimit {
        RestartLimit {
            burst: 4,
            window: 60,
        }
    }
}

/// What to do with an appliance that crashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Start it again now.
    Now,
    /// Not before `n` more seconds: each restart in the window doubles the
    /// wait (1 s, 2 s, 4 s).
    After(u64),
    /// It crashed too often: record it failed, report it, and leave it to
    /// a person.
    GiveUp,
}

/// Whether to restart an appliance that crashed at `now` (Unix seconds),
/// given when the service restarted it before (Unix seconds, any order).
pub fn restart(before: &[u64], now: u64, limit: RestartLimit) -> Restart {
    let recent: Vec<u64> = before
        .iter()
        .copied()
        .filter(|&t| t + limit.window > now)
        .collect();
    if recent.len() >= limit.burst {
        return Restart::GiveUp;
    }
    let Some(&last) = recent.iter().max() else {
        return Restart::Now;
    };
    let wait = 1u64 << (recent.len() - 1).min(5);
    if now >= last + wait {
        Restart::Now
    } else {
        Restart::After(last + wait - now)
    }
}

/// A start that finishes what an interrupted start or update began (the
/// VM recorded `starting`: the one who began it meant it to run), which
/// the service may do. One recorded `stopping` was being stopped: that is
/// never finished with a start.
pub fn finishes_a_start(action: &cvl_planner::plan::Action) -> bool {
    action.action == ActionKind::Start
        && matches!(
            action.why,
            Reason::NotRunning {
                status: Status::Starting
            }
        )
}

/// Why the policy keeps the service from acting at `minute`, if it does,
/// with when it will act.
pub fn held(policy: &Policy, minute: u16) -> Option<String> {
    if !policy.auto {
        return Some(
            "the deployment's policy is auto off (they run once a person sets it on: `cvl \
             policy set DEPLOYMENT --auto on`)"
                .to_string(),
        );
    }
    match policy.window {
        Some(w) if !w.contains(minute) => Some(format!(
            "outside its maintenance window {w}; they run when it opens, in {}",
            minutes_text(minutes_until(w.start, minute))
        )),
        _ => None,
    }
}

/// When a deployment's held work runs, for people: `None` when nothing
/// holds it (any time), else what it waits for.
pub fn runs_when(policy: &Policy, minute: u16) -> String {
    match (policy.auto, policy.window) {
        (false, _) => "updates wait for a person: auto is off".to_string(),
        (true, None) => "updates run as soon as they are published".to_string(),
        (true, Some(w)) if w.contains(minute) => format!(
            "updates run now: the window {w} is open (it closes in {})",
            minutes_text(minutes_until(w.end, minute))
        ),
        (true, Some(w)) => format!(
            "updates run when the window {w} opens, in {}",
            minutes_text(minutes_until(w.start, minute))
        ),
    }
}

/// Minutes from `minute` until the clock next reads `at` (both since
/// midnight UTC): 1 to 1440.
pub fn minutes_until(at: u16, minute: u16) -> u16 {
    let d = (1440 + at - minute % 1440) % 1440;
    if d == 0 {
        1440
    } else {
        d
    }
}

fn minutes_text(minutes: u16) -> String {
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// Minutes since midnight, UTC, of a moment.
pub fn minute_of_day(at: std::time::SystemTime) -> u16 {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ((secs / 60) % 1440) as u16
}

/// A running appliance whose version the blacklist bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub deployment: String,
    pub component: ComponentPath,
    /// Its repository, as the import writes it.
    pub url: String,
    pub version: u32,
    /// The administrator's reason, when given.
    pub reason: Option<String>,
}

/// Every appliance the state records running (or starting) on a version
/// the blacklist bars: the paper's administrator query.
pub fn violations(state: &UtilityState, blacklist: &Blacklist) -> Vec<Violation> {
    let mut out = Vec::new();
    for (deployment, d) in &state.deployments {
        for (path, vm) in &d.vms {
            if let Some((version, entry)) = barred(vm, blacklist) {
                out.push(Violation {
                    deployment: deployment.clone(),
                    component: path.clone(),
                    url: vm.spec.appliance.source.clone(),
                    version,
                    reason: entry.reason.clone(),
                });
            }
        }
    }
    out
}

/// Whether one recorded VM violates the blacklist: not stopped, and its
/// version barred. The version and the entry that bars it.
pub fn barred<'b>(
    vm: &cvl_planner::model::VmRecord,
    blacklist: &'b Blacklist,
) -> Option<(u32, &'b cvl_repo::blacklist::Entry)> {
    use cvl_planner::model::Status;
    if matches!(vm.status, Status::Stopped | Status::Stopping) {
        return None;
    }
    let version = vm.spec.appliance.version?;
    blacklist
        .bars(&vm.spec.appliance.source, version)
        .map(|entry| (version, entry))
}

/// The blacklist a deployment's updates are chosen against: the
/// administrator's, and the versions that failed their health gate there
/// (never taken again automatically; a newer one is).
pub fn barred_for(blacklist: &Blacklist, state: &UtilityState, deployment: &str) -> Blacklist {
    let mut barred = blacklist.clone();
    if let Some(d) = state.deployments.get(deployment) {
        for failed in &d.failed {
            barred.entries.push(cvl_repo::blacklist::Entry {
                url: failed.url.trim_end_matches('/').to_string(),
                versions: cvl_repo::blacklist::VersionRange {
                    from: failed.version,
                    to: failed.version,
                },
                reason: Some(format!(
                    "it failed its health gate in {deployment} at {} ({})",
                    failed.at, failed.reason
                )),
                added: failed.at.clone(),
            });
        }
    }
    barred
}

/// How long to leave a repository that failed `failures` times in a row
/// before asking it again: the interval doubled per failure, at most an
/// hour, plus up to a tenth of jitter (`jitter` in 0..1, so that many
/// services do not ask at once).
pub fn backoff(interval: std::time::Duration, failures: u32, jitter: f64) -> std::time::Duration {
    let base = interval
        .saturating_mul(1u32 << failures.min(16))
        .min(std::time::Duration::from_secs(3600))
        .max(interval);
    base + base.mul_f64(jitter.clamp(0.0, 1.0) / 10.0)
}

/// One appliance's backups as the service knows them (Unix seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupRecord {
    /// When its newest restore point was taken (none yet: `None`).
    pub last_good: Option<u64>,
    /// When the service last tried and failed, and how many times in a row.
    pub last_failure: Option<u64>,
    pub failures: u32,
}

/// When an appliance backed up every `every` seconds is next due (unix
/// seconds): at once when it has no restore point, else when its newest
/// is `every` old; after a failure, not before a wait that doubles with
/// each failure in a row (1 min, 2 min, 4 min, ...), never longer than
/// `every`. The service wakes for it between its rounds.
pub fn backup_next(record: &BackupRecord, every: u64) -> u64 {
    let old_at = record.last_good.map_or(0, |at| at.saturating_add(every));
    let retry_at = record.last_failure.map_or(0, |at| {
        let wait = (60u64 << record.failures.saturating_sub(1).min(10)).min(every);
        at.saturating_add(wait)
    });
    old_at.max(retry_at)
}

/// Whether an appliance backed up every `every` seconds is due at `now`
/// ([`backup_next`] has passed).
pub fn backup_due(record: &BackupRecord, every: u64, now: u64) -> bool {
    now >= backup_next(record, every)
}

/// How overdue an appliance's backup is at `now`: the seconds past its
/// interval (what the service backs up first), `None` when it is not due.
pub fn backup_overdue(record: &BackupRecord, every: u64, now: u64) -> Option<u64> {
    backup_due(record, every, now)
        .then(|| now.saturating_sub(record.last_good.map_or(0, |at| at + every)))
}

/// Whether a restore point `age` seconds old is stale for a policy of one
/// every `every`: older than twice the interval (the status page warns).
pub fn backup_stale(age: u64, every: u64) -> bool {
    age > every.saturating_mul(2)
}

/// How long a host has been silent at `now` if that makes it unreachable:
/// it last answered at `last_answer` (never: silent since the service began
/// watching, `watching_since`), and `dead_after` seconds have passed since.
/// Unreachable is a report, not a verdict: nothing is moved on it alone (a
/// host that does not answer may still run its VMs: a network split).
pub fn unreachable_for(
    last_answer: Option<u64>,
    watching_since: u64,
    now: u64,
    dead_after: u64,
) -> Option<u64> {
    let silent = now.saturating_sub(last_answer.unwrap_or(watching_since));
    (silent >= dead_after).then_some(silent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvl_planner::model::Window;
    use std::time::Duration;

    #[test]
    fn windows_wrap_past_midnight_and_policies_hold() {
        let night = Window::parse("22:00-04:00").unwrap();
        assert!(night.contains(23 * 60) && night.contains(60) && !night.contains(12 * 60));
        let day = Window::parse("09:30-17:00").unwrap();
        assert!(day.contains(9 * 60 + 30) && !day.contains(17 * 60));
        assert!(Window::parse("25:00-01:00").is_err());
        assert!(Window::parse("10:00-10:00").is_err());
        let on = Policy {
            auto: true,
            window: Some(day),
            restart: true,
            allow_unsigned: false,
            backup: None,
        };
        assert_eq!(held(&on, 10 * 60), None);
        assert!(held(&on, 20 * 60).unwrap().contains("09:30-17:00"));
        let off = Policy {
            auto: false,
            window: None,
            restart: true,
            allow_unsigned: false,
            backup: None,
        };
        assert!(held(&off, 10 * 60).unwrap().contains("auto off"));
    }

    use cvl_planner::model::{ApplianceRef, DesiredVm, VmAlloc, VmRecord};
    use cvl_planner::plan::{Action, Basis};

    fn vm(version: u32, secret: &str) -> DesiredVm {
        DesiredVm {
            appliance: ApplianceRef {
                name: "Store".into(),
                source: "http://r/Store".into(),
                version: Some(version),
                digest: format!("d{version}"),
                import_site: None,
            },
            params: [(
                "secret".to_string(),
                ParamValue::Sensitive {
                    fingerprint: Some(secret.to_string()),
                    supply: "CVL_SECRET_LAB_SECRET".into(),
                },
            )]
            .into(),
            provides: vec![],
            requires: vec![],
            memory_mib: 64,
            data_disks: vec![],
            agent: true,
        }
    }

    fn recorded(vms: &[(&str, u32, &str, Status)]) -> DeploymentState {
        DeploymentState {
            vms: vms
                .iter()
                .map(|(c, v, s, status)| {
                    (
                        ComponentPath(c.to_string()),
                        VmRecord {
                            spec: vm(*v, s),
                            alloc: VmAlloc {
                                host: "local".into(),
                                interfaces: Default::default(),
                            },
                            status: *status,
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    /// A plan whose desired VMs are `desired` and whose actions are
    /// `actions` (kind, component, reason).
    fn plan(desired: &[(&str, u32, &str)], actions: &[(ActionKind, &str, Reason)]) -> Plan {
        Plan {
            format_version: "1".into(),
            deployment: "Lab".into(),
            basis: Basis {
                lineage: "l".into(),
                serial: 1,
                inputs_digest: String::new(),
            },
            actions: actions
                .iter()
                .map(|(kind, c, why)| Action {
                    action: *kind,
                    component: ComponentPath(c.to_string()),
                    reason: why.to_string(),
                    why: why.clone(),
                    changes: vec![],
                    after: vec![],
                    from_host: None,
                    how: None,
                })
                .collect(),
            allocations: Default::default(),
            vans: Default::default(),
            desired: desired
                .iter()
                .map(|(c, v, s)| (ComponentPath(c.to_string()), vm(*v, s)))
                .collect(),
            missing_secrets: vec![],
            source: None,
        }
    }

    fn version(from: u32, to: u32) -> Reason {
        Reason::VersionChanged {
            appliance: "Store".into(),
            from: Some(from),
            to: Some(to),
            site: None,
        }
    }

    const ON: Policy = Policy {
        auto: true,
        window: None,
        restart: true,
        allow_unsigned: false,
        backup: None,
    };

    #[test]
    fn a_stopped_appliance_is_never_updated_or_started_by_the_service() {
        let state = recorded(&[
            ("s", 1, "A", Status::Stopped),
            ("t", 1, "A", Status::Running),
            ("u", 1, "A", Status::Stopping),
            ("v", 1, "A", Status::Starting),
        ]);
        let p = plan(
            &[("s", 2, "A"), ("t", 2, "A"), ("u", 1, "A"), ("v", 1, "A")],
            &[
                (ActionKind::Update, "s", version(1, 2)),
                (ActionKind::Update, "t", version(1, 2)),
                (
                    ActionKind::Start,
                    "u",
                    Reason::NotRunning {
                        status: Status::Stopping,
                    },
                ),
                (
                    ActionKind::Start,
                    "v",
                    Reason::NotRunning {
                        status: Status::Starting,
                    },
                ),
            ],
        );
        let d = decide(
            &p,
            &Context {
                recorded: Some(&state),
                differences: &[],
                policy: &ON,
                minute: 0,
                unsigned: &Default::default(),
            },
        );
        // t's update, and v's interrupted start (recorded starting: whoever
        // began it meant it to run).
        assert_eq!(d.act, [1, 3]);
        assert_eq!(
            d.pending,
            [
                (0, Wait::Stopped(Status::Stopped)),
                (2, Wait::Stopped(Status::Stopping))
            ]
        );
        assert!(d.pending[0]
            .1
            .to_string()
            .contains("only a person starts it"));
    }

    #[test]
    fn starts_stops_removals_and_moves_wait_for_a_person() {
        let state = recorded(&[("a", 1, "A", Status::Failed)]);
        let p = plan(
            &[("a", 1, "A"), ("b", 1, "A")],
            &[
                (
                    ActionKind::Start,
                    "a",
                    Reason::NotRunning {
                        status: Status::Failed,
                    },
                ),
                (ActionKind::Start, "b", Reason::New),
                (ActionKind::Remove, "c", Reason::Removed),
            ],
        );
        let d = decide(
            &p,
            &Context {
                recorded: Some(&state),
                differences: &[],
                policy: &ON,
                minute: 0,
                unsigned: &Default::default(),
            },
        );
        assert!(d.act.is_empty());
        assert_eq!(
            d.pending,
            [
                (0, Wait::Kind(ActionKind::Start)),
                (1, Wait::Kind(ActionKind::Start)),
                (2, Wait::Kind(ActionKind::Remove))
            ]
        );
        assert_eq!(d.held, None);
    }

    #[test]
    fn a_sensitive_value_a_person_applied_is_never_put_back() {
        // The service saw A applied with A from its source; a person then
        // applied B (`CVL_SECRET_...=B cvl apply`).
        let mut seen = Seen::new();
        let key = (ComponentPath("w".into()), "secret".to_string());
        seen.insert(
            key.clone(),
            SeenValue {
                ours: "A".into(),
                applied: "A".into(),
            },
        );
        let state = recorded(&[("w", 1, "B", Status::Running)]);
        // An update of w would resend A with it.
        let p = plan(
            &[("w", 2, "A")],
            &[(ActionKind::Update, "w", version(1, 2))],
        );
        let (diffs, next) = sensitive_differences(&p, Some(&state), &seen);
        assert_eq!(diffs.len(), 1);
        assert!(!diffs[0].ours_changed);
        let d = decide(
            &p,
            &Context {
                recorded: Some(&state),
                differences: &diffs,
                policy: &ON,
                minute: 0,
                unsigned: &Default::default(),
            },
        );
        assert!(d.act.is_empty());
        assert_eq!(
            d.pending,
            [(0, Wait::AppliedByOthers(vec!["secret".into()]))]
        );
        // And it stays a person's: planned again, the same.
        let (diffs, _) = sensitive_differences(&p, Some(&state), &next);
        assert!(!diffs[0].ours_changed);
        // A service that just started has seen nothing: not its change.
        let (diffs, _) = sensitive_differences(&p, Some(&state), &Seen::new());
        assert!(!diffs[0].ours_changed);
    }

    #[test]
    fn the_services_own_rotation_is_sent_and_stays_its_own_while_held() {
        let key = (ComponentPath("w".into()), "secret".to_string());
        let mut seen = Seen::new();
        seen.insert(
            key.clone(),
            SeenValue {
                ours: "A".into(),
                applied: "A".into(),
            },
        );
        let state = recorded(&[("w", 1, "A", Status::Running)]);
        // Its source (the agent) now says B.
        let resend = Reason::ParamsChanged { changes: vec![] };
        let p = plan(&[("w", 1, "B")], &[(ActionKind::Resend, "w", resend)]);
        let (diffs, next) = sensitive_differences(&p, Some(&state), &seen);
        assert!(diffs[0].ours_changed);
        let off = Policy {
            auto: false,
            window: None,
            restart: true,
            allow_unsigned: false,
            backup: None,
        };
        let d = decide(
            &p,
            &Context {
                recorded: Some(&state),
                differences: &diffs,
                policy: &off,
                minute: 0,
                unsigned: &Default::default(),
            },
        );
        assert!(d.act.is_empty());
        assert_eq!(d.held_actions, [0]);
        assert!(d.held.unwrap().contains("auto off"));
        // Held: next time it is still the service's own change.
        let (diffs, next) = sensitive_differences(&p, Some(&state), &next);
        assert!(diffs[0].ours_changed);
        // But once a person applies yet another value (C), it is theirs.
        let theirs = recorded(&[("w", 1, "C", Status::Running)]);
        let (diffs, _) = sensitive_differences(&p, Some(&theirs), &next);
        assert!(!diffs[0].ours_changed);
        // Sent: no difference, and what was sent is what was seen.
        let sent = recorded(&[("w", 1, "B", Status::Running)]);
        let (diffs, next) = sensitive_differences(&p, Some(&sent), &next);
        assert!(diffs.is_empty());
        assert_eq!(next[&key].ours, "B");
    }

    #[test]
    fn a_crash_is_restarted_at_once_even_outside_the_window_unless_restarts_are_off() {
        let state = recorded(&[
            ("a", 1, "A", Status::Running),
            ("b", 1, "A", Status::Running),
        ]);
        let p = plan(
            &[("a", 1, "A"), ("b", 2, "A")],
            &[
                (ActionKind::Start, "a", Reason::Crashed),
                (ActionKind::Update, "b", version(1, 2)),
            ],
        );
        let night = Policy {
            auto: true,
            window: Some(Window::parse("02:00-04:00").unwrap()),
            restart: true,
            allow_unsigned: false,
            backup: None,
        };
        let d = decide(
            &p,
            &Context {
                recorded: Some(&state),
                differences: &[],
                policy: &night,
                minute: 12 * 60,
                unsigned: &Default::default(),
            },
        );
        assert_eq!(d.act, [0]);
        assert_eq!(d.held_actions, [1]);
        assert!(d.held.is_some());
        let off = Policy {
            restart: false,
            ..Policy::default()
        };
        let d = decide(
            &p,
            &Context {
                recorded: Some(&state),
                differences: &[],
                policy: &off,
                minute: 12 * 60,
                unsigned: &Default::default(),
            },
        );
        assert_eq!(d.act, [1]);
        assert_eq!(d.pending, [(0, Wait::RestartOff)]);
    }

    #[test]
    fn a_fenced_hosts_appliance_is_recovered_at_once_but_not_one_a_person_stopped() {
        let state = recorded(&[
            ("a", 1, "A", Status::Running),
            ("b", 1, "A", Status::Stopped),
            ("c", 1, "A", Status::Running),
        ]);
        let recovered = || Reason::Recovered {
            from: "h1".into(),
            to: "h2".into(),
        };
        let p = plan(
            &[("a", 1, "A"), ("b", 1, "A"), ("c", 2, "A")],
            &[
                (ActionKind::Move, "a", recovered()),
                (ActionKind::Move, "b", recovered()),
                (ActionKind::Update, "c", version(1, 2)),
            ],
        );
        let night = Policy {
            auto: true,
            window: Some(Window::parse("02:00-04:00").unwrap()),
            ..Policy::default()
        };
        let unsigned = Default::default();
        let cx = |policy| Context {
            recorded: Some(&state),
            differences: &[],
            policy,
            minute: 12 * 60,
            unsigned: &unsigned,
        };
        let default = Policy::default();
        let d = decide(&p, &cx(&night));
        // Not held by the window (as a crash); what a person stopped waits.
        assert_eq!(d.act, [0]);
        assert_eq!(d.pending, [(1, Wait::Stopped(Status::Stopped))]);
        assert_eq!(d.held_actions, [2]);
        // A drain's move is a person's to make: it waits, as before.
        let drained = plan(
            &[("a", 1, "A")],
            &[(
                ActionKind::Move,
                "a",
                Reason::Moved {
                    from: "h1".into(),
                    to: "h2".into(),
                },
            )],
        );
        assert!(decide(&drained, &cx(&default)).act.is_empty());
        let off = Policy {
            restart: false,
            ..Policy::default()
        };
        assert_eq!(decide(&p, &cx(&off)).pending[0], (0, Wait::RestartOff));
    }

    #[test]
    fn restarts_back_off_and_give_up_after_a_burst() {
        let limit = RestartLimit::default();
        assert_eq!(restart(&[], 1000, limit), Restart::Now);
        assert_eq!(restart(&[999], 1000, limit), Restart::Now);
        assert_eq!(restart(&[990, 999], 1000, limit), Restart::After(1));
        assert_eq!(restart(&[980, 990, 998], 1000, limit), Restart::After(2));
        assert_eq!(restart(&[970, 980, 990, 999], 1000, limit), Restart::GiveUp);
        // Out of the window, they no longer count.
        assert_eq!(restart(&[900, 910, 920, 930], 1000, limit), Restart::Now);
        // A longer window counts them; a larger burst allows more.
        let long = RestartLimit {
            burst: 4,
            window: 600,
        };
        assert_eq!(restart(&[900, 910, 920, 930], 1000, long), Restart::GiveUp);
        let more = RestartLimit {
            burst: 5,
            window: 60,
        };
        assert_eq!(restart(&[970, 980, 990, 992], 1000, more), Restart::Now);
    }

    #[test]
    fn an_update_from_an_unsigned_repository_waits_unless_the_policy_allows_it() {
        let state = recorded(&[("a", 1, "A", Status::Running)]);
        let p = plan(
            &[("a", 2, "A")],
            &[(ActionKind::Update, "a", version(1, 2))],
        );
        let unsigned: std::collections::BTreeSet<String> = ["http://r/Store".to_string()].into();
        let mut policy = Policy::default();
        let cx = |policy: &Policy| {
            decide(
                &p,
                &Context {
                    recorded: Some(&state),
                    differences: &[],
                    policy,
                    minute: 0,
                    unsigned: &unsigned,
                },
            )
        };
        let d = cx(&policy);
        assert!(d.act.is_empty());
        assert_eq!(d.pending, [(0, Wait::Unsigned("http://r/Store".into()))]);
        policy.allow_unsigned = true;
        assert_eq!(cx(&policy).act, [0]);
    }

    #[test]
    fn held_work_says_when_it_runs() {
        let w = Window::parse("02:00-04:00").unwrap();
        let on = Policy {
            auto: true,
            window: Some(w),
            restart: true,
            allow_unsigned: false,
            backup: None,
        };
        let at_noon = held(&on, 12 * 60).unwrap();
        assert!(at_noon.contains("in 14 h"), "{at_noon}");
        assert_eq!(held(&on, 2 * 60 + 30), None);
        assert!(runs_when(&on, 60).contains("opens, in 1 h"));
        assert!(runs_when(&on, 2 * 60 + 30).contains("closes in 1 h 30 min"));
        assert_eq!(minutes_until(120, 120), 1440);
        assert_eq!(minutes_until(0, 1439), 1);
    }

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let i = Duration::from_secs(30);
        assert_eq!(backoff(i, 0, 0.0), i);
        assert_eq!(backoff(i, 1, 0.0), Duration::from_secs(60));
        assert_eq!(backoff(i, 3, 0.0), Duration::from_secs(240));
        assert_eq!(backoff(i, 30, 0.0), Duration::from_secs(3600));
        assert_eq!(backoff(i, 0, 1.0), Duration::from_secs(33));
    }

    #[test]
    fn a_backup_is_due_once_its_newest_is_an_interval_old_and_failures_back_off() {
        let hour = 3600;
        let never = BackupRecord::default();
        assert!(backup_due(&never, hour, 1_000));
        let fresh = BackupRecord {
            last_good: Some(10_000),
            ..Default::default()
        };
        assert!(!backup_due(&fresh, hour, 10_000 + hour - 1));
        assert!(backup_due(&fresh, hour, 10_000 + hour));
        assert_eq!(backup_overdue(&fresh, hour, 10_000 + hour + 5), Some(5));
        assert_eq!(backup_overdue(&fresh, hour, 10_000), None);
        // Failed twice in a row at 20 000: the next try 2 minutes later.
        let failing = BackupRecord {
            last_good: Some(10_000),
            last_failure: Some(20_000),
            failures: 2,
        };
        assert!(!backup_due(&failing, hour, 20_119));
        assert!(backup_due(&failing, hour, 20_120));
        // The wait never exceeds the interval.
        let often = BackupRecord {
            failures: 30,
            ..failing
        };
        assert!(backup_due(&often, 10, 20_010));
        // The service wakes for the next one between its rounds.
        assert_eq!(backup_next(&fresh, hour), 10_000 + hour);
        assert_eq!(backup_next(&failing, hour), 20_120);
        assert_eq!(backup_next(&never, hour), 0);
        assert!(!backup_stale(2 * hour, hour));
        assert!(backup_stale(2 * hour + 1, hour));
    }

    #[test]
    fn a_host_is_unreachable_once_silent_for_the_dead_after_time() {
        assert_eq!(unreachable_for(Some(100), 0, 159, 60), None);
        assert_eq!(unreachable_for(Some(100), 0, 160, 60), Some(60));
        // Never answered: counted from when the service began watching.
        assert_eq!(unreachable_for(None, 1_000, 1_030, 60), None);
        assert_eq!(unreachable_for(None, 1_000, 1_075, 60), Some(75));
        // A clock that went back is not a silence.
        assert_eq!(unreachable_for(Some(500), 0, 400, 60), None);
    }
}
