//! The host operations: typed requests and responses, one JSON object per
//! line, between the executor and `cvl host serve` (a child process on this
//! machine; the same program over an SSH channel on other hosts). Each line
//! carries an id ([`Envelope`]) so that one conversation per host carries
//! many operations at once, answered as they finish. Every operation is
//! idempotent, so replaying one after a crash converges. Parameter values
//! travel only inside these payloads, never on a command line.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The protocol's version: `hello` refuses a host agent of another.
pub const PROTOCOL: u32 = 4;

/// A request or a response on the wire, with the id that pairs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub id: u64,
    #[serde(flatten)]
    pub body: T,
}

/// A VM appliance instance on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmId {
    pub deployment: String,
    /// The dotted component path (`""` for a deployed VM appliance itself).
    pub path: String,
}

impl std::fmt::Display for VmId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.deployment)
        } else {
            write!(f, "{}/{}", self.deployment, self.path)
        }
    }
}

/// Where a VM appliance's program comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ProgramSource {
    /// A published version (the repository URL after mirrors).
    Repository { url: String, version: u32 },
    /// A local folder holding the VM description and its files.
    Folder { dir: String },
    /// Files the executor sent to the host beforehand ([`Request::Put`])
    /// under `ROOT/incoming/NAME`: a repository's files (its index and
    /// what `version` needs) when `version` is set, else a folder's.
    Staged { name: String, version: Option<u32> },
}

/// The file of a VM's data disk on `device`, in its folder.
pub fn data_disk_file(device: &str) -> String {
    let safe: String = device
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("data-{safe}.qcow2")
}

/// A file the executor sends to a host: its place under `ROOT/incoming`
/// and what it must hash to there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incoming {
    /// `NAME/relative/path`, plain names only.
    pub dest: String,
    pub sha256: String,
    pub size: u64,
}

/// A network interface of a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub name: String,
    pub mac: String,
    /// The VAN's network number (its bridge); `None`: public when it has
    /// an address, else unattached.
    pub network: Option<u32>,
    pub public: bool,
    /// A public interface's address: routed to it from the host's uplink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// Everything a host needs to (re)start one VM appliance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartSpec {
    pub vm: VmId,
    pub program: ProgramSource,
    /// The VM description's file name (the `vm` parameter).
    pub description: String,
    pub memory_mib: u32,
    pub nics: Vec<Nic>,
    /// Data disks: device and size (`100M`); created empty when missing,
    /// never replaced.
    pub data_disks: Vec<(String, String)>,
    /// The parameters on the wire (spec §9), sensitive values included:
    /// written to a tmpfs file of mode 0600 that QEMU reads at start, then
    /// removed.
    pub params: String,
    /// Replace the program disk overlays (an update): data disks stay.
    pub fresh_program: bool,
    /// Seconds the guest has to answer the guest agent.
    pub ready_timeout_secs: u64,
    /// Data disks carried over from another host (a move): the VM folder's
    /// file name, and where the executor put it under `ROOT/incoming`.
    /// Taken only where the VM has no such disk yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adopt: Vec<(String, String)>,
    /// The digest of the program the plan was made from (its description
    /// and disks, as the verified index lists them): a published version
    /// this host fetches must have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_digest: Option<String>,
    /// Before starting (an update; the VM stopped): each data disk kept as
    /// it is under this qcow2 snapshot, no copy, so that a rollback can put
    /// the data back as it was before the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_data: Option<String>,
    /// Before starting (a rollback): each data disk put back to its newest
    /// snapshot whose name starts with this; refused when one has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_data: Option<String>,
    /// How many pre-update snapshots each data disk keeps (the newest).
    #[serde(default = "one")]
    pub keep_snapshots: u32,
    /// The VM arrives by live migration instead of booting: QEMU starts
    /// with the same machine and devices, its program overlays new and its
    /// data disks empty, and waits for the stream (what
    /// [`Request::MigrateWrite`] brings) on a socket in the VM's folder.
    /// The start answers once it waits; nothing boots.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incoming: bool,
    /// For an incoming start: the accelerator the guest runs on at its old
    /// host (`kvm` or `tcg`), which it must run on here too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
}

fn one() -> u32 {
    1
}

/// One restore point of a data disk in a backup store: a qcow2 file,
/// standalone (`full`) or holding only what changed since its `parent`
/// (whose file is its qcow2 backing file), so that `qemu-img` reads any
/// restore point whole with nothing of cvl's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    pub device: String,
    /// `0001`, `0002`, ...: in order, per disk.
    pub id: String,
    /// Its file, in the disk's folder of the store.
    pub file: String,
    /// `full` or `incremental`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// When it was taken (RFC 3339, UTC).
    pub at: String,
    /// The file's size and SHA-256.
    pub size: u64,
    pub sha256: String,
    /// `frozen` (the guest's file systems frozen for the instant the copy
    /// started), `crash-consistent` (no guest agent to freeze them), or
    /// `stopped` (copied from the files of a stopped VM).
    pub consistency: String,
    /// Milliseconds the guest's writes were blocked: from the freeze's
    /// start to the thaw's answer.
    #[serde(default)]
    pub frozen_ms: u64,
    /// Of those, the freeze itself (the guest flushing what it had
    /// written); the rest is the copy's start and the thaw.
    #[serde(default)]
    pub flush_ms: u64,
    /// The disk's virtual size.
    pub disk_size: u64,
}

/// Where a restore point's file sent from another host waits in the
/// receiving host's incoming folder ([`Request::Put`]): one folder per
/// disk, so that a chain's files sit side by side and each reads through
/// to its parent by name.
pub fn point_dest(vm: &VmId, device: &str, file: &str) -> String {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect()
    };
    let path = if vm.path.is_empty() { "_" } else { &vm.path };
    format!(
        "points/{}/{}/{}/{file}",
        safe(&vm.deployment),
        safe(path),
        safe(device)
    )
}

/// What `cvl backup verify` found of one restore point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointCheck {
    pub device: String,
    pub point: String,
    pub file: String,
    /// What is wrong with it; `None` when it is whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The prefix of every pre-update snapshot of a data disk.
pub const SNAPSHOT_PREFIX: &str = "cvl-before-";

/// The pre-update snapshot of the data an update from `from` replaces
/// (`None`: an unpublished program changed), taken at `unix`.
pub fn snapshot_name(from: Option<u32>, unix: u64) -> String {
    match from {
        Some(v) => format!("{SNAPSHOT_PREFIX}v{v}-{unix}"),
        None => format!("{SNAPSHOT_PREFIX}update-{unix}"),
    }
}

/// The prefix of the snapshots taken before updates from `version`: what a
/// rollback to `version` puts back.
pub fn snapshot_of_version(version: u32) -> String {
    format!("{SNAPSHOT_PREFIX}v{version}-")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Request {
    Hello {
        protocol: u32,
    },
    /// Start (or leave running) and wait until the guest agent answers.
    Start(Box<StartSpec>),
    /// Power down: the guest agent's shutdown, then ACPI, then `quit`
    /// after `timeout_secs`; nothing when it is not running.
    Stop {
        vm: VmId,
        timeout_secs: u64,
    },
    /// Write new parameters into the running guest and run its reload hook.
    Resend {
        vm: VmId,
        params: String,
    },
    /// Move the VM's folder (its disks) to the attic.
    Attic {
        vm: VmId,
    },
    /// Back the VM's data disks up into the backup store `store` (a folder
    /// on this host): running, live (its file systems frozen for the
    /// instant the copy starts) and incremental after the first; stopped,
    /// from its files.
    Backup {
        vm: VmId,
        store: String,
        /// The data disks' devices.
        devices: Vec<String>,
        /// A full copy even where an incremental one would do.
        full: bool,
        /// The store is on another host (`store` then names it, as the
        /// dirty bitmaps of its restore points do, and is no folder here), whose restore points of this VM
        /// (every disk's) these are: the new ones are made in this host's
        /// outbox instead, to be sent there ([`Request::ReadPoint`]), and
        /// the bitmaps they start from are kept until
        /// [`Request::PointSent`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        elsewhere: Option<Vec<Backup>>,
        /// The store's name in its points' dirty bitmaps when it is not
        /// `store`: a store on this very host, named as the other hosts
        /// name it (`ssh://HOST/PATH`), so that a VM moved here from
        /// another host follows the bitmaps it brought.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bitmaps: Option<String>,
    },
    /// A piece of a restore point's file: in `store` (a folder on this
    /// host), or in this host's outbox when `None`.
    ReadPoint {
        vm: VmId,
        store: Option<String>,
        device: String,
        file: String,
        offset: u64,
        len: u64,
    },
    /// A restore point made on another host, sent to this one
    /// ([`Request::Put`] at [`point_dest`]), added to `store` (a folder
    /// here) if it follows the store's newest point of its disk.
    AddPoint {
        vm: VmId,
        store: String,
        point: Backup,
    },
    /// The restore point made in the outbox is in its store: its file
    /// goes, and so does the bitmap of the point it followed.
    PointSent {
        vm: VmId,
        /// The store, as the backup named it.
        store: String,
        point: Backup,
    },
    /// The restore points of the VM's data disks in `store`.
    Backups {
        vm: VmId,
        store: String,
    },
    /// Drop the restore points of the VM's data disks in `store` that
    /// neither rule keeps (the newest `keep_last`; the newest of each of the
    /// `keep_daily` newest days); the kept ones read as before.
    PruneBackups {
        vm: VmId,
        store: String,
        #[serde(default)]
        keep_last: Option<u32>,
        #[serde(default)]
        keep_daily: Option<u32>,
    },
    /// Check every restore point of the VM's data disks in `store`.
    VerifyBackups {
        vm: VmId,
        store: String,
    },
    /// Put a stopped VM's data disk back as it was at restore point
    /// `point` (the newest when `None`); the data it had is kept beside it.
    /// (No field of a request or response is named `id`: the envelope's is.)
    Restore {
        vm: VmId,
        store: String,
        device: String,
        point: Option<String>,
        /// Whose restore points: another VM's (a copy of production data
        /// for a test deployment); `None`: the VM's own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<VmId>,
        /// The store is on another host: the point's chain (itself and
        /// its parents), whose files were sent to this one at
        /// [`point_dest`]; `store` then names the store (its URL), as the dirty bitmaps of its points do.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        chain: Option<Vec<Backup>>,
        /// As [`Request::Backup`]'s: the store's name in its bitmaps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bitmaps: Option<String>,
    },
    /// What runs: process, QMP, guest agent; with `all`, also every other
    /// VM running under this agent's root.
    Status {
        vms: Vec<VmId>,
        #[serde(default)]
        all: bool,
        /// Also each data disk's snapshots from before updates (a
        /// `qemu-img info` per disk: for people, not the service's polls).
        #[serde(default)]
        snapshots: bool,
    },
    /// The end of a VM's console log (at most `lines` lines of the last
    /// 16 KiB, printable characters only): read-only.
    Console {
        vm: VmId,
        lines: u32,
    },
    /// The other hosts a VAN's bridge here reaches over VXLAN: kept by the
    /// host, applied to the VXLAN links it has and to those it creates.
    Fabric(Fabric),
    /// Which of these files the host lacks (missing, or not verified).
    Missing {
        files: Vec<Incoming>,
    },
    /// The SHA-256 and size of a VM's data disk (`data-*.qcow2`), to carry
    /// it to another host; nothing when it is not there.
    Digest {
        vm: VmId,
        file: String,
    },
    /// A piece of a VM's data disk.
    Get {
        vm: VmId,
        file: String,
        offset: u64,
        len: u64,
    },
    /// Runs a command in the running guest through its agent (no network,
    /// no SSH into the guest), its output kept in the guest for
    /// [`Request::ExecPoll`]. `input` (base64) is its standard input.
    ExecStart {
        vm: VmId,
        argv: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<String>,
    },
    /// What a command started by [`Request::ExecStart`] wrote past the
    /// offsets, and its exit code once it has exited and all is read.
    ExecPoll {
        vm: VmId,
        exec: ExecHandle,
        stdout_offset: u64,
        stderr_offset: u64,
    },
    /// A piece of a file, at `offset`; the last piece makes the host
    /// verify the whole against `file.sha256` and put it in place.
    Put {
        file: Incoming,
        offset: u64,
        /// Base64.
        data: String,
    },
    /// Starts sending the running VM away: its QEMU migrates live (its
    /// memory, and its disks' own blocks by block migration) into a socket
    /// in the VM's folder, which this conversation reads
    /// ([`Request::MigrateRead`]). The guest stops for at most about
    /// `downtime_ms` at the end.
    MigrateSend {
        vm: VmId,
        downtime_ms: u64,
    },
    /// The next bytes of the stream [`Request::MigrateSend`] began (at
    /// most `max`, waiting up to 200 ms for the first).
    MigrateRead {
        vm: VmId,
        max: u64,
    },
    /// Bytes of the stream into the VM an `incoming` start waits with
    /// (base64); `end`: the stream ended.
    MigrateWrite {
        vm: VmId,
        data: String,
        end: bool,
    },
    /// How the VM's migration stands (on either host).
    MigrateStatus {
        vm: VmId,
    },
    /// The VM arrived by migration and runs here: its public addresses
    /// (recorded, not yet routed, by its `incoming` start) are routed here
    /// now and announced to the uplink's neighbours.
    Arrived {
        vm: VmId,
    },
    /// Gives the VM's outgoing migration up: it keeps running here.
    MigrateCancel {
        vm: VmId,
    },
    /// Quits the VM's QEMU at once and deletes its folder, taps and
    /// routes: a source whose VM now runs on another host, or a
    /// destination whose migration failed. Never for a VM that runs
    /// nowhere else.
    Discard {
        vm: VmId,
    },
}

/// A command running in a guest: its process there, and the name of the
/// files its output goes to (`/run/cvl/exec/TAG.out`, `.err`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecHandle {
    pub pid: i64,
    pub tag: String,
}

/// How VANs span hosts: each VAN `n` with members on this host has a bridge
/// `cvlbrN` joined to a VXLAN link of VNI `n`, which floods to every peer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fabric {
    /// This host's address on the network between hosts (VXLAN's source).
    pub local: String,
    /// The other hosts' addresses.
    pub peers: Vec<String>,
    /// The interface VXLAN leaves through (the kernel's route when absent).
    #[serde(default)]
    pub uplink: Option<String>,
}

/// A [`VmStatus`]'s `qmp` while the VM sends or awaits a live move: its
/// guest and monitor are not asked anything then.
pub const MIGRATING: &str = "migrating";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmStatus {
    pub vm: VmId,
    /// The QEMU process, from its pidfile.
    pub pid: Option<u32>,
    /// QMP's `query-status` (`running`, `paused`, ...), or [`MIGRATING`]
    /// for a VM in a live move (its monitor is not asked then).
    pub qmp: Option<String>,
    /// The guest agent answered a ping.
    pub agent: bool,
    /// The guest runs an agent at all: false for a cloud image described
    /// with `agent = false`, whose silence is not drift.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub expects_agent: bool,
    /// Asked for: per data disk, its snapshots from before updates, oldest
    /// first (`cvl-before-v2-1796544000`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub snapshots: BTreeMap<String, Vec<String>>,
    /// The accelerator its QEMU runs on (`kvm` or `tcg`), when it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum HostErrorKind {
    /// A file, command or process failed on the host.
    Failed,
    /// The guest did not become ready in time.
    Timeout,
    /// The request made no sense (a bug, or another version).
    BadRequest,
    /// The host cannot reach the repository it was to fetch a program
    /// from: the executor may send the files itself.
    Unreachable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Response {
    Hello {
        protocol: u32,
        version: String,
    },
    Started {
        pid: u32,
        /// `true` when it was already running.
        already: bool,
        accel: String,
        /// Milliseconds spent, apart: making the program local (fetched or
        /// copied into the host's cache, verified), preparing the VM (disks,
        /// network, parameters), QEMU starting up, and the guest booting
        /// until ready.
        #[serde(default)]
        fetch_ms: u64,
        prepare_ms: u64,
        #[serde(default)]
        launch_ms: u64,
        boot_ms: u64,
        /// What became of the data disks before the start: `kept as
        /// SNAPSHOT`, `put back to SNAPSHOT`, or empty.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        data: String,
    },
    Stopped {
        /// How it ended: `agent`, `acpi`, `quit`, `not running`.
        how: String,
    },
    /// What a backup made, per data disk.
    BackedUp {
        backups: Vec<Backup>,
    },
    /// A VM's restore points, per data disk, oldest first.
    BackupList {
        backups: Vec<Backup>,
    },
    /// What a prune dropped and what it kept (as the manifests now say).
    Pruned {
        dropped: Vec<Backup>,
        kept: Vec<Backup>,
    },
    Verified {
        checks: Vec<PointCheck>,
    },
    Restored {
        device: String,
        point: String,
        /// Where the data it had was kept.
        kept: String,
    },
    Resent,
    Moved {
        to: String,
    },
    /// A migration began.
    Migrating,
    /// A piece of a migration stream (base64); `end`: nothing follows.
    Stream {
        data: String,
        end: bool,
    },
    /// How a migration stands: QEMU's status (`active`, `completed`,
    /// `failed`, ...), its figures once known, and whether the VM runs
    /// here.
    Migration {
        status: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        downtime_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total_ms: Option<u64>,
        /// Memory and disk bytes QEMU sent.
        #[serde(default)]
        transferred: u64,
        running: bool,
    },
    Discarded,
    /// The files of a `missing` request that the host lacks.
    Lacks {
        files: Vec<Incoming>,
    },
    Digest {
        /// `None`: the VM has no such disk here.
        sha256: Option<String>,
        size: u64,
    },
    Piece {
        /// Base64.
        data: String,
    },
    /// A piece written; `complete` when the file is verified and in place.
    Stored {
        complete: bool,
    },
    ExecStarted {
        exec: ExecHandle,
    },
    /// Output past the offsets asked for (base64), and the exit code once
    /// the command has exited and its output is all read.
    ExecOutput {
        stdout: String,
        stderr: String,
        exit: Option<i64>,
    },
    /// The fabric is recorded; `links` VXLAN links were brought up to date.
    FabricSet {
        links: u32,
    },
    Status {
        vms: Vec<VmStatus>,
        /// VMs running on the host that the request did not name (when it
        /// asked with `all`): what the state does not know.
        #[serde(default)]
        unknown: Vec<VmStatus>,
    },
    /// A console's last lines, oldest first.
    Console {
        lines: Vec<String>,
    },
    Error {
        kind: HostErrorKind,
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request and response travels flattened into an envelope with
    /// its `id`: a body field of the same name would shadow it, and the
    /// answer would never find its call.
    #[test]
    fn bodies_round_trip_through_their_envelope() {
        let vm = VmId {
            deployment: "Solo".into(),
            path: "a".into(),
        };
        let requests = [
            Request::Restore {
                vm: vm.clone(),
                store: "/srv/backups".into(),
                device: "ide0:1".into(),
                point: Some("0002".into()),
                from: Some(VmId {
                    deployment: "Production".into(),
                    path: "a".into(),
                }),
                chain: None,
                bitmaps: None,
            },
            Request::Backup {
                vm: vm.clone(),
                store: "/srv/backups".into(),
                devices: vec!["ide0:1".into()],
                full: true,
                elsewhere: None,
                bitmaps: Some("ssh://h2/srv/backups".into()),
            },
            Request::ReadPoint {
                vm: vm.clone(),
                store: None,
                device: "ide0:1".into(),
                file: "0002-incremental.qcow2".into(),
                offset: 4 << 20,
                len: 4 << 20,
            },
            Request::Backups {
                vm: vm.clone(),
                store: "/srv/backups".into(),
            },
            Request::PruneBackups {
                vm: vm.clone(),
                store: "/srv/backups".into(),
                keep_last: Some(3),
                keep_daily: None,
            },
            Request::VerifyBackups {
                vm,
                store: "/srv/backups".into(),
            },
        ];
        for body in requests {
            let sent = Envelope { id: 7, body };
            let text = serde_json::to_string(&sent).unwrap();
            let got: Envelope<Request> = serde_json::from_str(&text).unwrap();
            assert_eq!(got, sent, "{text}");
        }
        let responses = [Response::Restored {
            device: "ide0:1".into(),
            point: "0002".into(),
            kept: String::new(),
        }];
        for body in responses {
            let sent = Envelope { id: 9, body };
            let text = serde_json::to_string(&sent).unwrap();
            let got: Envelope<Response> = serde_json::from_str(&text).unwrap();
            assert_eq!(got, sent, "{text}");
        }
    }
}
