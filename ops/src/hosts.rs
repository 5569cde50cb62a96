//! The hosts appliances run on: the registered QEMU hosts, or this machine
//! when none is; and the connector that reaches each one's agent (a child
//! process here, `cvl host serve` over SSH elsewhere).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use cvl_executor::protocol::Fabric;
use cvl_executor::transport::ssh::{SshConnector, SshHost};
use cvl_executor::transport::{Hosts, LocalConnector};
use cvl_planner::model::{Host, UtilityState};

/// Where the host agent keeps its files on a registered host, unless
/// `cvl host add --root` says otherwise.
pub const DEFAULT_HOST_ROOT: &str = "/var/lib/cvl";

/// The name of the embedded default host: this machine.
pub const LOCAL_HOST: &str = "local";

/// The hosts to place on: the registered ones, or this machine.
pub fn hosts_or_local(registered: &[Host]) -> Vec<Host> {
    if !registered.is_empty() {
        return registered.to_vec();
    }
    vec![Host {
        name: LOCAL_HOST.to_string(),
        address: None,
        port: 22,
        host_key: None,
        memory_mib: local_memory_mib(),
        max_vms: 64,
        ..Default::default()
    }]
}

/// This machine's memory, from /proc/meminfo (4 GiB when unreadable).
fn local_memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(4096, |kib| kib / 1024)
}

/// Where this machine's host agent keeps VMs: `$CVL_HOST_ROOT`, else
/// `$CVL_HOME/host`.
pub fn host_root() -> PathBuf {
    std::env::var_os("CVL_HOST_ROOT")
        .filter(|r| !r.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| cvl_repo::settings::default_home().join("host"))
}

/// This machine, and the registered hosts over SSH. With two hosts or
/// more, each learns the others' addresses: VANs span them over VXLAN.
pub fn connector(state: &UtilityState) -> Result<Hosts> {
    let exe = std::env::current_exe().context("cannot find the cvl executable")?;
    let resolve = |h: &Host| -> Option<String> {
        let address = h.address.as_deref()?;
        use std::net::ToSocketAddrs;
        (address, h.port)
            .to_socket_addrs()
            .ok()?
            .next()
            .map(|a| a.ip().to_string())
    };
    let addresses: BTreeMap<&str, Option<String>> = state
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), resolve(h)))
        .collect();
    let hosts = state
        .hosts
        .iter()
        .filter_map(|h| {
            let address = h.address.clone()?;
            let fabric = addresses[h.name.as_str()].clone().and_then(|local| {
                let peers: Vec<String> = addresses
                    .iter()
                    .filter(|(n, _)| **n != h.name)
                    .filter_map(|(_, a)| a.clone())
                    .collect();
                // Peers for VXLAN; an uplink for public addresses.
                (!peers.is_empty() || h.uplink.is_some()).then(|| Fabric {
                    local,
                    peers,
                    uplink: h.uplink.clone(),
                })
            });
            Some((
                h.name.clone(),
                SshHost {
                    name: h.name.clone(),
                    address,
                    port: h.port,
                    user: h.user.clone().unwrap_or_else(|| "root".to_string()),
                    identity: h.identity.clone().map(PathBuf::from),
                    host_key: h.host_key.clone(),
                    root: h
                        .root
                        .clone()
                        .unwrap_or_else(|| DEFAULT_HOST_ROOT.to_string()),
                    fabric,
                },
            ))
        })
        .collect();
    Ok(Hosts {
        local: LocalConnector {
            exe: exe.clone(),
            root: std::path::absolute(host_root())?,
            name: LOCAL_HOST.to_string(),
        },
        ssh: SshConnector::new(hosts, exe)
            .remember_digest_in(cvl_repo::settings::default_home().join("cache/agent-digest")),
    })
}
