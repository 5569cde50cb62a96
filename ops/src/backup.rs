//! Backups of a deployment's data disks: which appliances have data disks
//! and on which host, each backed up in turn by its host's agent into a
//! backup store (a folder on that host; `executor/src/agent/backup.rs`
//! says what is in it), and restore points put back.

use anyhow::{bail, Result};
use cvl_executor::protocol::{Backup, Request, Response, VmId};
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

/// The restore points in `store` of the data disks of `name` (or its
/// component `only`), per appliance.
pub fn list(
    state: &UtilityState,
    name: &str,
    only: Option<&str>,
    store: &str,
) -> Result<Vec<(ComponentPath, Vec<Backup>)>> {
    let d = deployment(state, name)?;
    let connector = crate::hosts::connector(state)?;
    let links = Links::new(&connector);
    let mut out = Vec::new();
    for (component, vm) in with_data(d, name, only)? {
        let request = Request::Backups {
            vm: vm_id(name, component),
            store: store.to_string(),
        };
        match links.call(&vm.alloc.host, &request) {
            Ok(Response::BackupList { backups }) => out.push((component.clone(), backups)),
            Ok(Response::Error { message, .. }) => bail!("{message}"),
            Ok(other) => bail!("host {} answered {other:?}", vm.alloc.host),
            Err(e) => bail!("{e}"),
        }
    }
    Ok(out)
}

/// Puts the data disks of the stopped component back to restore point
/// `id` (each disk's newest when `None`): per disk, the restore point put
/// back and where the data it had was kept.
pub fn restore(
    state: &UtilityState,
    name: &str,
    component: &str,
    store: &str,
    id: Option<&str>,
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
            point: id.map(str::to_string),
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
