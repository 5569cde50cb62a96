//! What runs, asked of the hosts: every VM the state places on each host
//! (one request per host, all at once) beside what the state records, with
//! what differs (drift), and the VMs a host runs that the state does not
//! know. `cvl status`, the status page and the service ask the same way.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use cvl_executor::protocol::{Request, Response, VmId, VmStatus, MIGRATING};
use cvl_executor::transport::Links;
use cvl_planner::model::{ComponentPath, Status, UtilityState};

/// Per host: whether it answered the survey, or why not.
pub type Answered = BTreeMap<String, Result<(), String>>;

/// One VM as its host sees it, beside what the state records.
pub struct Seen {
    pub deployment: String,
    pub component: String,
    pub host: String,
    /// The recorded status, `-` for a VM the state does not know.
    pub recorded: String,
    /// What the host said, `None` when it did not answer.
    pub vm: Option<VmStatus>,
    /// What differs (empty: nothing).
    pub drift: String,
    /// Recorded running here, where no QEMU runs it, while another host
    /// runs one: that host (a live move between its end and its record).
    pub elsewhere: Option<String>,
}

impl Seen {
    /// Recorded running, and its host answered that no QEMU runs it:
    /// crashed, killed, or its host restarted. Not when another host runs
    /// it: a live move leaves the record on the old host until the VM runs
    /// on the new one, and starting it again there would run it twice.
    pub fn crashed(&self) -> bool {
        self.gone() && self.elsewhere.is_none()
    }

    /// Recorded running, and its host runs no QEMU of it.
    fn gone(&self) -> bool {
        self.recorded == Status::Running.as_str()
            && self.vm.as_ref().is_some_and(|v| v.pid.is_none())
    }
}

/// Marks the rows recorded running on a host that runs no QEMU of them
/// while another host runs one (a live move, from the moment the old QEMU
/// quits to the moment the state records the new host): not a crash, and
/// their drift says where it runs.
fn mark_elsewhere(rows: &mut [Seen]) {
    let running: BTreeMap<(String, String), String> = rows
        .iter()
        .filter(|s| s.vm.as_ref().is_some_and(|v| v.pid.is_some()))
        .map(|s| ((s.deployment.clone(), s.component.clone()), s.host.clone()))
        .collect();
    for s in rows.iter_mut() {
        if !s.gone() {
            continue;
        }
        let key = (s.deployment.clone(), s.component.clone());
        if let Some(host) = running.get(&key).filter(|h| **h != s.host) {
            s.drift = format!(
                "recorded running here, but its QEMU runs on {host}: a move the state has not \
                 recorded yet"
            );
            s.elsewhere = Some(host.clone());
        }
    }
}

/// Reads what `rows` found gone against the state as recorded after the
/// hosts answered: a VM a person stopped (or moved) while the hosts were
/// asked was recorded running when the survey began, but its stop records
/// its intent before its QEMU quits, so the state read after the answer
/// says so. Such a row takes the status recorded now and is not a crash.
fn settle(rows: &mut [Seen], after: &UtilityState) {
    for s in rows.iter_mut().filter(|s| s.gone()) {
        let now = after
            .deployments
            .get(&s.deployment)
            .and_then(|d| d.vms.get(&ComponentPath(s.component.clone())));
        match now {
            Some(r) if r.status == Status::Running && r.alloc.host == s.host => {}
            Some(r) if r.alloc.host != s.host => {
                s.recorded = "-".into();
                s.drift = format!("moved to {} while the hosts were asked", r.alloc.host);
            }
            Some(r) => {
                s.recorded = r.status.as_str().into();
                s.drift = format!("recorded {} while the hosts were asked", r.status.as_str());
            }
            None => {
                s.recorded = "-".into();
                s.drift = "removed while the hosts were asked".into();
            }
        }
    }
}

/// [`settle`] against the state as it is now, read only when a row is
/// taken for a crash.
pub fn settle_now(rows: &mut [Seen]) {
    if !rows.iter().any(Seen::crashed) {
        return;
    }
    if let Ok(after) = crate::state::read() {
        settle(rows, &after);
    }
}

/// Asks every host at once (one request each) about every VM the state
/// places there (of one deployment, with `only`) and the VMs it runs that
/// the state does not know. Also, per host, whether it answered.
/// With `snapshots`, each VM's data disks' snapshots too (slower: a
/// `qemu-img info` per disk).
pub fn survey(
    state: &UtilityState,
    only: Option<&str>,
    snapshots: bool,
) -> Result<(Vec<Seen>, Answered)> {
    let mut rows = Vec::new();
    let mut answered = BTreeMap::new();
    let connector = crate::hosts::connector(state)?;
    let mut by_host: BTreeMap<String, Vec<(String, ComponentPath, Status)>> = BTreeMap::new();
    for host in crate::hosts::hosts_or_local(&state.hosts) {
        by_host.entry(host.name).or_default();
    }
    for (deployment, d) in &state.deployments {
        if only.is_some_and(|o| o != deployment) {
            continue;
        }
        for (path, record) in &d.vms {
            by_host.entry(record.alloc.host.clone()).or_default().push((
                deployment.clone(),
                path.clone(),
                record.status,
            ));
        }
    }
    let links = Links::new(&connector);
    let answers: Vec<Result<Response, String>> = std::thread::scope(|scope| {
        let asks: Vec<_> = by_host
            .iter()
            .map(|(host, vms)| {
                let ids: Vec<VmId> = vms
                    .iter()
                    .map(|(d, p, _)| VmId {
                        deployment: d.clone(),
                        path: p.0.clone(),
                    })
                    .collect();
                let links = &links;
                scope.spawn(move || {
                    links.call(
                        host,
                        &Request::Status {
                            vms: ids,
                            all: true,
                            snapshots,
                        },
                    )
                })
            })
            .collect();
        asks.into_iter()
            .map(|a| {
                a.join()
                    .unwrap_or_else(|_| Err("the status request panicked".into()))
            })
            .collect()
    });
    for ((host, vms), answer) in by_host.iter().zip(answers) {
        let row = |d: &str, p: &str, recorded: &str, vm: Option<&VmStatus>, drift: String| Seen {
            deployment: d.to_string(),
            component: p.to_string(),
            host: host.clone(),
            recorded: recorded.to_string(),
            vm: vm.cloned(),
            drift,
            elsewhere: None,
        };
        match answer {
            Ok(Response::Status { vms: seen, unknown }) => {
                answered.insert(host.clone(), Ok(()));
                for ((deployment, path, recorded), seen) in vms.iter().zip(&seen) {
                    let drift = match (recorded, seen.pid.is_some()) {
                        (Status::Running, false) => "DRIFT: recorded running, but no process",
                        (Status::Stopped, true) => "DRIFT: recorded stopped, but it runs",
                        // Its guest is not asked while it moves.
                        (Status::Running, true) if seen.qmp.as_deref() == Some(MIGRATING) => "",
                        (Status::Running, true) if seen.expects_agent && !seen.agent => {
                            "guest agent not answering"
                        }
                        (Status::Starting | Status::Stopping | Status::Failed, _) => {
                            "an apply did not finish: run cvl plan"
                        }
                        _ => "",
                    };
                    rows.push(row(
                        deployment,
                        &path.0,
                        recorded.as_str(),
                        Some(seen),
                        drift.into(),
                    ));
                }
                for vm in &unknown {
                    if only.is_some_and(|o| o != vm.vm.deployment) {
                        continue;
                    }
                    let drift = if vm.qmp.as_deref() == Some(MIGRATING) {
                        "in a live move: the state records its new host once it runs there"
                    } else {
                        "DRIFT: runs, but the state does not know it"
                    }
                    .to_string();
                    rows.push(row(&vm.vm.deployment, &vm.vm.path, "-", Some(vm), drift));
                }
            }
            Ok(other) => {
                answered.insert(host.clone(), Err(format!("answered {other:?}")));
            }
            Err(e) => {
                if vms.is_empty() {
                    rows.push(row(
                        "-",
                        "-",
                        "-",
                        None,
                        format!("DRIFT: host does not answer: {e}"),
                    ));
                }
                for (deployment, path, recorded) in vms {
                    let drift = format!("DRIFT: host does not answer: {e}");
                    rows.push(row(deployment, &path.0, recorded.as_str(), None, drift));
                }
                answered.insert(host.clone(), Err(e));
            }
        }
    }
    mark_elsewhere(&mut rows);
    Ok((rows, answered))
}

/// The components of `deployment` recorded running whose QEMU its host says
/// is gone: what a person's `cvl plan` and `cvl apply` start again. A host
/// that does not answer says nothing (its VMs are not taken for crashed).
pub fn crashed(state: &UtilityState, deployment: &str) -> BTreeSet<ComponentPath> {
    let Some(d) = state.deployments.get(deployment) else {
        return BTreeSet::new();
    };
    if !d.vms.values().any(|vm| vm.status == Status::Running) {
        return BTreeSet::new();
    }
    match survey(state, Some(deployment), false) {
        Ok((mut seen, _)) => {
            settle_now(&mut seen);
            seen.iter()
                .filter(|s| s.deployment == deployment && s.crashed())
                .map(|s| ComponentPath(s.component.clone()))
                .collect()
        }
        Err(_) => BTreeSet::new(),
    }
}

/// `cvl status`'s rows, for people and scripts alike: what each host says
/// runs beside the state, with the recorded version, whether the blacklist
/// bars it, and each data disk's snapshots from before updates.
pub fn rows(state: &UtilityState, only: Option<&str>) -> Result<Vec<serde_json::Value>> {
    let (seen, _) = survey(state, only, true)?;
    let blacklist = cvl_repo::blacklist::Blacklist::load(&cvl_repo::settings::default_home())
        .map_err(anyhow::Error::msg)?;
    let violations = cvl_utility::decide::violations(state, &blacklist);
    Ok(seen
        .iter()
        .map(|s| {
            let vm = s.vm.as_ref();
            let version = state
                .deployments
                .get(&s.deployment)
                .and_then(|d| d.vms.get(&ComponentPath(s.component.clone())))
                .and_then(|r| r.spec.appliance.version);
            let barred = violations
                .iter()
                .find(|v| v.deployment == s.deployment && v.component.0 == s.component)
                .map(|v| {
                    let why = v.reason.as_ref().map(|r| format!(" ({r})"));
                    format!(
                        "version {} of {} is barred{}",
                        v.version,
                        v.url,
                        why.unwrap_or_default()
                    )
                });
            serde_json::json!({
                "deployment": s.deployment, "component": s.component, "host": s.host,
                "recorded": s.recorded, "pid": vm.and_then(|v| v.pid),
                "qmp": vm.and_then(|v| v.qmp.clone()), "agent": vm.is_some_and(|v| v.agent),
                "expects_agent": vm.is_none_or(|v| v.expects_agent), "drift": s.drift,
                "snapshots": vm.map(|v| v.snapshots.clone()).unwrap_or_default(),
                "version": version, "blacklisted": barred,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(host: &str, recorded: Status, pid: Option<u32>) -> Seen {
        Seen {
            deployment: "Solo".into(),
            component: "a".into(),
            host: host.into(),
            recorded: recorded.as_str().into(),
            vm: Some(VmStatus {
                vm: VmId {
                    deployment: "Solo".into(),
                    path: "a".into(),
                },
                pid,
                qmp: None,
                agent: false,
                expects_agent: true,
                snapshots: BTreeMap::new(),
                accel: None,
            }),
            drift: String::new(),
            elsewhere: None,
        }
    }

    #[test]
    fn a_vm_that_runs_on_another_host_is_moving_not_crashed() {
        // The old QEMU quit, the new host runs it, the state still says h1.
        let mut rows = vec![
            seen("h1", Status::Running, None),
            Seen {
                recorded: "-".into(),
                ..seen("h2", Status::Running, Some(42))
            },
        ];
        mark_elsewhere(&mut rows);
        assert!(!rows[0].crashed(), "{}", rows[0].drift);
        assert_eq!(rows[0].elsewhere.as_deref(), Some("h2"));
        assert!(rows[0].drift.contains("runs on h2"), "{}", rows[0].drift);
        // Gone everywhere: crashed.
        let mut rows = vec![seen("h1", Status::Running, None)];
        mark_elsewhere(&mut rows);
        assert!(rows[0].crashed());
        // Running where recorded: neither.
        let mut rows = vec![seen("h1", Status::Running, Some(7))];
        mark_elsewhere(&mut rows);
        assert!(!rows[0].crashed() && rows[0].elsewhere.is_none());
    }

    /// The state after the hosts answered, with Solo/a recorded `status`
    /// on `host`.
    fn after(host: &str, status: Status) -> UtilityState {
        let record = serde_json::json!({
            "spec": {
                "appliance": { "name": "Alpha", "source": "alpha.cvl", "digest": "d" },
                "params": {}, "provides": [], "requires": [], "memory_mib": 64, "data_disks": []
            },
            "alloc": { "host": host, "interfaces": {} },
            "status": status,
        });
        let mut state = UtilityState::default();
        state
            .deployments
            .entry("Solo".into())
            .or_default()
            .vms
            .insert(
                ComponentPath("a".into()),
                serde_json::from_value(record).unwrap(),
            );
        state
    }

    #[test]
    fn a_vm_stopped_while_the_hosts_were_asked_is_not_crashed() {
        // Read running, then a person's stop recorded its intent and its
        // QEMU quit before the host answered.
        for (host, status, said) in [
            ("h1", Status::Stopping, "recorded stopping"),
            ("h1", Status::Stopped, "recorded stopped"),
            ("h2", Status::Running, "moved to h2"),
        ] {
            let mut rows = vec![seen("h1", Status::Running, None)];
            settle(&mut rows, &after(host, status));
            assert!(!rows[0].crashed(), "{status:?} on {host}");
            assert!(rows[0].drift.contains(said), "{}", rows[0].drift);
        }
        let mut rows = vec![seen("h1", Status::Running, None)];
        settle(&mut rows, &UtilityState::default());
        assert!(!rows[0].crashed() && rows[0].drift.contains("removed"));
        // Still recorded running where its QEMU is gone: crashed.
        let mut rows = vec![seen("h1", Status::Running, None)];
        settle(&mut rows, &after("h1", Status::Running));
        assert!(rows[0].crashed());
    }
}
