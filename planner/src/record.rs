//! What the state records as a plan is carried out: the intent before an
//! action (so that a crash leaves a state that says what may be half done)
//! and its outcome after. The executor records these; tests that need no
//! host record them directly, as if every action had succeeded.

use crate::model::{Change, DeploymentState, Status, VmRecord};
use crate::plan::{Action, ActionKind, Plan};

/// Recorded before `action` runs.
pub fn intent(plan: &Plan, action: &Action) -> Vec<Change> {
    let deployment = plan.deployment.clone();
    let path = action.component.clone();
    match action.action {
        ActionKind::Start | ActionKind::Update => match record(plan, action, Status::Starting) {
            Some(record) => vec![Change::VmRecorded {
                deployment,
                path,
                record: Box::new(record),
            }],
            None => Vec::new(),
        },
        ActionKind::Resend => Vec::new(),
        // A live move: the VM runs on the old host until it runs on the new
        // one, and a move that fails leaves it running there.
        ActionKind::Move if action.how.as_ref().is_some_and(|h| h.live) => Vec::new(),
        // The record keeps the old host until the VM runs on the new one: a
        // move cut short is planned again, and its data disks are still
        // where the state says.
        ActionKind::Stop | ActionKind::Remove | ActionKind::Move => vec![Change::VmStatus {
            deployment,
            path,
            status: Status::Stopping,
        }],
    }
}

/// Recorded once `action` succeeded.
pub fn applied(plan: &Plan, action: &Action) -> Vec<Change> {
    let deployment = plan.deployment.clone();
    let path = action.component.clone();
    match action.action {
        ActionKind::Start | ActionKind::Update | ActionKind::Resend | ActionKind::Move => {
            let Some(record) = record(plan, action, Status::Running) else {
                return Vec::new();
            };
            let mut changes: Vec<Change> = plan
                .vans
                .iter()
                .filter(|(_, n)| {
                    record
                        .alloc
                        .interfaces
                        .values()
                        .any(|i| i.network == Some(**n))
                })
                .map(|(van, n)| Change::VanRecorded {
                    deployment: deployment.clone(),
                    path: van.clone(),
                    network: *n,
                })
                .collect();
            changes.push(Change::VmRecorded {
                deployment,
                path,
                record: Box::new(record),
            });
            changes
        }
        ActionKind::Stop => vec![Change::VmStatus {
            deployment,
            path,
            status: Status::Stopped,
        }],
        ActionKind::Remove => vec![Change::VmRemoved { deployment, path }],
    }
}

/// Recorded when an action failed.
pub fn failed(plan: &Plan, action: &Action) -> Vec<Change> {
    vec![Change::VmStatus {
        deployment: plan.deployment.clone(),
        path: action.component.clone(),
        status: Status::Failed,
    }]
}

/// Recorded once every action succeeded: the VAN numbers the deployment
/// now holds, and none it no longer has.
pub fn finished(plan: &Plan, current: Option<&DeploymentState>) -> Vec<Change> {
    let mut changes: Vec<Change> = current
        .into_iter()
        .flat_map(|d| d.vans.keys())
        .filter(|van| !plan.vans.contains_key(*van))
        .map(|van| Change::VanRemoved {
            deployment: plan.deployment.clone(),
            path: van.clone(),
        })
        .collect();
    let has_vms = !plan.desired.is_empty();
    if has_vms {
        changes.extend(plan.vans.iter().map(|(van, n)| Change::VanRecorded {
            deployment: plan.deployment.clone(),
            path: van.clone(),
            network: *n,
        }));
    }
    changes
}

fn record(plan: &Plan, action: &Action, status: Status) -> Option<VmRecord> {
    Some(VmRecord {
        spec: plan.desired.get(&action.component)?.clone(),
        alloc: plan.allocations.get(&action.component)?.clone(),
        status,
    })
}
