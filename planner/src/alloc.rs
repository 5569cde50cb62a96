//! Allocation: network numbers for VANs, a MAC and an address for every
//! interface, a host for every VM appliance. Deterministic and stable: what
//! a component has, it keeps for as long as it exists, whatever else is
//! added or removed; a new one gets the lowest free value, in the
//! topology's order. Running out of anything is a typed error naming what
//! ran out and how to add more.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::model::{Attach, ComponentPath, Host, InterfaceAlloc, Topology, UtilityState, VmAlloc};

/// Host numbers a VAN's `/24` gives its interfaces; `.254` is the host's own
/// address on the VAN's bridge, `.0` and `.255` are the network's.
pub const VAN_ADDRESSES: std::ops::RangeInclusive<u8> = 1..=253;

/// What allocation decided for one deployment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allocation {
    pub vans: BTreeMap<ComponentPath, u32>,
    pub vms: BTreeMap<ComponentPath, VmAlloc>,
}

impl Allocation {
    /// The utility-allocated interface parameters, by dotted path relative
    /// to the deployed object (`d.ethernet0.ip`): what evaluation takes.
    pub fn interface_values(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (vm, alloc) in &self.vms {
            for (name, iface) in &alloc.interfaces {
                let base = vm.join(name).0;
                out.push((format!("{base}.mac"), iface.mac.clone()));
                for (param, value) in [
                    ("ip", &iface.ip),
                    ("subnet", &iface.subnet),
                    ("netmask", &iface.netmask),
                ] {
                    if let Some(v) = value {
                        out.push((format!("{base}.{param}"), v.clone()));
                    }
                }
            }
        }
        out
    }
}

/// Something ran out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    Networks {
        van: ComponentPath,
        pool: (u32, u32),
    },
    VanAddresses {
        van: ComponentPath,
        network: u32,
    },
    PublicAddresses {
        component: ComponentPath,
        interface: String,
        pool: (Ipv4Addr, Ipv4Addr),
    },
    Macs {
        prefix: [u8; 3],
    },
    NoHost {
        component: ComponentPath,
        memory_mib: u32,
        /// Every host with its free memory and free VM slots.
        hosts: Vec<(String, u64, u32)>,
    },
    /// A component pinned to a host (`cvl move PATH --to HOST`) that
    /// cannot go there.
    Pin {
        component: ComponentPath,
        host: String,
        /// Why, as the end of a sentence.
        why: String,
    },
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllocError::Networks { van, pool } => write!(
                f,
                "no VAN network number is free for {van}: the pool {}-{} is used up; \
                 widen it with `cvl pool set networks FROM-TO` (1-65535)",
                pool.0, pool.1
            ),
            AllocError::VanAddresses { van, network } => write!(
                f,
                "the VAN {van} (network {network}, {}) has more interfaces than its 253 \
                 addresses: split it into sub-VANs",
                subnet(*network)
            ),
            AllocError::PublicAddresses {
                component,
                interface,
                pool,
            } => write!(
                f,
                "no public address is free for {component}.{interface}: the pool {}-{} is \
                 used up; widen it with `cvl pool set public FIRST-LAST`",
                pool.0, pool.1
            ),
            AllocError::Macs { prefix } => write!(
                f,
                "no MAC address is free under the prefix {:02x}:{:02x}:{:02x} (16,777,216 \
                 used): set another with `cvl pool set mac-prefix XX:XX:XX`",
                prefix[0], prefix[1], prefix[2]
            ),
            AllocError::NoHost {
                component,
                memory_mib,
                hosts,
            } => {
                write!(f, "no host can take {component} ({memory_mib} MiB): ")?;
                let list: Vec<String> = hosts
                    .iter()
                    .map(|(name, mem, slots)| {
                        format!("{name} has {mem} MiB and {slots} VM slots free")
                    })
                    .collect();
                write!(
                    f,
                    "{}; add a host with `cvl host add` or raise a host's limits",
                    if list.is_empty() {
                        "no host is registered".to_string()
                    } else {
                        list.join(", ")
                    }
                )
            }
            AllocError::Pin {
                component,
                host,
                why,
            } => write!(f, "cannot move {component} to {host}: {why}"),
        }
    }
}

impl std::error::Error for AllocError {}

/// `10.A.B.0/24` for network `n = A*256 + B`.
pub fn subnet(network: u32) -> String {
    format!("10.{}.{}.0/24", network >> 8 & 255, network & 255)
}

fn van_ip(network: u32, host: u8) -> String {
    format!("10.{}.{}.{host}", network >> 8 & 255, network & 255)
}

fn mac_text(prefix: [u8; 3], suffix: u32) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        prefix[0],
        prefix[1],
        prefix[2],
        suffix >> 16 & 255,
        suffix >> 8 & 255,
        suffix & 255
    )
}

fn parse_mac(text: &str) -> Option<u64> {
    let mut out = 0u64;
    let mut n = 0;
    for part in text.split(':') {
        out = out << 8 | u64::from(u8::from_str_radix(part, 16).ok()?);
        n += 1;
    }
    (n == 6).then_some(out)
}

/// The values every deployment but `except` already holds.
#[derive(Default)]
struct Used {
    networks: FxHashSet<u32>,
    macs: FxHashSet<u64>,
    /// Per VAN network, the host numbers taken.
    van_hosts: FxHashMap<u32, FxHashSet<u8>>,
    public: FxHashSet<Ipv4Addr>,
    /// Per host: memory and VM count placed.
    load: FxHashMap<String, (u64, u32)>,
}

impl Used {
    fn take_iface(&mut self, iface: &InterfaceAlloc) {
        if let Some(mac) = parse_mac(&iface.mac) {
            self.macs.insert(mac);
        }
        let ip: Option<Ipv4Addr> = iface.ip.as_deref().and_then(|ip| ip.parse().ok());
        match (iface.network, ip) {
            (Some(n), Some(ip)) => {
                self.van_hosts.entry(n).or_default().insert(ip.octets()[3]);
            }
            (None, Some(ip)) => {
                self.public.insert(ip);
            }
            _ => {}
        }
    }

    fn place(&mut self, host: &str, memory_mib: u64) {
        let load = self.load.entry(host.to_string()).or_default();
        load.0 += memory_mib;
        load.1 += 1;
    }
}

/// Allocates `topology` (the deployment `topology.deployment`) against the
/// utility's `state`: keeps what the deployment already has, and gives
/// what is new the lowest free values. `hosts` are the hosts to place on
/// (the registered ones, or the embedded default).
pub fn allocate(
    topology: &Topology,
    state: &UtilityState,
    hosts: &[Host],
) -> Result<Allocation, AllocError> {
    allocate_pinned(topology, state, hosts, &BTreeMap::new())
}

/// [`allocate`], with some components placed on the host a person names
/// (`cvl move PATH --to HOST`): each must exist, and its host must exist,
/// take VMs and have room for it.
pub fn allocate_pinned(
    topology: &Topology,
    state: &UtilityState,
    hosts: &[Host],
    pins: &BTreeMap<ComponentPath, String>,
) -> Result<Allocation, AllocError> {
    if let Some(component) = pins
        .keys()
        .find(|p| !topology.vms.iter().any(|vm| vm.path == **p))
    {
        let known: Vec<&str> = topology.vms.iter().map(|vm| vm.path.0.as_str()).collect();
        return Err(AllocError::Pin {
            component: component.clone(),
            host: pins[component].clone(),
            why: format!(
                "{} has no such VM appliance (it has: {})",
                topology.deployment,
                known.join(", ")
            ),
        });
    }
    let pools = &state.pools;
    let mut used = Used::default();
    for (name, deployment) in &state.deployments {
        if *name == topology.deployment {
            continue;
        }
        used.networks.extend(deployment.vans.values().copied());
        for vm in deployment.vms.values() {
            for iface in vm.alloc.interfaces.values() {
                used.take_iface(iface);
            }
            used.place(&vm.alloc.host, u64::from(vm.spec.memory_mib));
        }
    }
    let current = state.deployments.get(&topology.deployment);
    let mut out = Allocation::default();

    // VANs: keep, then the lowest free number.
    for van in &topology.vans {
        if let Some(&n) = current.and_then(|d| d.vans.get(van)) {
            if used.networks.insert(n) {
                out.vans.insert(van.clone(), n);
            }
        }
    }
    let mut next_network = pools.networks.0;
    for van in &topology.vans {
        if out.vans.contains_key(van) {
            continue;
        }
        while used.networks.contains(&next_network) && next_network <= pools.networks.1 {
            next_network += 1;
        }
        if next_network > pools.networks.1 {
            return Err(AllocError::Networks {
                van: van.clone(),
                pool: pools.networks,
            });
        }
        used.networks.insert(next_network);
        out.vans.insert(van.clone(), next_network);
    }

    let network_of = |attach: &Attach| match attach {
        Attach::Van(v) => out.vans.get(v).copied(),
        _ => None,
    };

    // Pass 1: what each VM keeps (interfaces whose attachment is unchanged,
    // its host while that host still exists).
    // A drained or fenced host keeps nothing: its VMs are placed anew.
    let known_hosts: FxHashSet<&str> = hosts
        .iter()
        .filter(|h| h.takes_vms())
        .map(|h| h.name.as_str())
        .collect();
    let mut kept: Vec<(Option<String>, BTreeMap<String, InterfaceAlloc>)> = Vec::new();
    for vm in &topology.vms {
        let record = current.and_then(|d| d.vms.get(&vm.path));
        let mut ifaces = BTreeMap::new();
        let mut host = None;
        if let Some(record) = record {
            for (name, attach) in &vm.interfaces {
                let Some(old) = record.alloc.interfaces.get(name) else {
                    continue;
                };
                let same_place = match attach {
                    Attach::Van(_) => old.network.is_some() && old.network == network_of(attach),
                    Attach::Public => old.network.is_none() && old.ip.is_some(),
                    Attach::None => old.ip.is_none(),
                };
                if same_place {
                    used.take_iface(old);
                    ifaces.insert(name.clone(), old.clone());
                } else if let Some(mac) = parse_mac(&old.mac) {
                    // The MAC stays with the interface wherever it moves.
                    used.macs.insert(mac);
                    ifaces.insert(
                        name.clone(),
                        InterfaceAlloc {
                            mac: old.mac.clone(),
                            ip: None,
                            network: None,
                            subnet: None,
                            netmask: None,
                        },
                    );
                }
            }
            if known_hosts.contains(record.alloc.host.as_str()) && !pins.contains_key(&vm.path) {
                used.place(&record.alloc.host, u64::from(vm.memory_mib));
                host = Some(record.alloc.host.clone());
            }
        }
        kept.push((host, ifaces));
    }
    // Pinned components next, before anything new takes their room.
    for (vm, (host, _)) in topology.vms.iter().zip(kept.iter_mut()) {
        let Some(to) = pins.get(&vm.path) else {
            continue;
        };
        let pin = |why: String| AllocError::Pin {
            component: vm.path.clone(),
            host: to.clone(),
            why,
        };
        let Some(target) = hosts.iter().find(|h| h.name == *to) else {
            let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
            return Err(pin(format!(
                "no host is named {to} (the hosts: {}; `cvl host list`)",
                names.join(", ")
            )));
        };
        if target.fenced.is_some() {
            return Err(pin(format!("{to} is fenced (`cvl host rejoin {to}`)")));
        }
        if target.draining {
            return Err(pin(format!(
                "{to} is drained (`cvl host drain {to} --undo` lets it take VMs again)"
            )));
        }
        let (mem, count) = used.load.get(to).copied().unwrap_or_default();
        let free = target.memory_mib.saturating_sub(mem);
        if free < u64::from(vm.memory_mib) || count >= target.max_vms {
            return Err(pin(format!(
                "it needs {} MiB and a VM slot; {to} has {free} MiB and {} VM slots free",
                vm.memory_mib,
                target.max_vms.saturating_sub(count)
            )));
        }
        used.place(to, u64::from(vm.memory_mib));
        *host = Some(to.clone());
    }

    // Pass 2: everything new, lowest free first.
    let mut next_mac: u32 = 1;
    let mut next_van_host: FxHashMap<u32, u8> = FxHashMap::default();
    let mut next_public = u32::from(pools.public.0);
    let prefix = u64::from(pools.mac_prefix[0]) << 40
        | u64::from(pools.mac_prefix[1]) << 32
        | u64::from(pools.mac_prefix[2]) << 24;
    for (vm, (host, mut ifaces)) in topology.vms.iter().zip(kept) {
        for (name, attach) in &vm.interfaces {
            let entry = ifaces
                .entry(name.clone())
                .or_insert_with(|| InterfaceAlloc {
                    mac: String::new(),
                    ip: None,
                    network: None,
                    subnet: None,
                    netmask: None,
                });
            if entry.mac.is_empty() {
                while next_mac < 1 << 24 && used.macs.contains(&(prefix | u64::from(next_mac))) {
                    next_mac += 1;
                }
                if next_mac >= 1 << 24 {
                    return Err(AllocError::Macs {
                        prefix: pools.mac_prefix,
                    });
                }
                used.macs.insert(prefix | u64::from(next_mac));
                entry.mac = mac_text(pools.mac_prefix, next_mac);
            }
            if entry.ip.is_some() {
                continue;
            }
            match attach {
                Attach::Van(van) => {
                    let network = out.vans[van];
                    let taken = used.van_hosts.entry(network).or_default();
                    let next = next_van_host
                        .entry(network)
                        .or_insert(*VAN_ADDRESSES.start());
                    while taken.contains(next) && *next <= *VAN_ADDRESSES.end() {
                        *next += 1;
                    }
                    if *next > *VAN_ADDRESSES.end() {
                        return Err(AllocError::VanAddresses {
                            van: van.clone(),
                            network,
                        });
                    }
                    taken.insert(*next);
                    entry.ip = Some(van_ip(network, *next));
                    entry.network = Some(network);
                    entry.subnet = Some(van_ip(network, 0));
                    entry.netmask = Some("255.255.255.0".to_string());
                }
                Attach::Public => {
                    while next_public <= u32::from(pools.public.1)
                        && used.public.contains(&Ipv4Addr::from(next_public))
                    {
                        next_public += 1;
                    }
                    if next_public > u32::from(pools.public.1) {
                        return Err(AllocError::PublicAddresses {
                            component: vm.path.clone(),
                            interface: name.clone(),
                            pool: pools.public,
                        });
                    }
                    let ip = Ipv4Addr::from(next_public);
                    used.public.insert(ip);
                    let o = ip.octets();
                    entry.ip = Some(ip.to_string());
                    entry.subnet = Some(format!("{}.{}.{}.0", o[0], o[1], o[2]));
                    entry.netmask = Some("255.255.255.0".to_string());
                }
                Attach::None => {}
            }
        }
        ifaces.retain(|name, _| vm.interfaces.iter().any(|(n, _)| n == name));
        let host = match host {
            Some(h) => h,
            None => {
                let h = place(vm.memory_mib, hosts, &used).ok_or_else(|| AllocError::NoHost {
                    component: vm.path.clone(),
                    memory_mib: vm.memory_mib,
                    hosts: hosts
                        .iter()
                        .map(|h| {
                            let (mem, count) = used.load.get(&h.name).copied().unwrap_or_default();
                            (
                                h.name.clone(),
                                h.memory_mib.saturating_sub(mem),
                                h.max_vms.saturating_sub(count),
                            )
                        })
                        .collect(),
                })?;
                used.place(&h, u64::from(vm.memory_mib));
                h
            }
        };
        out.vms.insert(
            vm.path.clone(),
            VmAlloc {
                host,
                interfaces: ifaces,
            },
        );
    }
    Ok(out)
}

/// The host with the most free memory that can take `memory_mib` more and
/// one more VM; ties go to fewer VMs, then to the name.
fn place(memory_mib: u32, hosts: &[Host], used: &Used) -> Option<String> {
    hosts
        .iter()
        .filter(|h| h.takes_vms())
        .filter_map(|h| {
            let (mem, count) = used.load.get(&h.name).copied().unwrap_or_default();
            let free = h.memory_mib.checked_sub(mem)?;
            (free >= u64::from(memory_mib) && count < h.max_vms).then_some((free, count, h))
        })
        .max_by(|a, b| {
            a.0.cmp(&b.0)
                .then(b.1.cmp(&a.1))
                .then(b.2.name.cmp(&a.2.name))
        })
        .map(|(_, _, h)| h.name.clone())
}
