//! The utility's register of QEMU hosts: adding one (its SSH host key
//! checked against a fingerprint a person read on the host itself),
//! accepting a reinstalled host's new key, draining, and removing one that
//! runs nothing. Each is one state transaction; the command only parses
//! and prints.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cvl_executor::transport::ssh::HostKey;
use cvl_planner::model::{Change, Host};

use crate::hosts::LOCAL_HOST;

/// A host as `cvl host add` describes it.
#[derive(Debug, Clone)]
pub struct NewHost {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// A private key file, absolute.
    pub identity: Option<std::path::PathBuf>,
    /// Its SSH public key, OpenSSH format, when the person gave it.
    pub host_key: Option<String>,
    /// The fingerprint its key must have, when the person gave that.
    pub fingerprint: Option<String>,
    pub memory_mib: u64,
    pub max_vms: u32,
    pub uplink: Option<String>,
    pub root: String,
}

/// Registers `new` (or changes its record; a drain stays): its name, user
/// and root checked, its host key taken from the person or scanned and
/// held to their fingerprint.
pub fn add(new: NewHost) -> Result<()> {
    let plain = |text: &str, extra: &str| {
        !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    };
    let name = &new.name;
    if !plain(name, "-_.") {
        bail!("host name `{name}` must be letters, digits, `-`, `_` and `.`");
    }
    if name == LOCAL_HOST {
        bail!("`{LOCAL_HOST}` is this machine's name in the utility: choose another");
    }
    let root = &new.root;
    if !root.starts_with('/') || root.split('/').any(|c| c == "..") || !plain(root, "/-_.") {
        bail!("--root {root}: give an absolute path of letters, digits, `/`, `-`, `_` and `.`");
    }
    if !plain(&new.user, "-_.") {
        bail!(
            "--user {}: give a user name of letters, digits, `-`, `_` and `.`",
            new.user
        );
    }
    let identity = match &new.identity {
        Some(path) => {
            let path = std::path::absolute(path)?;
            if !path.is_file() {
                bail!("--identity {}: no such key file", path.display());
            }
            Some(path.display().to_string())
        }
        None => None,
    };
    let host_key = match &new.host_key {
        Some(key) => HostKey::parse(key)
            .ok()
            .filter(|k| k.kind.starts_with("ssh-") || k.kind.starts_with("ecdsa-"))
            .context(
                "--host-key must be an OpenSSH public key (`ssh-ed25519 AAAA...`), as \
                 `ssh-keyscan -t ed25519 ADDRESS` prints it",
            )?
            .openssh(),
        None => scan_and_check(name, &new.address, new.port, new.fingerprint.as_deref())?,
    };
    let mut store = crate::state::open()?;
    let state = store.load()?;
    let old = state.hosts.iter().find(|h| h.name == *name);
    let host = Host {
        name: name.clone(),
        address: Some(new.address),
        port: new.port,
        host_key: Some(host_key),
        memory_mib: new.memory_mib,
        max_vms: new.max_vms,
        uplink: new.uplink,
        user: Some(new.user),
        identity,
        root: Some(new.root),
        // Changing a host's record does not undo a drain, a fence command
        // or a fencing.
        draining: old.is_some_and(|h| h.draining),
        drain_live: old.is_some_and(|h| h.drain_live),
        fence: old.and_then(|h| h.fence.clone()),
        fenced: old.and_then(|h| h.fenced.clone()),
    };
    store.commit(&[Change::HostAdded(host)])?;
    Ok(())
}

/// Drains `name` (or with `undo`, lets it take VMs again); the
/// deployments that run something on it, whose next apply moves it.
/// With `live`, their running VMs move live.
pub fn drain(name: &str, undo: bool, live: bool) -> Result<BTreeSet<String>> {
    let mut store = crate::state::open()?;
    let state = store.load()?;
    let mut host = registered(&state.hosts, name)?.clone();
    host.draining = !undo;
    host.drain_live = !undo && live;
    store.commit(&[Change::HostAdded(host)])?;
    Ok(state
        .deployments
        .iter()
        .filter(|(_, d)| d.vms.values().any(|vm| vm.alloc.host == name))
        .map(|(d, _)| d.clone())
        .collect())
}

/// Accepts the key `name` presents now, if it has `fingerprint` (after
/// the host was reinstalled).
pub fn trust(name: &str, fingerprint: &str) -> Result<()> {
    let mut store = crate::state::open()?;
    let state = store.load()?;
    let mut host = registered(&state.hosts, name)?.clone();
    let address = host.address.clone().unwrap_or_default();
    host.host_key = Some(scan_and_check(
        name,
        &address,
        host.port,
        Some(fingerprint),
    )?);
    store.commit(&[Change::HostAdded(host)])?;
    Ok(())
}

/// Unregisters `name`, which must run nothing.
pub fn remove(name: &str) -> Result<()> {
    let mut store = crate::state::open()?;
    let state = store.load()?;
    registered(&state.hosts, name)?;
    let running: Vec<String> = state
        .deployments
        .iter()
        .flat_map(|(d, s)| {
            s.vms
                .iter()
                .filter(|(_, vm)| vm.alloc.host == name)
                .map(move |(p, _)| format!("{d}/{}", p.0))
        })
        .collect();
    if !running.is_empty() {
        bail!(
            "host {name} still runs {}: stop or move them first",
            running.join(", ")
        );
    }
    store.commit(&[Change::HostRemoved {
        name: name.to_string(),
    }])?;
    Ok(())
}

pub(crate) fn registered<'a>(hosts: &'a [Host], name: &str) -> Result<&'a Host> {
    hosts
        .iter()
        .find(|h| h.name == name)
        .with_context(|| format!("no host named `{name}` is registered (see `cvl host list`)"))
}

/// The host's key, as its SSH server presents it, if it has `fingerprint`;
/// without one, the fingerprint is said for the person to check and
/// nothing is recorded.
fn scan_and_check(
    name: &str,
    address: &str,
    port: u16,
    fingerprint: Option<&str>,
) -> Result<String> {
    let key = cvl_executor::transport::ssh::scan(name, address, port, Duration::from_secs(20))
        .map_err(anyhow::Error::msg)?;
    match fingerprint {
        Some(want) if want.trim() == key.fingerprint() => Ok(key.openssh()),
        Some(want) => bail!(
            "host {name} at {address}:{port} presents the {} key {}, not {want}: nothing was \
             recorded. If the host was reinstalled, check its key on the host itself \
             (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`)",
            key.kind,
            key.fingerprint()
        ),
        None => bail!(
            "host {name} at {address}:{port} presents the {} key\n  {}\nCheck it on the host \
             itself (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then run the same \
             command with --fingerprint {}. Nothing was recorded.",
            key.kind,
            key.fingerprint(),
            key.fingerprint()
        ),
    }
}
