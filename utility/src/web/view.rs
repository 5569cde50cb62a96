//! What the status page shows, as plain data: built from a [`Snapshot`] (the
//! state, its recent history, what the service and the host survey know)
//! by pure functions, rendered by `pages` as HTML and served as it is as
//! JSON under `/api/` (`format_version` [`FORMAT_VERSION`]).

use std::collections::{BTreeMap, BTreeSet};

use cvl_planner::model::{
    ComponentPath, HistoryEntry, Host, ParamValue, Status, UtilityState, VmRecord,
};
use cvl_repo::blacklist::Blacklist;
use serde::Serialize;

/// The version of the `/api/` documents: raised when a field changes
/// meaning or goes away (new fields do not raise it).
pub const FORMAT_VERSION: u32 = 1;

/// Deployments per page of the overview (the API gives them all unless
/// asked for a page).
pub const PER_PAGE: usize = 100;

/// Everything a page is made from, taken at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub state: UtilityState,
    /// The hosts VMs may run on (the registered ones, or this machine).
    pub hosts: Vec<Host>,
    /// The newest entries of the state's history, oldest first.
    pub history: Vec<HistoryEntry>,
    pub blacklist: Blacklist,
    pub live: Live,
    pub survey: Survey,
    /// When it was taken (RFC 3339).
    pub taken_at: String,
}

/// What the running service knows that the state does not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Live {
    /// Per deployment, per component: an update or resend that waits (for a
    /// person or for the policy's window), with its reason.
    pub pending: BTreeMap<String, BTreeMap<ComponentPath, Pending>>,
    /// Per deployment: why its updates wait (the policy's window), if they do.
    pub held: BTreeMap<String, String>,
    /// Per deployment: what went wrong last time it was planned.
    pub problems: BTreeMap<String, String>,
    /// When the service's last round ended (RFC 3339).
    pub last_round: Option<String>,
    /// `active`, or `standby (active: WHO)` while another service holds
    /// the state.
    pub role: Option<String>,
    /// Per deployment and component: its backups by policy.
    pub backups: BTreeMap<(String, ComponentPath), BackupSeen>,
}

/// One appliance's backups by policy, as the service last saw them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackupSeen {
    /// The policy's interval, seconds.
    pub every_secs: u64,
    /// Its newest restore point: id, when (Unix seconds), bytes added.
    pub newest: Option<(String, u64, u64)>,
    /// Why the last try failed, when it did.
    pub error: Option<String>,
}

/// An appliance's backups on its page.
#[derive(Debug, Clone, Serialize)]
pub struct BackupView {
    pub every_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Older than twice the interval (or none at all after one interval).
    pub stale: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl BackupView {
    /// `4.1 MiB, 12 min ago`, for people.
    pub fn summary(&self) -> String {
        match (&self.newest, self.age_secs, self.size) {
            (Some(id), Some(age), Some(size)) => format!(
                "restore point {id}, {} ago, {} added; one every {}",
                humantime::format_duration(std::time::Duration::from_secs(age)),
                bytes(size),
                humantime::format_duration(std::time::Duration::from_secs(self.every_secs))
            ),
            _ => format!(
                "none yet; one every {}",
                humantime::format_duration(std::time::Duration::from_secs(self.every_secs))
            ),
        }
    }
}

/// A size for people.
pub fn bytes(n: u64) -> String {
    match n {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// An action the service planned but does not carry out now.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The version the appliance ran when it was planned: once it runs
    /// another, someone acted and this is no longer shown.
    pub from: Option<u32>,
    /// The action and its reason (`update l: LDAP 1 -> 2`).
    pub what: String,
}

/// What the hosts said when last asked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Survey {
    /// Per host: when it last answered, and what went wrong since if it did
    /// not answer the last time.
    pub hosts: BTreeMap<String, HostSeen>,
    /// Per deployment and component: what its host sees that the state
    /// does not say (empty: nothing).
    pub drift: BTreeMap<(String, ComponentPath), String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostSeen {
    pub last_contact: Option<String>,
    pub error: Option<String>,
    /// Silent this many seconds, at least `--host-dead-after`: unreachable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable_for: Option<u64>,
}

/// An appliance's state as the page shows it, the most pressing first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shown {
    Blacklisted,
    Drift,
    Failed,
    RolledBack,
    UpdatePending,
    Starting,
    Stopping,
    Stopped,
    Running,
}

impl Shown {
    pub fn as_str(self) -> &'static str {
        match self {
            Shown::Blacklisted => "blacklisted",
            Shown::Drift => "drift",
            Shown::Failed => "failed",
            Shown::RolledBack => "rolled back",
            Shown::UpdatePending => "update pending",
            Shown::Starting => "starting",
            Shown::Stopping => "stopping",
            Shown::Stopped => "stopped",
            Shown::Running => "running",
        }
    }

    /// The CSS class (one word).
    pub fn class(self) -> &'static str {
        match self {
            Shown::Blacklisted => "blacklisted",
            Shown::Drift => "drift",
            Shown::Failed => "failed",
            Shown::RolledBack => "rolledback",
            Shown::UpdatePending => "pending",
            Shown::Starting => "starting",
            Shown::Stopping => "stopping",
            Shown::Stopped => "stopped",
            Shown::Running => "running",
        }
    }

    pub const ALL: [Shown; 9] = [
        Shown::Running,
        Shown::UpdatePending,
        Shown::Starting,
        Shown::Stopping,
        Shown::Stopped,
        Shown::RolledBack,
        Shown::Failed,
        Shown::Drift,
        Shown::Blacklisted,
    ];
}

/// One appliance in a list.
#[derive(Debug, Clone, Serialize)]
pub struct ApplianceRow {
    pub deployment: String,
    /// Its component path (`""` for a deployment of one VM).
    pub component: String,
    pub appliance: String,
    pub version: Option<u32>,
    pub host: String,
    pub state: Shown,
    /// Why it is in that state, when it is not plainly running.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl ApplianceRow {
    /// The component as a person reads it.
    pub fn label(&self) -> &str {
        if self.component.is_empty() {
            "(root)"
        } else {
            &self.component
        }
    }

    pub fn href(&self) -> String {
        appliance_href(&self.deployment, &self.component)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub format_version: u32,
    pub taken_at: String,
    pub serial: u64,
    pub last_round: Option<String>,
    /// This service's role: `active`, or a standby naming the active one.
    pub role: Option<String>,
    pub totals: Totals,
    /// Appliances neither plainly running nor stopped, the most pressing
    /// first (at most [`PER_PAGE`]).
    pub attention: Vec<ApplianceRow>,
    pub attention_more: usize,
    pub page: Page,
    pub deployments: Vec<DeploymentSummary>,
    /// The service's last actions, newest first.
    pub recent: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub deployments: usize,
    pub appliances: usize,
    pub hosts: usize,
    /// Appliances by state, every state named (zero included).
    pub by_state: BTreeMap<&'static str, usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// From 1.
    pub number: usize,
    pub of: usize,
    pub per_page: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeploymentSummary {
    pub name: String,
    pub appliances: Vec<ApplianceRow>,
    pub hosts: Vec<String>,
    /// `automatic`, `manual`, or `automatic 02:00-04:00`.
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl DeploymentSummary {
    pub fn href(&self) -> String {
        deployment_href(&self.name)
    }
}

/// The overview, deployments `page` (from 1) of `PER_PAGE`, or all of them
/// when `page` is `None`.
pub fn overview(s: &Snapshot, page: Option<usize>) -> Overview {
    let mut by_state: BTreeMap<&'static str, usize> =
        Shown::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    let mut appliances = 0;
    let mut attention = Vec::new();
    for (name, d) in &s.state.deployments {
        for (path, vm) in &d.vms {
            appliances += 1;
            let (state, _) = shown(s, name, path, vm);
            *by_state.entry(state.as_str()).or_default() += 1;
            // Stopped is what a person asked for: not something to look at.
            if !matches!(state, Shown::Running | Shown::Stopped) {
                attention.push((state, name, path, vm));
            }
        }
    }
    // The most pressing first, then by name; rows only for those shown.
    attention.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    let attention_count = attention.len();
    let attention: Vec<ApplianceRow> = attention
        .into_iter()
        .take(PER_PAGE)
        .map(|(_, name, path, vm)| row(s, name, path, vm))
        .collect();
    let count = s.state.deployments.len();
    let pages = count.div_ceil(PER_PAGE).max(1);
    let (number, skip, take) = match page {
        Some(n) => {
            let n = n.clamp(1, pages);
            (n, (n - 1) * PER_PAGE, PER_PAGE)
        }
        None => (1, 0, count),
    };
    let deployments = s
        .state
        .deployments
        .iter()
        .skip(skip)
        .take(take)
        .map(|(name, d)| {
            let appliances: Vec<ApplianceRow> =
                d.vms.iter().map(|(p, vm)| row(s, name, p, vm)).collect();
            let hosts: BTreeSet<String> = appliances.iter().map(|a| a.host.clone()).collect();
            DeploymentSummary {
                name: name.clone(),
                appliances,
                hosts: hosts.into_iter().collect(),
                policy: policy_text(&d.policy),
                problem: s.live.problems.get(name).cloned(),
            }
        })
        .collect();
    let recent = s
        .history
        .iter()
        .rev()
        .filter(|h| h.actor.starts_with("service"))
        .take(10)
        .cloned()
        .collect();
    Overview {
        format_version: FORMAT_VERSION,
        taken_at: s.taken_at.clone(),
        serial: s.state.serial,
        last_round: s.live.last_round.clone(),
        role: s.live.role.clone(),
        totals: Totals {
            deployments: count,
            appliances,
            hosts: s.hosts.len(),
            by_state,
        },
        attention_more: attention_count - attention.len(),
        attention,
        page: Page {
            number,
            of: if page.is_some() { pages } else { 1 },
            per_page: if page.is_some() { PER_PAGE } else { count },
        },
        deployments,
        recent,
    }
}

fn policy_text(p: &cvl_planner::model::Policy) -> String {
    match (p.auto, &p.window) {
        (false, _) => "manual".to_string(),
        (true, None) => "automatic".to_string(),
        (true, Some(w)) => format!(
            "automatic {:02}:{:02}-{:02}:{:02}",
            w.start / 60,
            w.start % 60,
            w.end / 60,
            w.end % 60
        ),
    }
}

/// How one appliance is shown, and why.
fn shown(s: &Snapshot, deployment: &str, path: &ComponentPath, vm: &VmRecord) -> (Shown, String) {
    if let Some((version, entry)) = crate::decide::barred(vm, &s.blacklist) {
        let why = entry
            .reason
            .as_ref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        return (
            Shown::Blacklisted,
            format!("version {version} is blacklisted{why}"),
        );
    }
    if let Some(drift) = s.survey.drift.get(&(deployment.to_string(), path.clone())) {
        return (Shown::Drift, drift.clone());
    }
    if vm.status == Status::Failed {
        return (Shown::Failed, "its last start or stop failed".to_string());
    }
    let pending = s.live.pending.get(deployment).and_then(|p| p.get(path));
    if let Some(why) = pending.filter(|p| p.from == vm.spec.appliance.version) {
        let why = &why.what;
        let held = s
            .live
            .held
            .get(deployment)
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        return (Shown::UpdatePending, format!("{why}{held}"));
    }
    let failed = s.state.deployments.get(deployment).and_then(|d| {
        d.failed
            .iter()
            .filter(|f| f.component == *path && f.url == vm.spec.appliance.source)
            .filter(|f| vm.spec.appliance.version.is_some_and(|v| v < f.version))
            .max_by_key(|f| f.version)
    });
    let running = matches!(vm.status, Status::Running | Status::Starting);
    if let Some(f) = failed.filter(|_| running) {
        return (
            Shown::RolledBack,
            format!(
                "version {} failed its health gate at {}: {}",
                f.version, f.at, f.reason
            ),
        );
    }
    let state = match vm.status {
        Status::Running => Shown::Running,
        Status::Starting => Shown::Starting,
        Status::Stopping => Shown::Stopping,
        Status::Stopped => Shown::Stopped,
        Status::Failed => Shown::Failed,
    };
    (state, String::new())
}

fn row(s: &Snapshot, deployment: &str, path: &ComponentPath, vm: &VmRecord) -> ApplianceRow {
    let (state, note) = shown(s, deployment, path, vm);
    ApplianceRow {
        deployment: deployment.to_string(),
        component: path.0.clone(),
        appliance: vm.spec.appliance.name.clone(),
        version: vm.spec.appliance.version,
        host: vm.alloc.host.clone(),
        state,
        note,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeploymentView {
    pub format_version: u32,
    pub taken_at: String,
    pub name: String,
    /// The CVL file it was applied from.
    pub source: Option<String>,
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    pub appliances: Vec<ApplianceRow>,
    pub vans: Vec<VanView>,
    /// Who provides what to whom: the start order.
    pub edges: Vec<Edge>,
    /// Interfaces exported with a public address.
    pub public: Vec<PublicIf>,
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VanView {
    /// Its component path (`""`: the deployment itself).
    pub path: String,
    pub network: u32,
    /// Its subnet, from a member's interface (`10.0.1.0/24`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Its members' component paths.
    pub members: Vec<String>,
    /// The hosts its members run on: more than one means a VXLAN link.
    pub hosts: Vec<String>,
}

impl VanView {
    pub fn label(&self) -> &str {
        if self.path.is_empty() {
            "(root)"
        } else {
            &self.path
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    /// The provider (started first).
    pub from: String,
    /// What requires it.
    pub to: String,
    pub service: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublicIf {
    pub component: String,
    pub interface: String,
    pub address: String,
}

pub fn deployment(s: &Snapshot, name: &str) -> Option<DeploymentView> {
    let d = s.state.deployments.get(name)?;
    let appliances: Vec<ApplianceRow> = d.vms.iter().map(|(p, vm)| row(s, name, p, vm)).collect();
    let mut vans: BTreeMap<ComponentPath, VanView> = d
        .vans
        .iter()
        .map(|(path, &network)| {
            (
                path.clone(),
                VanView {
                    path: path.0.clone(),
                    network,
                    subnet: None,
                    members: Vec::new(),
                    hosts: Vec::new(),
                },
            )
        })
        .collect();
    let mut public = Vec::new();
    for (path, vm) in &d.vms {
        let van = path.parent().filter(|p| vans.contains_key(p));
        if let Some(van) = van.and_then(|p| vans.get_mut(&p)) {
            van.members.push(path.0.clone());
            if !van.hosts.contains(&vm.alloc.host) {
                van.hosts.push(vm.alloc.host.clone());
                van.hosts.sort();
            }
            if van.subnet.is_none() {
                van.subnet = vm
                    .alloc
                    .interfaces
                    .values()
                    .find(|i| i.network == Some(van.network))
                    .and_then(|i| i.subnet.clone());
            }
        }
        for (interface, alloc) in &vm.alloc.interfaces {
            if let (None, Some(ip)) = (alloc.network, &alloc.ip) {
                public.push(PublicIf {
                    component: path.0.clone(),
                    interface: interface.clone(),
                    address: ip.clone(),
                });
            }
        }
    }
    let mut providers: BTreeMap<&str, Vec<&ComponentPath>> = BTreeMap::new();
    for (path, vm) in &d.vms {
        for service in &vm.spec.provides {
            providers.entry(service).or_default().push(path);
        }
    }
    let mut edges = Vec::new();
    for (path, vm) in &d.vms {
        for service in &vm.spec.requires {
            for p in providers.get(service.as_str()).into_iter().flatten() {
                if *p != path {
                    edges.push(Edge {
                        from: p.0.clone(),
                        to: path.0.clone(),
                        service: service.clone(),
                    });
                }
            }
        }
    }
    let history = s
        .history
        .iter()
        .rev()
        .filter(|h| h.deployment == name)
        .take(20)
        .cloned()
        .collect();
    Some(DeploymentView {
        format_version: FORMAT_VERSION,
        taken_at: s.taken_at.clone(),
        name: name.to_string(),
        source: d.source.as_ref().map(|src| src.file.clone()),
        policy: policy_text(&d.policy),
        problem: s.live.problems.get(name).cloned(),
        held: s.live.held.get(name).cloned(),
        appliances,
        vans: vans.into_values().collect(),
        edges,
        public,
        history,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplianceView {
    pub format_version: u32,
    pub taken_at: String,
    #[serde(flatten)]
    pub row: ApplianceRow,
    /// Its repository.
    pub source: String,
    pub digest: String,
    pub memory_mib: u32,
    pub params: Vec<Param>,
    pub provides: Vec<String>,
    pub requires: Vec<String>,
    pub interfaces: Vec<InterfaceView>,
    pub data_disks: Vec<String>,
    /// Versions that failed their health gate here.
    pub failed_versions: Vec<String>,
    /// Its backups by the service's policy, if the policy takes any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupView>,
    /// What was done to it, newest first.
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Param {
    pub name: String,
    /// The value as the guest gets it; `None` for a sensitive one, which
    /// is never shown.
    pub value: Option<String>,
    pub sensitive: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct InterfaceView {
    pub name: String,
    pub mac: String,
    pub ip: Option<String>,
    pub network: Option<u32>,
}

pub fn appliance(s: &Snapshot, deployment: &str, component: &str) -> Option<ApplianceView> {
    let d = s.state.deployments.get(deployment)?;
    let path = ComponentPath(component.to_string());
    let vm = d.vms.get(&path)?;
    let params = vm
        .spec
        .params
        .iter()
        .map(|(name, value)| match value {
            ParamValue::Plain { values } => Param {
                name: name.clone(),
                value: Some(values.join(" ")),
                sensitive: false,
            },
            ParamValue::Sensitive { .. } => Param {
                name: name.clone(),
                value: None,
                sensitive: true,
            },
        })
        .collect();
    Some(ApplianceView {
        format_version: FORMAT_VERSION,
        taken_at: s.taken_at.clone(),
        row: row(s, deployment, &path, vm),
        source: vm.spec.appliance.source.clone(),
        digest: vm.spec.appliance.digest.clone(),
        memory_mib: vm.spec.memory_mib,
        params,
        provides: vm.spec.provides.clone(),
        requires: vm.spec.requires.clone(),
        interfaces: vm
            .alloc
            .interfaces
            .iter()
            .map(|(name, i)| InterfaceView {
                name: name.clone(),
                mac: i.mac.clone(),
                ip: i.ip.clone(),
                network: i.network,
            })
            .collect(),
        data_disks: vm
            .spec
            .data_disks
            .iter()
            .map(|disk| {
                if disk.size.is_empty() {
                    disk.device.clone()
                } else {
                    format!("{} ({})", disk.device, disk.size)
                }
            })
            .collect(),
        failed_versions: d
            .failed
            .iter()
            .filter(|f| f.component == path)
            .map(|f| format!("{} {}: {} ({})", f.url, f.version, f.reason, f.at))
            .collect(),
        backup: backup_view(s, d, deployment, &path),
        history: s
            .history
            .iter()
            .rev()
            .filter(|h| h.deployment == deployment && h.component == component)
            .take(50)
            .cloned()
            .collect(),
    })
}

/// An appliance's backups by policy: what the service saw, aged now.
fn backup_view(
    s: &Snapshot,
    d: &cvl_planner::model::DeploymentState,
    deployment: &str,
    path: &ComponentPath,
) -> Option<BackupView> {
    let policy = d.policy.backup.as_ref()?;
    let vm = d.vms.get(path)?;
    if vm.spec.data_disks.is_empty() {
        return None;
    }
    let seen = s
        .live
        .backups
        .get(&(deployment.to_string(), path.clone()))
        .cloned()
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let age = seen
        .newest
        .as_ref()
        .map(|(_, at, _)| now.saturating_sub(*at));
    Some(BackupView {
        every_secs: policy.every_secs,
        newest: seen.newest.as_ref().map(|(id, _, _)| id.clone()),
        age_secs: age,
        size: seen.newest.as_ref().map(|(_, _, size)| *size),
        stale: age.is_some_and(|a| crate::decide::backup_stale(a, policy.every_secs)),
        error: seen.error,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct HostsView {
    pub format_version: u32,
    pub taken_at: String,
    pub hosts: Vec<HostView>,
    /// The moves between hosts in the recent history, newest first (at
    /// most [`MOVES_SHOWN`]).
    pub moves: Vec<MoveView>,
}

/// How many moves the hosts page lists.
pub const MOVES_SHOWN: usize = 20;

/// A move between hosts, from its history entry's figures.
#[derive(Debug, Clone, Serialize)]
pub struct MoveView {
    pub at: String,
    pub deployment: String,
    pub component: String,
    pub href: String,
    /// Who moved it: `cvl move`, `cvl apply`, `service`.
    pub actor: String,
    #[serde(flatten)]
    pub figures: cvl_planner::model::MoveFigures,
}

impl MoveView {
    /// Its length in seconds, to a tenth.
    pub fn seconds(&self) -> String {
        format!("{:.1}", self.figures.millis as f64 / 1e3)
    }

    /// What it sent between the hosts, in MB.
    pub fn megabytes(&self) -> Option<u64> {
        self.figures.bytes.map(|b| b / 1_000_000)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HostView {
    pub name: String,
    /// `user@address:port`, or `this machine`.
    pub address: String,
    pub memory_mib: u64,
    /// The memory of the VMs the state places there (not stopped).
    pub memory_used_mib: u64,
    pub max_vms: u32,
    pub vms: u32,
    pub draining: bool,
    /// When and how it was fenced (out of placement, its VMs recovered
    /// elsewhere) until `cvl host rejoin`.
    pub fenced: Option<String>,
    #[serde(flatten)]
    pub seen: HostSeen,
}

impl HostView {
    /// Percent of memory used, for the bar (at most 100).
    pub fn memory_percent(&self) -> u64 {
        (self.memory_used_mib * 100)
            .checked_div(self.memory_mib)
            .unwrap_or(0)
            .min(100)
    }

    pub fn vms_percent(&self) -> u64 {
        (u64::from(self.vms) * 100)
            .checked_div(u64::from(self.max_vms))
            .unwrap_or(0)
            .min(100)
    }
}

pub fn hosts(s: &Snapshot) -> HostsView {
    let mut used: BTreeMap<&str, (u64, u32)> = BTreeMap::new();
    for d in s.state.deployments.values() {
        for vm in d.vms.values() {
            if vm.status == Status::Stopped {
                continue;
            }
            let entry = used.entry(&vm.alloc.host).or_default();
            entry.0 += u64::from(vm.spec.memory_mib);
            entry.1 += 1;
        }
    }
    let moves = s
        .history
        .iter()
        .rev()
        .filter_map(|e| {
            Some(MoveView {
                at: e.at.clone(),
                deployment: e.deployment.clone(),
                component: e.component.clone(),
                href: appliance_href(&e.deployment, &e.component),
                actor: e.actor.clone(),
                figures: e.moved.clone()?,
            })
        })
        .take(MOVES_SHOWN)
        .collect();
    HostsView {
        format_version: FORMAT_VERSION,
        taken_at: s.taken_at.clone(),
        moves,
        hosts: s
            .hosts
            .iter()
            .map(|h| {
                let (memory_used_mib, vms) = used.get(h.name.as_str()).copied().unwrap_or_default();
                HostView {
                    name: h.name.clone(),
                    address: match &h.address {
                        Some(a) => {
                            format!("{}@{a}:{}", h.user.as_deref().unwrap_or("root"), h.port)
                        }
                        None => "this machine".to_string(),
                    },
                    memory_mib: h.memory_mib,
                    memory_used_mib,
                    max_vms: h.max_vms,
                    vms,
                    draining: h.draining,
                    fenced: h.fenced.clone(),
                    seen: s.survey.hosts.get(&h.name).cloned().unwrap_or_default(),
                }
            })
            .collect(),
    }
}

/// A path segment with every byte but the unreserved `[A-Za-z0-9._~-]`
/// percent-encoded.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn deployment_href(name: &str) -> String {
    format!("/deployments/{}", segment(name))
}

/// The root component (`""`) is `~` in a URL.
pub fn appliance_href(deployment: &str, component: &str) -> String {
    let component = if component.is_empty() { "~" } else { component };
    format!(
        "/deployments/{}/appliances/{}",
        segment(deployment),
        segment(component)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cvl_planner::model::*;
    use cvl_repo::blacklist::{Entry, VersionRange};

    fn vm(version: u32, status: Status) -> VmRecord {
        VmRecord {
            spec: DesiredVm {
                appliance: ApplianceRef {
                    name: "A".into(),
                    source: "http://r/A".into(),
                    version: Some(version),
                    digest: String::new(),
                    import_site: None,
                },
                params: BTreeMap::from([(
                    "secret".to_string(),
                    ParamValue::Sensitive {
                        fingerprint: Some("F".into()),
                        supply: "S".into(),
                    },
                )]),
                provides: vec![],
                requires: vec![],
                memory_mib: 100,
                data_disks: vec![],
                agent: true,
            },
            alloc: VmAlloc {
                host: "h".into(),
                interfaces: BTreeMap::new(),
            },
            status,
        }
    }

    fn snapshot() -> Snapshot {
        let mut d = DeploymentState::default();
        for (name, version, status) in [
            ("barred", 3, Status::Running),
            ("drifting", 1, Status::Running),
            ("pending", 1, Status::Running),
            ("done", 2, Status::Running),
            ("back", 1, Status::Running),
            ("off", 1, Status::Stopped),
            ("fine", 1, Status::Running),
        ] {
            d.vms
                .insert(ComponentPath(name.into()), vm(version, status));
        }
        d.failed.push(FailedVersion {
            url: "http://r/A".into(),
            version: 2,
            component: ComponentPath("back".into()),
            at: "t".into(),
            reason: "not ready".into(),
        });
        let mut s = Snapshot::default();
        s.state.deployments.insert("D".into(), d);
        s.blacklist.entries.push(Entry {
            url: "http://r/A".into(),
            versions: VersionRange { from: 3, to: 3 },
            reason: Some("CVE".into()),
            added: String::new(),
        });
        s.survey.drift.insert(
            ("D".into(), ComponentPath("drifting".into())),
            "DRIFT: recorded running, but no process".into(),
        );
        let pending = |from| Pending {
            from: Some(from),
            what: "update: A 1 -> 2".into(),
        };
        s.live.pending.insert(
            "D".into(),
            BTreeMap::from([
                (ComponentPath("pending".into()), pending(1)),
                // Planned at 1, but 2 runs now: someone applied it.
                (ComponentPath("done".into()), pending(1)),
            ]),
        );
        s
    }

    #[test]
    fn each_appliance_is_shown_in_its_most_pressing_state() {
        let o = overview(&snapshot(), Some(1));
        let states: Vec<(&str, &str)> = o.deployments[0]
            .appliances
            .iter()
            .map(|a| (a.component.as_str(), a.state.as_str()))
            .collect();
        assert_eq!(
            states,
            [
                ("back", "rolled back"),
                ("barred", "blacklisted"),
                ("done", "running"),
                ("drifting", "drift"),
                ("fine", "running"),
                ("off", "stopped"),
                ("pending", "update pending"),
            ]
        );
        // What needs a look: the most pressing first; stopped is not in it.
        let attention: Vec<&str> = o.attention.iter().map(|a| a.component.as_str()).collect();
        assert_eq!(attention, ["barred", "drifting", "back", "pending"]);
        assert_eq!(o.totals.by_state["running"], 2);
        assert_eq!(o.totals.by_state["failed"], 0);
        assert!(o.attention[0].note.contains("CVE"));
    }

    #[test]
    fn sensitive_values_are_only_named() {
        let a = appliance(&snapshot(), "D", "fine").unwrap();
        assert_eq!(a.params[0].value, None);
        assert!(a.params[0].sensitive);
        assert!(!serde_json::to_string(&a).unwrap().contains("\"F\""));
    }

    #[test]
    fn the_overview_pages_by_a_hundred_deployments() {
        let mut s = Snapshot::default();
        for i in 0..250 {
            s.state
                .deployments
                .insert(format!("D{i:03}"), DeploymentState::default());
        }
        let third = overview(&s, Some(3));
        assert_eq!((third.page.number, third.page.of), (3, 3));
        assert_eq!(third.deployments.len(), 50);
        assert_eq!(third.deployments[0].name, "D200");
        assert_eq!(overview(&s, Some(99)).page.number, 3);
        assert_eq!(overview(&s, None).deployments.len(), 250);
    }

    #[test]
    fn urls_encode_what_is_not_plain() {
        assert_eq!(
            appliance_href("Acme Suite", ""),
            "/deployments/Acme%20Suite/appliances/~"
        );
        assert_eq!(
            appliance_href("A", "van.d"),
            "/deployments/A/appliances/van.d"
        );
        assert_eq!(deployment_href("a/b?c"), "/deployments/a%2Fb%3Fc");
    }
}
