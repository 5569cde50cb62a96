//! The host's links: a tap per interface, a bridge per VAN (`cvlbrN`)
//! joined to the other hosts by VXLAN (`cvxN`), the public bridge
//! (`cvlpub`) and the routes to public addresses. One change at a time,
//! across agent processes (the network lock).

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::{failed, Fail, HostAgent};
use crate::protocol::*;

impl HostAgent {
    /// A tap per interface of the VM, on its VAN's bridge or the public
    /// one, with a route to a public address when the host has an uplink.
    /// The VM's folder records its taps and routes (removed with it when it
    /// goes to the attic). Returns QEMU's netdevs: id, tap, MAC.
    pub(super) fn attach_nics(
        &self,
        spec: &StartSpec,
        dir: &Path,
        uid: u32,
    ) -> Result<Vec<(String, String, String)>, Fail> {
        let mut netdevs = Vec::new();
        let mut routes: Vec<String> = Vec::new();
        let _network = self.network_lock()?;
        for (i, nic) in spec.nics.iter().enumerate() {
            let tap = tap_name(&spec.vm, &nic.name);
            let bridge = match (nic.network, nic.public) {
                (Some(n), _) => Some(format!("cvlbr{n}")),
                (None, true) => Some("cvlpub".to_string()),
                (None, false) => None,
            };
            if let Some(n) = nic.network {
                self.ensure_van(n)?;
            }
            ensure_tap(&tap, bridge.as_deref(), uid)?;
            if let (true, Some(ip)) = (nic.public, &nic.ip) {
                if let Some(uplink) = self.fabric().and_then(|f| f.uplink) {
                    // A VM arriving by migration runs elsewhere until it
                    // arrives: its address stays routed there till then
                    // ([`HostAgent::route_arrived`]).
                    if !spec.incoming {
                        self.route_public(ip, &uplink)?;
                    }
                    routes.push(ip.clone());
                }
            }
            netdevs.push((format!("n{i}"), tap, nic.mac.clone()));
        }
        drop(_network);
        let taps: String = netdevs
            .iter()
            .map(|(_, tap, _)| format!("{tap}\n"))
            .collect();
        std::fs::write(dir.join("taps"), taps).map_err(|e| failed(e.to_string()))?;
        let routes: String = routes.iter().map(|ip| format!("{ip}\n")).collect();
        std::fs::write(dir.join("routes"), routes).map_err(|e| failed(e.to_string()))?;
        Ok(netdevs)
    }

    /// A VM that arrived by migration: the public addresses its start
    /// recorded are routed here now, and announced.
    pub(super) fn route_arrived(&self, dir: &Path) -> Result<(), Fail> {
        let routes = std::fs::read_to_string(dir.join("routes")).unwrap_or_default();
        let Some(uplink) = self.fabric().and_then(|f| f.uplink) else {
            return Ok(());
        };
        let _network = self.network_lock()?;
        for route in routes.lines().filter(|r| !r.is_empty()) {
            self.route_public(route, &uplink)?;
        }
        Ok(())
    }

    /// One change to this host's links at a time, across agent processes.
    fn network_lock(&self) -> Result<std::fs::File, Fail> {
        let path = self.root.join("locks").join("network.lock");
        std::fs::create_dir_all(path.parent().unwrap()).map_err(|e| failed(e.to_string()))?;
        let file = std::fs::File::create(&path)
            .map_err(|e| failed(format!("cannot lock {}: {e}", path.display())))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(failed(format!("cannot lock {}", path.display())));
        }
        Ok(file)
    }

    fn fabric(&self) -> Option<Fabric> {
        let text = std::fs::read_to_string(self.root.join("fabric.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Records the fabric and brings every VXLAN link here up to date.
    pub(super) fn set_fabric(&self, fabric: &Fabric) -> Result<Response, Fail> {
        let addresses = std::iter::once(&fabric.local).chain(&fabric.peers);
        if let Some(bad) = addresses
            .into_iter()
            .find(|a| a.parse::<std::net::IpAddr>().is_err())
        {
            return Err((
                HostErrorKind::BadRequest,
                format!("the fabric names `{bad}`, which is not an IP address"),
            ));
        }
        if let Some(uplink) = &fabric.uplink {
            if !link_exists(uplink) {
                return Err(failed(format!(
                    "the uplink {uplink} does not exist on this host (see `ip link`); \
                     change it with `cvl host add ... --uplink IFACE`"
                )));
            }
        }
        let _network = self.network_lock()?;
        let path = self.root.join("fabric.json");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(fabric).expect("serializes"))
            .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
        let mut links = 0;
        for entry in std::fs::read_dir("/sys/class/net")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(n) = name.strip_prefix("cvx").and_then(|n| n.parse::<u32>().ok()) {
                self.ensure_vxlan(n, fabric)?;
                links += 1;
            }
        }
        Ok(Response::FabricSet { links })
    }

    /// The bridge of VAN `n`, joined to the other hosts when there are any.
    /// Called with the network lock held.
    fn ensure_van(&self, n: u32) -> Result<(), Fail> {
        let bridge = format!("cvlbr{n}");
        if !link_exists(&bridge) {
            ip(&["link", "add", &bridge, "type", "bridge"])?;
        }
        if !link_up(&bridge) {
            ip(&["link", "set", &bridge, "up"])?;
        }
        match self.fabric() {
            Some(fabric) if !fabric.peers.is_empty() => self.ensure_vxlan(n, &fabric),
            _ => Ok(()),
        }
    }

    /// `cvxN`: VNI `n`, on the bridge `cvlbrN`, flooding to every peer
    /// (head-end replication, so no multicast is needed between hosts).
    fn ensure_vxlan(&self, n: u32, fabric: &Fabric) -> Result<(), Fail> {
        let vx = format!("cvx{n}");
        let bridge = format!("cvlbr{n}");
        if !link_exists(&vx) {
            let vni = n.to_string();
            let mut args = vec![
                "link",
                "add",
                &vx,
                "type",
                "vxlan",
                "id",
                &vni,
                "dstport",
                "4789",
                "local",
                &fabric.local,
            ];
            if let Some(uplink) = &fabric.uplink {
                args.extend(["dev", uplink]);
            }
            ip(&args)?;
        }
        if link_master(&vx).as_deref() != Some(bridge.as_str()) {
            ip(&["link", "set", &vx, "master", &bridge])?;
        }
        if !link_up(&vx) {
            ip(&["link", "set", &vx, "up"])?;
        }
        let shown = Command::new("bridge")
            .args(["fdb", "show", "dev", &vx])
            .output()
            .map_err(|e| failed(format!("cannot run bridge (iproute2): {e}")))?;
        let have: Vec<String> = String::from_utf8_lossy(&shown.stdout)
            .lines()
            .filter(|l| l.starts_with("00:00:00:00:00:00 "))
            .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "dst").nth(1))
            .map(str::to_string)
            .collect();
        for peer in &fabric.peers {
            if !have.contains(peer) {
                bridge_fdb(&["append", "00:00:00:00:00:00", "dev", &vx, "dst", peer])?;
            }
        }
        for gone in have.iter().filter(|p| !fabric.peers.contains(p)) {
            bridge_fdb(&["del", "00:00:00:00:00:00", "dev", &vx, "dst", gone])?;
        }
        Ok(())
    }

    /// A public address on the uplink's network, without touching the
    /// uplink itself: the host routes the address to `cvlpub` and answers
    /// ARP for it on the uplink (and for the uplink's side on `cvlpub`),
    /// forwarding between the two.
    fn route_public(&self, address: &str, uplink: &str) -> Result<(), Fail> {
        let addr: std::net::Ipv4Addr = address.parse().map_err(|_| {
            (
                HostErrorKind::BadRequest,
                format!("`{address}` is not an IPv4 address"),
            )
        })?;
        for (path, value) in [
            ("/proc/sys/net/ipv4/ip_forward".to_string(), "1"),
            (format!("/proc/sys/net/ipv4/conf/{uplink}/proxy_arp"), "1"),
            ("/proc/sys/net/ipv4/conf/cvlpub/proxy_arp".to_string(), "1"),
        ] {
            if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
                continue;
            }
            std::fs::write(&path, value).map_err(|e| {
                failed(format!(
                    "cannot set {path} (public addresses are routed from the uplink): {e}"
                ))
            })?;
        }
        ip(&["route", "replace", &format!("{addr}/32"), "dev", "cvlpub"])?;
        // The neighbours learn at once that the address is here now (it may
        // have been on another host a moment ago). Not fatal: without it
        // they find it when their ARP entry is next probed.
        if let Err(e) = super::announce::gratuitous_arp(uplink, addr, 3) {
            eprintln!("cvl host agent: no gratuitous ARP for {addr} on {uplink}: {e}");
        }
        Ok(())
    }

    /// Removes a VM's taps, and a VAN's bridge and VXLAN link with the last
    /// VM of that VAN on this host.
    pub(super) fn remove_taps(&self, dir: &Path) -> Result<(), Fail> {
        if let Ok(routes) = std::fs::read_to_string(dir.join("routes")) {
            for route in routes.lines() {
                if route.parse::<std::net::Ipv4Addr>().is_ok() {
                    let _ = ip(&["route", "del", &format!("{route}/32"), "dev", "cvlpub"]);
                }
            }
        }
        let Ok(taps) = std::fs::read_to_string(dir.join("taps")) else {
            return Ok(());
        };
        let _network = self.network_lock()?;
        let mut bridges = Vec::new();
        for tap in taps
            .lines()
            .filter(|t| t.starts_with("cvt") && t.len() <= 15)
        {
            if link_exists(tap) {
                bridges.extend(link_master(tap));
                ip(&["link", "del", tap])?;
            }
        }
        for bridge in bridges {
            let Some(n) = bridge.strip_prefix("cvlbr") else {
                continue;
            };
            let ports: Vec<String> =
                std::fs::read_dir(Path::new("/sys/class/net").join(&bridge).join("brif"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
            if ports.iter().all(|p| *p == format!("cvx{n}")) {
                if ports.is_empty() {
                    ip(&["link", "del", &bridge])?;
                } else {
                    ip(&["link", "del", &format!("cvx{n}")])?;
                    ip(&["link", "del", &bridge])?;
                }
            }
        }
        Ok(())
    }
}

/// `cvt` and 8 hex digits of the VM and interface: unique and within
/// the kernel's 15-character limit.
pub fn tap_name(vm: &VmId, nic: &str) -> String {
    let digest = Sha256::digest(format!("{}\0{}\0{nic}", vm.deployment, vm.path).as_bytes());
    format!(
        "cvt{:02x}{:02x}{:02x}{:02x}",
        digest[0], digest[1], digest[2], digest[3]
    )
}

fn ip(args: &[&str]) -> Result<(), Fail> {
    iproute2("ip", &[], args)
}

fn bridge_fdb(args: &[&str]) -> Result<(), Fail> {
    iproute2("bridge", &["fdb"], args)
}

fn iproute2(program: &str, first: &[&str], args: &[&str]) -> Result<(), Fail> {
    let out = Command::new(program)
        .args(first)
        .args(args)
        .output()
        .map_err(|e| failed(format!("cannot run {program} (iproute2): {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(format!(
            "{program} {} failed: {} (VANs need root and /dev/net/tun on the host)",
            first
                .iter()
                .chain(args)
                .copied()
                .collect::<Vec<_>>()
                .join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Whether a link is up (IFF_UP in its sysfs flags).
fn link_up(name: &str) -> bool {
    std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("flags"))
        .ok()
        .and_then(|f| u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).ok())
        .is_some_and(|flags| flags & 1 != 0)
}

/// The bridge a link is enslaved to, from sysfs.
fn link_master(name: &str) -> Option<String> {
    std::fs::read_link(Path::new("/sys/class/net").join(name).join("master"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// The uid a tap belongs to (`-1`: anyone with CAP_NET_ADMIN).
fn tap_owner(name: &str) -> Option<i64> {
    std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("owner"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
}

/// The tap `tap`, the VM's (`uid`'s: its jailed QEMU attaches to it
/// through /dev/net/tun with no capability), up, on `bridge`.
/// The public bridge's MAC, the same on every host (locally administered:
/// 02 then "CVL"). A guest's ARP entry for the uplink's side (answered by
/// proxy ARP on `cvlpub`) holds it; after a live move the guest keeps that
/// entry, and it must still lead somewhere. Each host's `cvlpub` is its own
/// segment, so the hosts never see each other's.
const PUBLIC_BRIDGE_MAC: &str = "02:43:56:4c:00:01";

/// The MAC a bridge must have, if one.
fn bridge_mac(bridge: &str) -> Option<&'static str> {
    (bridge == "cvlpub").then_some(PUBLIC_BRIDGE_MAC)
}

fn link_mac(link: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/class/net/{link}/address"))
        .ok()
        .map(|m| m.trim().to_string())
}

fn ensure_tap(tap: &str, bridge: Option<&str>, uid: u32) -> Result<(), Fail> {
    // Already as wanted (a restart): no process to spawn.
    if link_exists(tap)
        && tap_owner(tap) == Some(i64::from(uid))
        && link_up(tap)
        && link_master(tap).as_deref() == bridge
        && bridge.is_none_or(link_up)
        && bridge
            .and_then(bridge_mac)
            .is_none_or(|mac| link_mac("cvlpub").as_deref() == Some(mac))
    {
        return Ok(());
    }
    if link_exists(tap) && tap_owner(tap) != Some(i64::from(uid)) {
        // Made for another owner (an unjailed QEMU before): made again.
        ip(&["link", "del", tap])?;
    }
    if let Some(bridge) = bridge {
        if !link_exists(bridge) {
            ip(&["link", "add", bridge, "type", "bridge"])?;
        }
        if let Some(mac) = bridge_mac(bridge) {
            if link_mac(bridge).as_deref() != Some(mac) {
                ip(&["link", "set", bridge, "address", mac])?;
            }
        }
        ip(&["link", "set", bridge, "up"])?;
    }
    if !link_exists(tap) {
        let uid = uid.to_string();
        ip(&[
            "tuntap", "add", "dev", tap, "mode", "tap", "user", &uid, "group", &uid,
        ])?;
    }
    if let Some(bridge) = bridge {
        ip(&["link", "set", tap, "master", bridge])?;
    }
    ip(&["link", "set", tap, "up"])
}
