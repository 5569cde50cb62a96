//! Backups of a deployment's data disks: which appliances have data disks
//! and on which host, each backed up in turn by its host's agent into a
//! backup store (a folder on that host; `executor/src/agent/backup.rs`
//! says what is in it), and restore points put back.

use anyhow::{bail, Result};
use cvl_executor::protocol::{Backup, PointCheck, Request, Response, VmId};
use cvl_executor::transport::Links;
use cvl_planner::model::{ComponentPath, DeploymentState, UtilityState, VmRecord};

/// What one appliance's backup made, or why it failed.
pub struct Outcome {
    pub component: ComponentPath,
    pub host: String,
    pub result: Result<Vec<Backup>, String>,
}

/// The appliances of `deployment` (or its component `only`) that have data
/// disks, in component order.
fn with_data<'a>(
    d: &'a DeploymentState,
    deployment: &str,
    only: Option<&str>,
) -> Result<Vec<(&'a ComponentPath, &'a VmRecord)>> {
    if let Some(only) = only {
        let Some((path, vm)) = d.vms.get_key_value(&ComponentPath(only.to_string())) else {
            bail!(
                "{deployment} has no VM appliance `{only}` (it has: {})",
                d.vms
                    .keys()
                    .map(|p| p.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        if vm.spec.data_disks.is_empty() {
            bail!("{deployment}/{only} has no data disks: there is nothing of it to back up");
        }
        return Ok(vec![(path, vm)]);
    }
    Ok(d.vms
        .iter()
        .filter(|(_, vm)| !vm.spec.data_disks.is_empty())
        .collect())
}

fn deployment<'a>(state: &'a UtilityState, name: &str) -> Result<&'a DeploymentState> {
    state.deployments.get(name).ok_or_else(|| {
        anyhow::anyhow!(
            "{name} is not deployed (nothing in the state): there is nothing to back up"
        )
    })
}

fn vm_id(deployment: &str, component: &ComponentPath) -> VmId {
    VmId {
        deployment: deployment.to_string(),
        path: component.0.clone(),
    }
}

/// Backs up the data disks of `name` (or its component `only`) into
/// `store`, one appliance at a time; `progress` hears of each as it ends.
pub fn backup(
    state: &UtilityState,
    name: &str,
    only: Option<&str>,
    store: &str,
    full: bool,
    progress: &mut dyn FnMut(&Outcome),
) -> Result<Vec<Outcome>> {
    let d = deployment(state, name)?;
    let targets = with_data(d, name, only)?;
    let connector = crate::hosts::connector(state)?;
    let links = Links::new(&connector);
    let mut outcomes = Vec::new();
    for (component, vm) in targets {
        let request = Request::Backup {
            vm: vm_id(name, component),
            store: store.to_string(),
            devices: vm
                .spec
                .data_disks
                .iter()
                .map(|d| d.device.clone())
                .collect(),
            full,
        };
        let result = match links.call(&vm.alloc.host, &request) {
            Ok(Response::BackedUp { backups }) => Ok(backups),
            Ok(Response::Error { message, .. }) => Err(message),
            Ok(other) => Err(format!("host {} answered {other:?}", vm.alloc.host)),
            Err(e) => Err(e),
        };
        let outcome = Outcome {
            component: component.clone(),
            host: vm.alloc.host.clone(),
            result,
        };
        progress(&outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Asks the host of each appliance of `name` (or its component `only`)
/// with data disks what `request` makes of it; the first error ends it.
fn ask_each<T>(
    state: &UtilityState,
    name: &str,
    only: Option<&str>,
    request: impl Fn(VmId) -> Request,
    answer: impl Fn(Response) -> Option<T>,
) -> Result<Vec<(ComponentPath, T)>> {
    let d = deployment(state, name)?;
    let connector = crate::hosts::connector(state)?;
    let links = Links::new(&connector);
    let mut out = Vec::new();
    for (component, vm) in with_data(d, name, only)? {
        match links.call(&vm.alloc.host, &request(vm_id(name, component))) {
            Ok(Response::Error { message, .. }) => bail!("{message}"),
            Ok(response) => match answer(response) {
                Some(t) => out.push((component.clone(), t)),
                None => bail!("host {} answered out of turn", vm.alloc.host),
            },
            Err(e) => bail!("{e}"),
        }
    }
    Ok(out)
}

/// The restore points in `store` of the data disks of `name` (or its
/// component `only`), per appliance.
pub fn list(
    state: &UtilityState,
    name: &str,
    only: Option<&str>,
    store: &str,
) -> Result<Vec<(ComponentPath, Vec<Backup>)>> {
    ask_each(
        state,
        name,
        only,
        |vm| Request::Backups {
            vm,
            store: store.to_string(),
        },
        |r| match r {
            Response::BackupList { backups } => Some(backups),
            _ => None,
        },
    )
}

/// The restore points in `store` of another appliance, `from` (another
/// deployment's: production data for a test deployment), as the host of
/// `name`'s `component` reads them.
pub fn list_of(
    state: &UtilityState,
    name: &str,
    component: &str,
    store: &str,
    from: &VmId,
) -> Result<Vec<Backup>> {
    let listed = ask_each(
        state,
        name,
        Some(component),
        |_| Request::Backups {
            vm: from.clone(),
            store: store.to_string(),
        },
        |r| match r {
            Response::BackupList { backups } => Some(backups),
            _ => None,
        },
    )?;
    Ok(listed.into_iter().flat_map(|(_, b)| b).collect())
}

/// Which restore points a retention policy keeps (`cvl backup prune`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Keep {
    pub last: Option<u32>,
    pub daily: Option<u32>,
}

/// What a prune did to one appliance's restore points.
#[derive(Debug, Clone)]
pub struct Pruned {
    pub component: ComponentPath,
    pub dropped: Vec<Backup>,
    pub kept: Vec<Backup>,
}

/// Drops the restore points in `store` that `keep` does not keep, per
/// appliance: what was dropped and what is kept.
pub fn prune(
    state: &UtilityState,
    name: &str,
    only: Option<&str>,
    store: &str,
    keep: Keep,
) -> Result<Vec<Pruned>> {
    let pruned = ask_each(
        state,
        name,
        only,
        |vm| Request::PruneBackups {
            vm,
            store: store.to_string(),
            keep_last: keep.last,
            keep_daily: keep.daily,
        },
        |r| match r {
            Response::Pruned { dropped, kept } => Some((dropped, kept)),
            _ => None,
        },
    )?;
    Ok(pruned
        .into_iter()
        .map(|(component, (dropped, kept))| Pruned {
            component,
            dropped,
            kept,
        })
        .collect())
}

/// Every restore point in `store` checked, per appliance.
pub fn verify(
    state: &UtilityState,
    name: &str,
    only: Option<&str>,
    store: &str,
) -> Result<Vec<(ComponentPath, Vec<PointCheck>)>> {
    ask_each(
        state,
        name,
        only,
        |vm| Request::VerifyBackups {
            vm,
            store: store.to_string(),
        },
        |r| match r {
            Response::Verified { checks } => Some(checks),
            _ => None,
        },
    )
}

/// The restore point of `points` (one disk's, oldest first) that was the
/// newest at `at` (RFC 3339, or `YYYY-MM-DD HH:MM[:SS]`, UTC).
pub fn point_at<'a>(points: &'a [Backup], at: &str) -> Result<&'a Backup> {
    let when = humantime::parse_rfc3339_weak(at).map_err(|e| {
        anyhow::anyhow!(
            "`{at}` is not a time cvl reads ({e}): write it as 2026-12-06T14:00:00Z \
             or \"2026-12-06 14:00:00\" (UTC)"
        )
    })?;
    points
        .iter()
        .rfind(|b| humantime::parse_rfc3339_weak(&b.at).is_ok_and(|t| t <= when))
        .ok_or_else(|| match points.first() {
            Some(first) => anyhow::anyhow!(
                "no restore point is as old as {at}: the oldest is {} ({})",
                first.id,
                first.at
            ),
            None => anyhow::anyhow!("there are no restore points"),
        })
}

/// Puts the data disks of the stopped component back to the restore
/// points `chosen` names by device (a disk it does not name: its newest),
/// its own or `from`'s: per disk, the restore point put back and where the
/// data it had was kept.
pub fn restore(
    state: &UtilityState,
    name: &str,
    component: &str,
    store: &str,
    chosen: &std::collections::BTreeMap<String, String>,
    from: Option<&VmId>,
) -> Result<Vec<(String, String, String)>> {
    let d = deployment(state, name)?;
    let (path, vm) = with_data(d, name, Some(component))?.remove(0);
    let connector = crate::hosts::connector(state)?;
    let links = Links::new(&connector);
    let mut done = Vec::new();
    for disk in &vm.spec.data_disks {
        let request = Request::Restore {
            vm: vm_id(name, path),
            store: store.to_string(),
            device: disk.device.clone(),
            point: chosen.get(&disk.device).cloned(),
            from: from.cloned(),
        };
        match links.call(&vm.alloc.host, &request) {
            Ok(Response::Restored {
                device,
                point,
                kept,
            }) => done.push((device, point, kept)),
            Ok(Response::Error { message, .. }) => bail!("{message}"),
            Ok(other) => bail!("host {} answered {other:?}", vm.alloc.host),
            Err(e) => bail!("{e}"),
        }
    }
    Ok(done)
}

/// Which restore points a restore of `name`'s `component` (its data disks
/// `devices`) puts back, checked before anything stops: its own or those
/// of `of` (`DEPLOYMENT/PATH`, another deployment's appliance), restore
/// point `id`, or each disk's newest at `at`, or (neither) each disk's
/// newest. The appliance whose points they are, and the point per device
/// (a device it does not name: its newest).
#[allow(clippy::too_many_arguments)]
pub fn choose(
    state: &UtilityState,
    name: &str,
    component: &str,
    store: &str,
    of: Option<&str>,
    id: Option<&str>,
    at: Option<&str>,
) -> Result<(Option<VmId>, std::collections::BTreeMap<String, String>)> {
    let (_, vm) = with_data(deployment(state, name)?, name, Some(component))?.remove(0);
    let devices: Vec<&String> = vm.spec.data_disks.iter().map(|d| &d.device).collect();
    let from = match of {
        Some(of) => {
            let Some((deployment, path)) = of.split_once('/') else {
                bail!("--of {of}: say whose data as DEPLOYMENT/PATH (Production/l)");
            };
            Some(VmId {
                deployment: deployment.to_string(),
                path: path.to_string(),
            })
        }
        None => None,
    };
    let points: Vec<Backup> = match &from {
        Some(from) => list_of(state, name, component, store, from)?,
        None => list(state, name, Some(component), store)?
            .into_iter()
            .flat_map(|(_, b)| b)
            .collect(),
    };
    let whose = of.map_or(format!("{name}/{component}"), str::to_string);
    if let Some(of) = of {
        // Every data disk of this component needs one of the other's.
        if let Some(device) = devices
            .iter()
            .find(|d| !points.iter().any(|b| &b.device == **d))
        {
            bail!(
                "{of} has no restore point of a data disk {device} in {store} ({name}/{component} \
                 has one): nothing was restored"
            );
        }
    }
    match id {
        Some(id) if !points.iter().any(|b| b.id == id) => bail!(
            "{whose} has no restore point {id} in {store} (it has: {})",
            points
                .iter()
                .map(|b| b.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None if points.is_empty() => bail!("{whose} has no restore points in {store}"),
        _ => {}
    }
    let mut chosen = std::collections::BTreeMap::new();
    for device in devices {
        let of_disk: Vec<Backup> = points
            .iter()
            .filter(|b| &b.device == device)
            .cloned()
            .collect();
        let point = match (id, at) {
            (Some(id), _) => id.to_string(),
            (None, Some(at)) => point_at(&of_disk, at)
                .map_err(|e| anyhow::anyhow!("{whose} {device}: {e}"))?
                .id
                .clone(),
            (None, None) => continue,
        };
        chosen.insert(device.to_string(), point);
    }
    Ok((from, chosen))
}
