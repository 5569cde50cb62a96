//! What the utility service does by itself, as pure functions of a plan, a
//! policy, the state and the clock: which actions it carries out (updates
//! and resends) and which wait for a person (starts, stops, removals,
//! moves), whether the policy lets it act now, which running appliances
//! violate the blacklist, and how long a failing repository is left alone.
//! The service's loop (in `cvl`) only wires these to the planner, the
//! executor and the state.

use cvl_planner::model::{ComponentPath, Policy, UtilityState};
use cvl_planner::plan::{ActionKind, Plan};
use cvl_repo::blacklist::Blacklist;

/// What the service does with a plan made from the newest allowed versions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Indices into the plan's actions it carries out, in the plan's order
    /// (dependencies first): updates and resends.
    pub act: Vec<usize>,
    /// Indices of the actions that wait for a person.
    pub pending: Vec<usize>,
    /// Why the service does not act now although there is work (the
    /// policy), when it does not.
    pub held: Option<String>,
}

/// Whether the service may carry out `kind` by itself.
pub fn automatic(kind: ActionKind) -> bool {
    matches!(kind, ActionKind::Update | ActionKind::Resend)
}

/// Splits `plan` into what the service carries out now, what waits for a
/// person, and whether the policy holds it back at `minute` (UTC minutes
/// since midnight).
pub fn decide(plan: &Plan, policy: &Policy, minute: u16) -> Decision {
    let mut decision = Decision::default();
    for (i, action) in plan.actions.iter().enumerate() {
        if automatic(action.action) {
            decision.act.push(i);
        } else {
            decision.pending.push(i);
        }
    }
    if !decision.act.is_empty() {
        decision.held = held(policy, minute);
    }
    decision
}

/// Why the policy keeps the service from acting at `minute`, if it does.
pub fn held(policy: &Policy, minute: u16) -> Option<String> {
    if !policy.auto {
        return Some("the deployment's policy is auto off".to_string());
    }
    match policy.window {
        Some(w) if !w.contains(minute) => Some(format!("outside its maintenance window {w}")),
        _ => None,
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
        };
        assert_eq!(held(&on, 10 * 60), None);
        assert!(held(&on, 20 * 60).unwrap().contains("09:30-17:00"));
        let off = Policy {
            auto: false,
            window: None,
        };
        assert!(held(&off, 10 * 60).unwrap().contains("auto off"));
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
}
