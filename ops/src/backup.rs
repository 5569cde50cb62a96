//! Backups of a deployment's data disks: which appliances have data disks
//! and on which host, each backed up in turn by its host's agent into a
//! backup store (`executor/src/agent/store.rs` says what is in it), and
//! restore points put back.
//!
//! A store is a folder on each appliance's own host, or a folder on one
//! registered host ([`Store`]). For the latter, cvl carries the files: the
//! appliance's host makes the new restore point in its outbox from the
//! store's newest, cvl relays it over the two hosts' SSH connections (each
//! host key pinned) into the store, where it is added only if it still
//! follows the store's newest; a restore carries the point's chain the
//! other way.

use anyhow::{bail, Result};
use cvl_executor::protocol::{point_dest, Backup, Incoming, PointCheck, Request, Response, VmId};
use cvl_executor::transport::Links;
use cvl_planner::model::{ComponentPath, DeploymentState, UtilityState, VmRecord};

/// Where a backup store is, as `--to` and `--backup-to` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// `/srv/cvl-backups` or `file:///srv/cvl-backups`: a folder on each
    /// appliance's own host.
    Beside(String),
    /// `ssh://HOST/srv/cvl-backups`: a folder on the registered host HOST
    /// (reached as every host is, its key pinned by `cvl host add`).
    On { host: String, path: String },
}

impl Store {
    /// Reads a store's URL; a host it names must be registered in `state`.
    pub fn registered(url: &str, state: &UtilityState) -> Result<Store> {
        let store = Store::parse(url)?;
        if let Store::On { host, .. } = &store {
            if !state.hosts.iter().any(|h| &h.name == host) {
                bail!(
                    "the backup store `{url}` is on `{host}`, which is not a registered host \
                     (cvl host list): register it first, as a store only with \
                     `cvl host add {host} --address ADDRESS --fingerprint SHA256:... --memory 0 \
                     --max-vms 0` (its key is pinned like every host's)"
                );
            }
        }
        Ok(store)
    }

    /// Reads a store's URL (`/DIR`, `file:///DIR`, `ssh://HOST/DIR`).
    pub fn parse(url: &str) -> Result<Store> {
        let absolute = |path: &str| -> Result<String> {
            if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
                bail!(
                    "the backup store `{url}` is not an absolute folder: write /srv/cvl-backups, \
                     file:///srv/cvl-backups or ssh://HOST/srv/cvl-backups"
                );
            }
            Ok(path.to_string())
        };
        if let Some(rest) = url.strip_prefix("ssh://") {
            let Some((host, path)) = rest.split_once('/') else {
                bail!("the backup store `{url}` names no folder: write ssh://HOST/srv/cvl-backups");
            };
            if host.is_empty() || host.contains(['@', ':']) {
                bail!(
                    "the backup store `{url}`: name the host as `cvl host list` does \
                     (ssh://HOST/DIR); its address, user and key are those it was registered with"
                );
            }
            return Ok(Store::On {
                host: host.to_string(),
                path: absolute(&format!("/{path}"))?,
            });
        }
        if url.contains("://") && !url.starts_with("file://") {
            bail!(
                "the backup store `{url}` is not a folder cvl reaches: use /srv/cvl-backups, \
                 file:///srv/cvl-backups or ssh://HOST/srv/cvl-backups"
            );
        }
        Ok(Store::Beside(absolute(url.trim_start_matches("file://"))?))
    }

    /// The store's name for the host that makes its restore points: its
    /// folder there, or (on another host) its URL, which names the dirty
    /// bitmaps that follow its points.
    fn name_for(&self, host: &str) -> String {
        match (self, self.elsewhere(host)) {
            (Store::On { host, path }, Some(_)) => format!("ssh://{host}{path}"),
            _ => self.path().to_string(),
        }
    }

    /// The store's name in the dirty bitmaps of its points, for the host
    /// `host` when that is not what [`Store::name_for`] gives it: a store
    /// on that very host is named as the other hosts name it, so that the
    /// bitmaps follow a VM from one host to another (a live move carries
    /// them) and its next backup is incremental.
    fn bitmaps_name(&self, host: &str) -> Option<String> {
        match self {
            Store::On { host: on, path } if on == host => Some(format!("ssh://{on}{path}")),
            _ => None,
        }
    }

    /// The folder, on whichever host it is.
    pub fn path(&self) -> &str {
        match self {
            Store::Beside(path) | Store::On { path, .. } => path,
        }
    }

    /// The host that keeps an appliance's restore points when it runs on
    /// `host`, when that is another host.
    fn elsewhere(&self, host: &str) -> Option<&str> {
        match self {
            Store::On { host: on, .. } if on != host => Some(on),
            _ => None,
        }
    }

    /// The host that holds the store for an appliance on `host`.
    fn host_for<'a>(&'a self, host: &'a str) -> &'a str {
        self.elsewhere(host).unwrap_or(host)
    }
}

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
    let store = Store::registered(store, state)?;
    let connector = crate::hosts::connector(state)?;
    let links = Links::new(&connector);
    let mut outcomes = Vec::new();
    for (component, vm) in targets {
        let id = vm_id(name, component);
        let host = &vm.alloc.host;
        let result = (|| -> Result<Vec<Backup>, String> {
            let elsewhere = match store.elsewhere(host) {
                Some(on) => Some(points(&links, on, &id, store.path())?),
                None => None,
            };
            let request = Request::Backup {
                vm: id.clone(),
                store: store.name_for(host),
                bitmaps: store.bitmaps_name(host),
                devices: vm
                    .spec
                    .data_disks
                    .iter()
                    .map(|d| d.device.clone())
                    .collect(),
                full,
                elsewhere,
            };
            let made = match call(&links, host, &request)? {
                Response::BackedUp { backups } => backups,
                other => return Err(format!("host {host} answered {other:?}")),
            };
            if let Some(on) = store.elsewhere(host) {
                for point in &made {
                    send_point(&links, (host, on), &id, &store, point)?;
                }
            }
            Ok(made)
        })();
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

/// A host's answer, its error as an error.
fn call(links: &Links, host: &str, request: &Request) -> Result<Response, String> {
    match links.call(host, request)? {
        Response::Error { message, .. } => Err(format!("host {host}: {message}")),
        response => Ok(response),
    }
}

/// The restore points of `vm` in the store folder `path` on `host`.
fn points(links: &Links, host: &str, vm: &VmId, path: &str) -> Result<Vec<Backup>, String> {
    let ask = Request::Backups {
        vm: vm.clone(),
        store: path.to_string(),
    };
    match call(links, host, &ask)? {
        Response::BackupList { backups } => Ok(backups),
        other => Err(format!("host {host} answered {other:?}")),
    }
}

/// Carries a restore point `host` made in its outbox into the store on
/// `on`, where it is added; then `host` lets it go.
fn send_point(
    links: &Links,
    (host, on): (&str, &str),
    vm: &VmId,
    store: &Store,
    point: &Backup,
) -> Result<(), String> {
    let incoming = Incoming {
        dest: point_dest(vm, &point.device, &point.file),
        sha256: point.sha256.clone(),
        size: point.size,
    };
    links.relay(host, on, &incoming, |offset| Request::ReadPoint {
        vm: vm.clone(),
        store: None,
        device: point.device.clone(),
        file: point.file.clone(),
        offset,
        len: 4 << 20,
    })?;
    let add = Request::AddPoint {
        vm: vm.clone(),
        store: store.path().to_string(),
        point: point.clone(),
    };
    call(links, on, &add)?;
    let sent = Request::PointSent {
        vm: vm.clone(),
        store: store.name_for(host),
        point: point.clone(),
    };
    call(links, host, &sent)?;
    Ok(())
}

/// Carries restore point `point` of `owner`'s disk, with its chain, from
/// the store on `on` to `host`; the chain, newest first.
fn fetch_chain(
    links: &Links,
    on: &str,
    host: &str,
    owner: &VmId,
    path: &str,
    device: &str,
    point: Option<&str>,
) -> Result<Vec<Backup>, String> {
    let all: Vec<Backup> = points(links, on, owner, path)?
        .into_iter()
        .filter(|b| b.device == device)
        .collect();
    let mut next = match point {
        Some(id) => all.iter().find(|b| b.id == id),
        None => all.last(),
    };
    let mut chain = Vec::new();
    while let Some(b) = next {
        if chain.iter().any(|c: &Backup| c.id == b.id) {
            return Err(format!(
                "the store on {on} lists a chain that loops at {}",
                b.id
            ));
        }
        chain.push(b.clone());
        next = b
            .parent
            .as_ref()
            .and_then(|p| all.iter().find(|x| &x.id == p));
    }
    for b in &chain {
        let incoming = Incoming {
            dest: point_dest(owner, device, &b.file),
            sha256: b.sha256.clone(),
            size: b.size,
        };
        links.relay(on, host, &incoming, |offset| Request::ReadPoint {
            vm: owner.clone(),
            store: Some(path.to_string()),
            device: device.to_string(),
            file: b.file.clone(),
            offset,
            len: 4 << 20,
        })?;
    }
    chain.reverse();
    Ok(chain)
}

/// Asks the host that keeps the restore points of each appliance of
/// `name` (or its component `only`) with data disks what `request` (given
/// the store's folder there) makes of them; the first error ends it.
fn ask_each<T>(
    state: &UtilityState,
    name: &str,
    only: Option<&str>,
    store: &str,
    request: impl Fn(VmId, String) -> Request,
    answer: impl Fn(Response) -> Option<T>,
) -> Result<Vec<(ComponentPath, T)>> {
    let d = deployment(state, name)?;
    let store = Store::registered(store, state)?;
    let connector = crate::hosts::connector(state)?;
    let links = Links::new(&connector);
    let mut out = Vec::new();
    for (component, vm) in with_data(d, name, only)? {
        let host = store.host_for(&vm.alloc.host);
        let response = call(
            &links,
            host,
            &request(vm_id(name, component), store.path().to_string()),
        )
        .map_err(anyhow::Error::msg)?;
        match answer(response) {
            Some(t) => out.push((component.clone(), t)),
            None => bail!("host {host} answered out of turn"),
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
        store,
        |vm, store| Request::Backups { vm, store },
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
        store,
        |_, store| Request::Backups {
            vm: from.clone(),
            store,
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
        store,
        |vm, store| Request::PruneBackups {
            vm,
            store,
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
        store,
        |vm, store| Request::VerifyBackups { vm, store },
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
    let store = Store::registered(store, state)?;
    let connector = crate::hosts::connector(state)?;
    let links = Links::new(&connector);
    let host = &vm.alloc.host;
    let id = vm_id(name, path);
    let mut done = Vec::new();
    for disk in &vm.spec.data_disks {
        let point = chosen.get(&disk.device).cloned();
        let chain = match store.elsewhere(host) {
            Some(on) => Some(
                fetch_chain(
                    &links,
                    on,
                    host,
                    from.unwrap_or(&id),
                    store.path(),
                    &disk.device,
                    point.as_deref(),
                )
                .map_err(anyhow::Error::msg)?,
            ),
            None => None,
        };
        let request = Request::Restore {
            vm: id.clone(),
            store: store.name_for(host),
            device: disk.device.clone(),
            point,
            from: from.cloned(),
            chain,
            bitmaps: store.bitmaps_name(host),
        };
        match call(&links, host, &request).map_err(anyhow::Error::msg)? {
            Response::Restored {
                device,
                point,
                kept,
            } => done.push((device, point, kept)),
            other => bail!("host {host} answered {other:?}"),
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

/// The data disks of `component`, whose host `from` is fenced, put on its
/// new host `to` from each disk's newest restore point in its deployment's
/// backup store: what was put back, with the data's age when the host was
/// fenced (what was lost: the RPO); or why it cannot be, and then the
/// appliance must not start empty.
pub fn recover(
    state: &UtilityState,
    name: &str,
    component: &ComponentPath,
    from: &str,
    to: &str,
) -> Result<String, String> {
    let d = deployment(state, name).map_err(|e| e.to_string())?;
    let vm = d
        .vms
        .get(component)
        .ok_or_else(|| format!("{name}/{component} is not in the state"))?;
    if vm.spec.data_disks.is_empty() {
        return Ok("no data disks: nothing restored".to_string());
    }
    let unrecoverable = |why: String| {
        format!(
            "{name}/{component} has data disks and {why}: it is not started empty. Bring its \
             host back, or start it empty (`cvl apply FILE --accept-empty {component}`) and put \
             data back with `cvl restore`"
        )
    };
    let Some(policy) = &d.policy.backup else {
        return Err(unrecoverable(format!(
            "{name} has no backup store (`cvl policy set {name} --backup-to URL`)"
        )));
    };
    let store = Store::registered(&policy.to, state).map_err(|e| e.to_string())?;
    let on = store.host_for(to);
    if on == from {
        return Err(unrecoverable(format!(
            "its backups ({}) are on the fenced host {from}",
            policy.to
        )));
    }
    let fenced = state
        .hosts
        .iter()
        .find(|h| h.name == from)
        .and_then(|h| h.fenced.as_deref())
        .and_then(crate::fence::fenced_at);
    let connector = crate::hosts::connector(state).map_err(|e| e.to_string())?;
    let links = Links::new(&connector);
    let id = vm_id(name, component);
    let began = std::time::Instant::now();
    let all = points(&links, on, &id, store.path())?;
    let mut said = Vec::new();
    for disk in &vm.spec.data_disks {
        let Some(newest) = all.iter().rfind(|b| b.device == disk.device) else {
            return Err(unrecoverable(format!(
                "{} has no restore point of its disk {}",
                policy.to, disk.device
            )));
        };
        let chain = match store.elsewhere(to) {
            Some(on) => Some(fetch_chain(
                &links,
                on,
                to,
                &id,
                store.path(),
                &disk.device,
                Some(&newest.id),
            )?),
            None => None,
        };
        let request = Request::Restore {
            vm: id.clone(),
            store: store.name_for(to),
            device: disk.device.clone(),
            point: Some(newest.id.clone()),
            from: None,
            chain,
            bitmaps: store.bitmaps_name(to),
        };
        match call(&links, to, &request)? {
            Response::Restored { point, .. } => {
                let age = humantime::parse_rfc3339_weak(&newest.at)
                    .ok()
                    .zip(fenced)
                    .and_then(|(at, fenced)| fenced.duration_since(at).ok())
                    .map_or("unknown".to_string(), |a| format!("{} s", a.as_secs()));
                said.push(format!(
                    "{} from restore point {point} of {} (RPO {age})",
                    disk.device, newest.at
                ));
            }
            other => return Err(format!("host {to} answered {other:?}")),
        }
    }
    Ok(format!(
        "data restored in {:.1} s: {}",
        began.elapsed().as_secs_f64(),
        said.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_a_folder_beside_the_appliance_or_on_a_named_host() {
        let beside = |p: &str| Store::Beside(p.to_string());
        assert_eq!(Store::parse("/srv/b").unwrap(), beside("/srv/b"));
        assert_eq!(Store::parse("file:///srv/b").unwrap(), beside("/srv/b"));
        assert_eq!(
            Store::parse("ssh://backup1/srv/b").unwrap(),
            Store::On {
                host: "backup1".into(),
                path: "/srv/b".into()
            }
        );
        for (bad, says) in [
            ("srv/b", "not an absolute folder"),
            ("/srv/../etc", "not an absolute folder"),
            ("ssh://backup1", "names no folder"),
            (
                "ssh://root@backup1/srv",
                "name the host as `cvl host list` does",
            ),
            (
                "ssh://backup1:22/srv",
                "name the host as `cvl host list` does",
            ),
            ("s3://bucket/b", "not a folder cvl reaches"),
        ] {
            let e = Store::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let state = UtilityState::default();
        let e = Store::registered("ssh://backup1/srv/b", &state)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a registered host"), "{e}");
    }
}
