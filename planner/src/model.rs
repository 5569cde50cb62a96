//! The planner's words as data: **desired** (what the CVL says, lowered),
//! **state** (what the utility recorded), and the changes the executor
//! records into the state as it acts. Everything here is plain data that
//! serializes; nothing here does I/O.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A component's dotted path inside its deployment (`d`, `s.x`); the empty
/// path is the deployed object itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct ComponentPath(pub String);

impl ComponentPath {
    pub fn root() -> ComponentPath {
        ComponentPath(String::new())
    }

    pub fn new<S: AsRef<str>>(parts: &[S]) -> ComponentPath {
        let parts: Vec<&str> = parts.iter().map(AsRef::as_ref).collect();
        ComponentPath(parts.join("."))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `self` is `other` or inside it.
    pub fn is_within(&self, other: &ComponentPath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'.'))
    }

    /// The enclosing component, `None` for the root.
    pub fn parent(&self) -> Option<ComponentPath> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rsplit_once('.') {
            Some((p, _)) => ComponentPath(p.to_string()),
            None => ComponentPath::root(),
        })
    }

    /// `self.name`.
    pub fn join(&self, name: &str) -> ComponentPath {
        if self.is_root() {
            ComponentPath(name.to_string())
        } else {
            ComponentPath(format!("{}.{name}", self.0))
        }
    }
}

impl fmt::Display for ComponentPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            f.write_str("(the deployment)")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// Where in the sources something was written: `GroupwareSuite.cvl:4`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    pub file: String,
    pub line: u32,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Which appliance a VM runs: its program (the VM description and its
/// disks), identified by where it was published and by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplianceRef {
    /// The object that set `vm` (`DNS`).
    pub name: String,
    /// The repository URL as imported, or the local file for an appliance
    /// that is not imported.
    pub source: String,
    /// The published version, for an imported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// SHA-256 over the program: the VM description and every program
    /// disk's digest. Equal digests mean nothing to restart for.
    pub digest: String,
    /// The import statement that brought it, for reasons people read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_site: Option<Site>,
}

/// One parameter as the appliance receives it (spec §9), or, for a
/// sensitive one, only a keyed fingerprint of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ParamValue {
    Plain {
        values: Vec<String>,
    },
    /// `fingerprint` is an HMAC of the value under the utility's key (never
    /// the value); `None` while no value was supplied. `supply` says how to
    /// supply it (an environment variable).
    Sensitive {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
        supply: String,
    },
}

impl ParamValue {
    /// Same value as far as a guest can tell (a missing sensitive value
    /// equals nothing, so it is not a change).
    pub fn same_as(&self, other: &ParamValue) -> bool {
        match (self, other) {
            (
                ParamValue::Sensitive { fingerprint: a, .. },
                ParamValue::Sensitive { fingerprint: b, .. },
            ) => a == b || a.is_none() || b.is_none(),
            _ => self == other,
        }
    }
}

/// A data disk: the user's, created empty when missing, never replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataDisk {
    pub device: String,
    /// As written in CVL (`100M`); empty when not given.
    pub size: String,
}

/// Where an interface is attached.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "van")]
pub enum Attach {
    /// On the network of this VAN.
    Van(ComponentPath),
    /// Exported by the deployment to no VAN: a public address.
    Public,
    /// Neither a VM's `vanIF` nor exported: a MAC and no address.
    None,
}

/// What the CVL says one VM appliance is, before allocation: what
/// allocation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmShape {
    pub path: ComponentPath,
    pub memory_mib: u32,
    /// Interfaces in declaration order, with their attachment.
    pub interfaces: Vec<(String, Attach)>,
}

/// The deployment's structure: every VM appliance at every depth and the
/// VAN tree (the root is a VAN unless a single VM is deployed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub deployment: String,
    pub vms: Vec<VmShape>,
    pub vans: Vec<ComponentPath>,
}

/// One VM appliance as the CVL wants it, allocated and evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredVm {
    pub appliance: ApplianceRef,
    /// Every parameter on the wire (`domain`, `ethernet0.ip`), by name.
    pub params: BTreeMap<String, ParamValue>,
    pub provides: Vec<String>,
    pub requires: Vec<String>,
    pub memory_mib: u32,
    pub data_disks: Vec<DataDisk>,
    /// It runs the QEMU guest agent: parameters can be resent to it
    /// (otherwise it restarts with them).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub agent: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The whole desired state of one deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    pub deployment: String,
    pub vms: BTreeMap<ComponentPath, DesiredVm>,
    /// VANs and their network numbers.
    pub vans: BTreeMap<ComponentPath, u32>,
    /// SHA-256 over every input file the desired state was computed from.
    pub inputs_digest: String,
}

/// An interface's allocation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InterfaceAlloc {
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The VAN's network number; `None` for a public or unattached one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<String>,
}

/// A VM appliance's allocation: its host and its interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmAlloc {
    pub host: String,
    pub interfaces: BTreeMap<String, InterfaceAlloc>,
}

/// What a VM instance is doing, as the utility last recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Recorded before launching: a crash leaves it here, and the next plan
    /// starts it again (launching is idempotent).
    Starting,
    Running,
    Stopping,
    Stopped,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Stopping => "stopping",
            Status::Stopped => "stopped",
            Status::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        [
            Status::Starting,
            Status::Running,
            Status::Stopping,
            Status::Stopped,
            Status::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A VM instance in the state: what was applied, where, and its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRecord {
    pub spec: DesiredVm,
    pub alloc: VmAlloc,
    pub status: Status,
}

/// A deployment in the state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeploymentState {
    pub vms: BTreeMap<ComponentPath, VmRecord>,
    pub vans: BTreeMap<ComponentPath, u32>,
    /// How it was last applied: what the utility service re-plans it from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<DeploymentSource>,
    /// What the utility service may do to it by itself.
    #[serde(default)]
    pub policy: Policy,
    /// Versions that failed their health gate here, by repository and
    /// version: never taken again automatically (a newer version is).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedVersion>,
}

/// How a deployment was applied, so that the utility service can plan it
/// again without the user's shell: the file, the object, and the settings
/// that resolved its imports (`cvl.toml` beside the file and its `cvl.lock`
/// are found again from the file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentSource {
    /// The CVL file, absolute.
    pub file: String,
    /// The deployed object.
    pub deploy: String,
    /// Mirrors from the command line and `$CVL_MIRRORS`, `FROM=TO`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<String>,
    /// How long one request to a repository may take, in seconds.
    pub timeout_secs: u64,
}

/// What the utility service may do to a deployment by itself: updates and
/// resends (never a start, stop or removal: those wait for a person), when
/// `auto` is on and the time is inside `window` (when one is set); and,
/// with `restart` (on unless set off), start again an appliance whose QEMU
/// crashed, at any time; with `backup`, back up its data disks on a
/// schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub auto: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub restart: bool,
    /// Updates from repositories nobody signed are taken too (off: they
    /// wait for a person).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unsigned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupPolicy>,
}

/// The backups the utility service takes of a deployment's data disks by
/// itself: each appliance's, every `every_secs`, into the store `to`, which
/// is then pruned to what `keep_last` and `keep_daily` keep (everything
/// when neither is set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupPolicy {
    pub every_secs: u64,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
}

impl std::fmt::Display for BackupPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backups every {} into {}",
            humantime::format_duration(std::time::Duration::from_secs(self.every_secs)),
            self.to
        )?;
        match (self.keep_last, self.keep_daily) {
            (None, None) => write!(f, " (all kept)"),
            (Some(l), None) => write!(f, " (the last {l} kept)"),
            (None, Some(d)) => write!(f, " (one a day for {d} days kept)"),
            (Some(l), Some(d)) => write!(f, " (the last {l} and one a day for {d} days kept)"),
        }
    }
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            auto: true,
            window: None,
            restart: true,
            allow_unsigned: false,
            backup: None,
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.auto, self.window) {
            (false, _) => write!(f, "auto off")?,
            (true, None) => write!(f, "auto on")?,
            (true, Some(w)) => write!(f, "auto on, window {w}")?,
        }
        if !self.restart {
            write!(f, ", restarts off")?;
        }
        if self.allow_unsigned {
            write!(f, ", unsigned repositories allowed")?;
        }
        if let Some(backup) = &self.backup {
            write!(f, ", {backup}")?;
        }
        Ok(())
    }
}

/// A daily maintenance window in UTC, minutes since midnight; it may wrap
/// past midnight (`22:00-04:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: u16,
    pub end: u16,
}

impl Window {
    /// `HH:MM-HH:MM`.
    pub fn parse(text: &str) -> Result<Window, String> {
        let minutes = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && t.trim().len() == 5).then_some(h * 60 + m)
        };
        let (a, b) = text
            .split_once('-')
            .ok_or_else(|| format!("`{text}` is not a window: write it HH:MM-HH:MM (UTC)"))?;
        match (minutes(a), minutes(b)) {
            (Some(start), Some(end)) if start != end => Ok(Window { start, end }),
            (Some(_), Some(_)) => Err(format!("`{text}` is an empty window")),
            _ => Err(format!(
                "`{text}` is not a window: write it HH:MM-HH:MM (UTC), 00:00 to 23:59"
            )),
        }
    }

    /// Whether `minute` (since midnight, UTC) is inside.
    pub fn contains(&self, minute: u16) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02} UTC",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// A version of an appliance that failed its health gate in a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedVersion {
    /// The repository, as the import writes it.
    pub url: String,
    pub version: u32,
    /// The component it failed in.
    pub component: ComponentPath,
    /// RFC 3339.
    pub at: String,
    pub reason: String,
}

/// One thing that happened to a deployment, kept in its history (the
/// state's log, not its model: the planner never reads it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// RFC 3339.
    pub at: String,
    pub deployment: String,
    /// The component, `""` for the deployment as a whole.
    pub component: String,
    /// Who or what: `service`, or the command a person ran (`cvl apply`).
    pub actor: String,
    /// `update`, `resend`, `rollback`, `start`, `stop`, `report`, ...
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_version: Option<u32>,
    /// `done`, `failed`, `rolled back`, `pending` (waits for a person), ...
    pub outcome: String,
    pub detail: String,
    /// A move that was done: its figures, for the status page and metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved: Option<MoveFigures>,
}

/// A VM moved from one host to another: how, and what it cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveFigures {
    pub from: String,
    pub to: String,
    /// Moved running (its memory and disks migrated), or stopped, copied
    /// and started.
    pub live: bool,
    /// From the move's start to the VM running on `to`.
    pub millis: u64,
    /// Bytes that crossed between the hosts (a live move's stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// How long the guest was paused (a live move, QEMU's figure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
}

/// A QEMU host the utility runs appliances on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    /// SSH address; `None` for this machine (the embedded default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    pub port: u16,
    /// The SSH host key as recorded by `cvl host add` (OpenSSH format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    pub memory_mib: u64,
    pub max_vms: u32,
    /// The interface VANs reach other hosts and public addresses through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<String>,
    /// The SSH user (`root` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A private key file for SSH (the user's SSH agent when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The host agent's folder there (`/var/lib/cvl` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// `cvl host drain`: takes no new VMs, and its VMs move elsewhere.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
    /// `cvl host drain --live`: its running VMs move live (they keep
    /// running while their memory and disks migrate).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drain_live: bool,
    /// `cvl host set --fence`: the command that powers the host off when
    /// it stops answering (exit 0: it is off), run through `sh -c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<String>,
    /// When the host was fenced (known not to run its VMs), and how: out of
    /// placement, its VMs recovered elsewhere, until `cvl host rejoin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced: Option<String>,
}

impl Host {
    /// Whether VMs may be placed (or stay) here: neither drained nor fenced.
    pub fn takes_vms(&self) -> bool {
        !self.draining && self.fenced.is_none()
    }
}

/// The pools the utility allocates from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pools {
    /// VAN network numbers, inclusive; a VAN `n` gets `10.(n>>8).(n&255).0/24`.
    pub networks: (u32, u32),
    /// Public addresses for interfaces exported to no VAN, inclusive IPv4.
    pub public: (std::net::Ipv4Addr, std::net::Ipv4Addr),
    /// The first three bytes of every MAC (locally administered, unicast).
    pub mac_prefix: [u8; 3],
}

impl Default for Pools {
    fn default() -> Pools {
        Pools {
            networks: (1, 4094),
            // RFC 2544's benchmarking range: never routed, never anyone's.
            public: (
                std::net::Ipv4Addr::new(198, 19, 0, 1),
                std::net::Ipv4Addr::new(198, 19, 0, 253),
            ),
            mac_prefix: [0x0a, 0xc7, 0x1a],
        }
    }
}

/// Everything the utility knows: what the planner plans against.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UtilityState {
    /// Where this state came from (a random id made once) and how many
    /// writes it has seen: a saved plan records both.
    pub lineage: String,
    pub serial: u64,
    pub hosts: Vec<Host>,
    pub pools: Pools,
    pub deployments: BTreeMap<String, DeploymentState>,
}

/// One change to the state, as the executor records it after (or before)
/// acting; the state store applies each list of them in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "change")]
pub enum Change {
    HostAdded(Host),
    HostRemoved {
        name: String,
    },
    PoolsSet(Pools),
    /// A VM's spec, allocation and status, as now applied.
    VmRecorded {
        deployment: String,
        path: ComponentPath,
        record: Box<VmRecord>,
    },
    VmStatus {
        deployment: String,
        path: ComponentPath,
        status: Status,
    },
    VmRemoved {
        deployment: String,
        path: ComponentPath,
    },
    VanRecorded {
        deployment: String,
        path: ComponentPath,
        network: u32,
    },
    VanRemoved {
        deployment: String,
        path: ComponentPath,
    },
    /// How the deployment was applied (kept while it has VMs or VANs).
    SourceSet {
        deployment: String,
        source: DeploymentSource,
    },
    PolicySet {
        deployment: String,
        policy: Policy,
    },
    /// A version failed its health gate in the deployment.
    VersionFailed {
        deployment: String,
        failed: FailedVersion,
    },
    /// An entry of the state's log ([`HistoryEntry`]); the model in memory
    /// does not hold the log.
    Logged(HistoryEntry),
}

impl UtilityState {
    /// Applies changes in memory, exactly as the state store applies them
    /// to its database (a test holds the two to the same result).
    pub fn apply(&mut self, changes: &[Change]) {
        for change in changes {
            match change.clone() {
                Change::HostAdded(host) => {
                    self.hosts.retain(|h| h.name != host.name);
                    self.hosts.push(host);
                    self.hosts.sort_by(|a, b| a.name.cmp(&b.name));
                }
                Change::HostRemoved { name } => self.hosts.retain(|h| h.name != name),
                Change::PoolsSet(pools) => self.pools = pools,
                Change::VmRecorded {
                    deployment,
                    path,
                    record,
                } => {
                    self.deployments
                        .entry(deployment)
                        .or_default()
                        .vms
                        .insert(path, *record);
                }
                Change::VmStatus {
                    deployment,
                    path,
                    status,
                } => {
                    if let Some(vm) = self
                        .deployments
                        .get_mut(&deployment)
                        .and_then(|d| d.vms.get_mut(&path))
                    {
                        vm.status = status;
                    }
                }
                Change::VmRemoved { deployment, path } => {
                    if let Some(d) = self.deployments.get_mut(&deployment) {
                        d.vms.remove(&path);
                    }
                }
                Change::VanRecorded {
                    deployment,
                    path,
                    network,
                } => {
                    self.deployments
                        .entry(deployment)
                        .or_default()
                        .vans
                        .insert(path, network);
                }
                Change::VanRemoved { deployment, path } => {
                    if let Some(d) = self.deployments.get_mut(&deployment) {
                        d.vans.remove(&path);
                    }
                }
                // Kept while the deployment has VMs or VANs (below).
                Change::SourceSet { deployment, source } => {
                    self.deployments.entry(deployment).or_default().source = Some(source);
                }
                Change::PolicySet { deployment, policy } => {
                    self.deployments.entry(deployment).or_default().policy = policy;
                }
                Change::VersionFailed { deployment, failed } => {
                    let d = self.deployments.entry(deployment).or_default();
                    d.failed
                        .retain(|f| !(f.url == failed.url && f.version == failed.version));
                    d.failed.push(failed);
                    d.failed
                        .sort_by(|a, b| (&a.url, a.version).cmp(&(&b.url, b.version)));
                }
                Change::Logged(_) => {}
            }
        }
        self.deployments
            .retain(|_, d| !d.vms.is_empty() || !d.vans.is_empty());
        // The log is not the state: writing only to it leaves the serial.
        if changes.is_empty() || !changes.iter().all(|c| matches!(c, Change::Logged(_))) {
            self.serial += 1;
        }
    }
}
