//! The two JSON channels QEMU offers per VM, on Unix sockets: QMP (the
//! machine: status, power down, quit) and the QEMU guest agent (the guest:
//! ping, files, exec, shutdown). Every read has a deadline.
//!
//! What we send is typed: each command is a struct implementing
//! [`Command`] (its QAPI name, its arguments as fields, what it returns),
//! in [`cmd`], named and shaped as QEMU's QAPI schema has them; an error
//! QEMU answers is a [`QapiError`] (its class and description). The
//! `qapi` crate, which generates every command of the schema, was weighed
//! and not taken (ARCHITECTURE.md says why).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A command of QMP or of the guest agent: its name in QEMU's QAPI
/// schema, its arguments (the implementing struct's fields, serialized as
/// the schema names them), and the type of its `return`.
pub trait Command: Serialize {
    const NAME: &'static str;
    type Return: DeserializeOwned;
}

/// What QEMU answered instead of a return: `{"error": {"class", "desc"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct QapiError {
    pub class: String,
    pub desc: String,
}

impl std::fmt::Display for QapiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.desc, self.class)
    }
}

impl std::error::Error for QapiError {}

/// The commands cvl sends, typed as QEMU's schema has them.
pub mod cmd {
    use super::Command;
    use serde::{Deserialize, Serialize};

    /// A command that takes no arguments and returns nothing of interest.
    macro_rules! bare {
        ($($ty:ident = $name:literal),* $(,)?) => {$(
            #[derive(Debug, Clone, Default, Serialize)]
            pub struct $ty {}
            impl Command for $ty {
                const NAME: &'static str = $name;
                type Return = serde::de::IgnoredAny;
            }
        )*};
    }

    bare!(
        QmpCapabilities = "qmp_capabilities",
        SystemPowerdown = "system_powerdown",
        Quit = "quit",
        Stop = "stop",
        GuestPing = "guest-ping",
    );

    #[derive(Debug, Clone, Default, Serialize)]
    pub struct QueryStatus {}
    #[derive(Debug, Clone, Deserialize)]
    pub struct StatusInfo {
        pub status: String,
        #[serde(default)]
        pub running: bool,
    }
    impl Command for QueryStatus {
        const NAME: &'static str = "query-status";
        type Return = StatusInfo;
    }

    #[derive(Debug, Clone, Serialize)]
    pub struct Eject {
        pub id: String,
        pub force: bool,
    }
    impl Command for Eject {
        const NAME: &'static str = "eject";
        type Return = serde::de::IgnoredAny;
    }

    #[derive(Debug, Clone, Serialize)]
    pub struct GuestSync {
        pub id: u64,
    }
    impl Command for GuestSync {
        const NAME: &'static str = "guest-sync";
        type Return = u64;
    }

    #[derive(Debug, Clone, Serialize)]
    pub struct GuestFileOpen {
        pub path: String,
        pub mode: String,
    }
    impl Command for GuestFileOpen {
        const NAME: &'static str = "guest-file-open";
        type Return = i64;
    }

    #[derive(Debug, Clone, Serialize)]
    pub struct GuestFileWrite {
        pub handle: i64,
        #[serde(rename = "buf-b64")]
        pub buf_b64: String,
    }
    impl Command for GuestFileWrite {
        const NAME: &'static str = "guest-file-write";
        type Return = serde::de::IgnoredAny;
    }

    #[derive(Debug, Clone, Serialize)]
    pub struct GuestFileRead {
        pub handle: i64,
        pub count: u64,
    }
    #[derive(Debug, Clone, Deserialize)]
    pub struct FileRead {
        #[serde(rename = "buf-b64", default)]
        pub buf_b64: String,
        #[serde(default)]
        pub eof: bool,
    }
    impl Command for GuestFileRead {
        const NAME: &'static str = "guest-file-read";
        type Return = FileRead;
    }

    #[derive(Debug, Clone, Serialize)]
    pub struct GuestFileSeek {
        pub handle: i64,
        pub offset: u64,
        pub whence: String,
    }
    impl Command for GuestFileSeek {
        const NAME: &'static str = "guest-file-seek";
        type Return = serde::de::IgnoredAny;
    }

    #[derive(Debug, Clone, Serialize)]
    pub struct GuestFileClose {
        pub handle: i64,
    }
    impl Command for GuestFileClose {
        const NAME: &'static str = "guest-file-close";
        type Return = serde::de::IgnoredAny;
    }

    #[derive(Debug, Clone, Serialize)]
    pub struct GuestExec {
        pub path: String,
        pub arg: Vec<String>,
        #[serde(rename = "capture-output", skip_serializing_if = "std::ops::Not::not")]
        pub capture_output: bool,
        #[serde(rename = "input-data", skip_serializing_if = "Option::is_none")]
        pub input_data: Option<String>,
    }
    #[derive(Debug, Clone, Deserialize)]
    pub struct ExecStarted {
        pub pid: i64,
    }
    impl Command for GuestExec {
        const NAME: &'static str = "guest-exec";
        type Return = ExecStarted;
    }

    /// The block devices, with their dirty bitmaps (`query-block`).
    #[derive(Debug, Clone, Default, Serialize)]
    pub struct QueryBlock {}
    #[derive(Debug, Clone, Deserialize)]
    pub struct BlockInfo {
        pub device: String,
        /// The guest device's QOM path (`/machine/peripheral-anon/device[2]/virtio-backend`).
        #[serde(default)]
        pub qdev: Option<String>,
        #[serde(default)]
        pub inserted: Option<BlockInserted>,
    }
    #[derive(Debug, Clone, Deserialize)]
    pub struct BlockInserted {
        #[serde(default, rename = "dirty-bitmaps")]
        pub dirty_bitmaps: Vec<DirtyBitmap>,
        pub image: ImageInfo,
    }
    #[derive(Debug, Clone, Deserialize)]
    pub struct ImageInfo {
        #[serde(rename = "virtual-size")]
        pub virtual_size: u64,
    }
    #[derive(Debug, Clone, Deserialize)]
    pub struct DirtyBitmap {
        pub name: String,
        #[serde(default)]
        pub persistent: bool,
        /// Not saved cleanly (QEMU was killed): its bits cannot be trusted.
        #[serde(default)]
        pub inconsistent: bool,
        #[serde(default)]
        pub count: u64,
    }
    impl Command for QueryBlock {
        const NAME: &'static str = "query-block";
        type Return = Vec<BlockInfo>;
    }

    /// A block node from its options (`blockdev-add`: a backup's target).
    #[derive(Debug, Clone, Serialize)]
    pub struct BlockdevAdd(pub serde_json::Value);
    impl Command for BlockdevAdd {
        const NAME: &'static str = "blockdev-add";
        type Return = serde::de::IgnoredAny;
    }

    #[derive(Debug, Clone, Serialize)]
    pub struct BlockdevDel {
        #[serde(rename = "node-name")]
        pub node_name: String,
    }
    impl Command for BlockdevDel {
        const NAME: &'static str = "blockdev-del";
        type Return = serde::de::IgnoredAny;
    }

    /// Actions that take effect at the same instant (`transaction`).
    #[derive(Debug, Clone, Serialize)]
    pub struct Transaction {
        pub actions: Vec<serde_json::Value>,
    }
    impl Command for Transaction {
        const NAME: &'static str = "transaction";
        type Return = serde::de::IgnoredAny;
    }

    #[derive(Debug, Clone, Serialize)]
    pub struct BlockDirtyBitmapRemove {
        pub node: String,
        pub name: String,
    }
    impl Command for BlockDirtyBitmapRemove {
        const NAME: &'static str = "block-dirty-bitmap-remove";
        type Return = serde::de::IgnoredAny;
    }

    #[derive(Debug, Clone, Default, Serialize)]
    pub struct QueryJobs {}
    #[derive(Debug, Clone, Deserialize)]
    pub struct JobInfo {
        pub id: String,
        pub status: String,
        #[serde(default)]
        pub error: Option<String>,
        #[serde(default, rename = "current-progress")]
        pub current_progress: u64,
    }
    impl Command for QueryJobs {
        const NAME: &'static str = "query-jobs";
        type Return = Vec<JobInfo>;
    }

    #[derive(Debug, Clone, Serialize)]
    pub struct JobDismiss {
        pub id: String,
    }
    impl Command for JobDismiss {
        const NAME: &'static str = "job-dismiss";
        type Return = serde::de::IgnoredAny;
    }

    #[derive(Debug, Clone, Serialize)]
    pub struct JobCancel {
        pub id: String,
    }
    impl Command for JobCancel {
        const NAME: &'static str = "job-cancel";
        type Return = serde::de::IgnoredAny;
    }

    /// The guest agent freezes the guest's file systems (returns how many).
    #[derive(Debug, Clone, Default, Serialize)]
    pub struct GuestFsfreezeFreeze {}
    impl Command for GuestFsfreezeFreeze {
        const NAME: &'static str = "guest-fsfreeze-freeze";
        type Return = i64;
    }

    /// Freezes only the file systems mounted at these points.
    #[derive(Debug, Clone, Default, Serialize)]
    pub struct GuestFsfreezeFreezeList {
        pub mountpoints: Vec<String>,
    }
    impl Command for GuestFsfreezeFreezeList {
        const NAME: &'static str = "guest-fsfreeze-freeze-list";
        type Return = i64;
    }

    /// The guest's mounted file systems and the disks under each.
    #[derive(Debug, Clone, Default, Serialize)]
    pub struct GuestGetFsinfo {}
    #[derive(Debug, Clone, Deserialize)]
    pub struct FsInfo {
        pub mountpoint: String,
        #[serde(default)]
        pub disk: Vec<GuestDisk>,
    }
    #[derive(Debug, Clone, Deserialize)]
    pub struct GuestDisk {
        #[serde(rename = "pci-controller")]
        pub pci: PciAddress,
    }
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
    pub struct PciAddress {
        pub domain: i64,
        pub bus: i64,
        pub slot: i64,
        pub function: i64,
    }
    impl Command for GuestGetFsinfo {
        const NAME: &'static str = "guest-get-fsinfo";
        type Return = Vec<FsInfo>;
    }

    /// A QOM object's property (a PCI device's `addr`: its devfn).
    #[derive(Debug, Clone, Serialize)]
    pub struct QomGet {
        pub path: String,
        pub property: String,
    }
    impl Command for QomGet {
        const NAME: &'static str = "qom-get";
        type Return = serde_json::Value;
    }

    #[derive(Debug, Clone, Default, Serialize)]
    pub struct GuestFsfreezeThaw {}
    impl Command for GuestFsfreezeThaw {
        const NAME: &'static str = "guest-fsfreeze-thaw";
        type Return = i64;
    }

    /// `thawed` or `frozen`.
    #[derive(Debug, Clone, Default, Serialize)]
    pub struct GuestFsfreezeStatus {}
    impl Command for GuestFsfreezeStatus {
        const NAME: &'static str = "guest-fsfreeze-status";
        type Return = String;
    }

    #[derive(Debug, Clone, Serialize)]
    pub struct GuestExecStatus {
        pub pid: i64,
    }
    #[derive(Debug, Clone, Deserialize)]
    pub struct ExecStatus {
        pub exited: bool,
        #[serde(default)]
        pub exitcode: Option<i64>,
        #[serde(default)]
        pub signal: Option<i64>,
        #[serde(rename = "out-data", default)]
        pub out_data: Option<String>,
    }
    impl Command for GuestExecStatus {
        const NAME: &'static str = "guest-exec-status";
        type Return = ExecStatus;
    }
}

pub struct Channel {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// QMP events read while waiting for a command's answer, oldest first.
    events: VecDeque<Value>,
}

impl Channel {
    fn open(path: &Path, timeout: Duration) -> std::io::Result<Channel> {
        // A jailed QEMU owns its folder's sockets: one that is a link
        // could lead the agent to another VM's monitor.
        use std::os::unix::fs::FileTypeExt;
        if !std::fs::symlink_metadata(path)?.file_type().is_socket() {
            return Err(std::io::Error::other(format!(
                "{} is not a socket",
                path.display()
            )));
        }
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Channel {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
            events: VecDeque::new(),
        })
    }

    fn send<C: Command>(&mut self, command: &C) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Execute<'a, C> {
            execute: &'static str,
            arguments: &'a C,
        }
        let mut line = serde_json::to_string(&Execute {
            execute: C::NAME,
            arguments: command,
        })?;
        line.push('\n');
        self.writer.write_all(line.as_bytes())
    }

    fn read(&mut self) -> std::io::Result<Value> {
        let mut line = String::new();
        // A line is at most 16 MiB: the other end is a guest's.
        let read = std::io::Read::take(&mut self.reader, 16 << 20).read_line(&mut line)?;
        if read == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the channel closed",
            ));
        }
        // A guest agent may send a 0xFF sync byte before its answer.
        let text = line.trim_start_matches('\u{FF}').trim();
        serde_json::from_str(text).map_err(std::io::Error::other)
    }

    /// Sends a command and returns its `return`, typed (QMP events read
    /// meanwhile are kept for [`Channel::events`]).
    fn call<C: Command>(&mut self, command: &C) -> std::io::Result<C::Return> {
        self.send(command)?;
        loop {
            let mut reply = self.read()?;
            if let Some(r) = reply.get_mut("return") {
                return serde_json::from_value(r.take()).map_err(|e| {
                    std::io::Error::other(format!("{}: an answer of another shape: {e}", C::NAME))
                });
            }
            if let Some(e) = reply.get_mut("error") {
                let error: QapiError = serde_json::from_value(e.take()).unwrap_or(QapiError {
                    class: "GenericError".into(),
                    desc: "an error without a description".into(),
                });
                return Err(std::io::Error::other(format!("{}: {error}", C::NAME)));
            }
            if reply.get("event").is_some() && self.events.len() < 1024 {
                self.events.push_back(reply);
            }
        }
    }

    /// The QMP events read so far, oldest first.
    pub fn events(&mut self) -> impl Iterator<Item = Value> + '_ {
        self.events.drain(..)
    }
}

/// A QMP session, past its greeting and capabilities negotiation.
pub struct Qmp(Channel);

impl Qmp {
    pub fn connect(path: &Path, timeout: Duration) -> std::io::Result<Qmp> {
        let mut channel = Channel::open(path, timeout)?;
        channel.read()?; // the greeting
        channel.call(&cmd::QmpCapabilities {})?;
        Ok(Qmp(channel))
    }

    /// Any command, typed.
    pub fn execute<C: Command>(&mut self, command: &C) -> std::io::Result<C::Return> {
        self.0.call(command)
    }

    pub fn status(&mut self) -> std::io::Result<String> {
        Ok(self.0.call(&cmd::QueryStatus {})?.status)
    }

    pub fn powerdown(&mut self) -> std::io::Result<()> {
        self.0.call(&cmd::SystemPowerdown {}).map(drop)
    }

    /// Takes the medium out of a removable drive (the device's id).
    pub fn eject(&mut self, device: &str) -> std::io::Result<()> {
        self.0
            .call(&cmd::Eject {
                id: device.to_string(),
                force: true,
            })
            .map(drop)
    }

    pub fn quit(&mut self) -> std::io::Result<()> {
        self.0.call(&cmd::Quit {}).map(drop)
    }
}

/// A guest agent session.
pub struct Agent(Channel);

impl Agent {
    /// Connects and synchronizes (the agent may hold stale output from an
    /// earlier client).
    pub fn connect(path: &Path, timeout: Duration) -> std::io::Result<Agent> {
        let mut channel = Channel::open(path, timeout)?;
        let id = (std::process::id() as u64) << 20 ^ nanos();
        channel.send(&cmd::GuestSync { id })?;
        loop {
            let reply = channel.read()?;
            if reply.get("return").and_then(Value::as_u64) == Some(id) {
                return Ok(Agent(channel));
            }
        }
    }

    /// Waits until the agent answers, up to `deadline`.
    pub fn wait(path: &Path, deadline: Instant) -> std::io::Result<Agent> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match Agent::connect(
                path,
                left.min(Duration::from_secs(2))
                    .max(Duration::from_millis(50)),
            ) {
                Ok(agent) => return Ok(agent),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Any command, typed.
    pub fn execute<C: Command>(&mut self, command: &C) -> std::io::Result<C::Return> {
        self.0.call(command)
    }

    pub fn ping(&mut self) -> std::io::Result<()> {
        self.0.call(&cmd::GuestPing {}).map(drop)
    }

    fn open(&mut self, path: &str, mode: &str) -> std::io::Result<i64> {
        self.0.call(&cmd::GuestFileOpen {
            path: path.to_string(),
            mode: mode.to_string(),
        })
    }

    fn close(&mut self, handle: i64) -> std::io::Result<()> {
        self.0.call(&cmd::GuestFileClose { handle }).map(drop)
    }

    /// Writes `bytes` to `path` in the guest.
    pub fn write_file(&mut self, path: &str, bytes: &[u8]) -> std::io::Result<()> {
        let handle = self.open(path, "w")?;
        let written = self.0.call(&cmd::GuestFileWrite {
            handle,
            buf_b64: base64::engine::general_purpose::STANDARD.encode(bytes),
        });
        let closed = self.close(handle);
        written.and(closed).map(drop)
    }

    /// Reads up to 1 MiB of `path` in the guest.
    pub fn read_file(&mut self, path: &str) -> std::io::Result<Vec<u8>> {
        self.read_at(path, 0, 1 << 20)
    }

    /// Runs `argv` in the guest and waits for it: exit code and stdout.
    pub fn exec(&mut self, argv: &[&str], timeout: Duration) -> std::io::Result<(i64, Vec<u8>)> {
        let pid = self
            .0
            .call(&cmd::GuestExec {
                path: argv[0].to_string(),
                arg: argv[1..].iter().map(|a| a.to_string()).collect(),
                capture_output: true,
                input_data: None,
            })?
            .pid;
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.0.call(&cmd::GuestExecStatus { pid })?;
            if status.exited {
                let out = base64::engine::general_purpose::STANDARD
                    .decode(status.out_data.unwrap_or_default())
                    .unwrap_or_default();
                return Ok((status.exitcode.unwrap_or(-1), out));
            }
            if Instant::now() >= deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{} did not finish within {} s", argv[0], timeout.as_secs()),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `argv` in the guest without waiting: its process id in the
    /// guest. `input`, when given, is its standard input.
    pub fn spawn(&mut self, argv: &[String], input: Option<&[u8]>) -> std::io::Result<i64> {
        Ok(self
            .0
            .call(&cmd::GuestExec {
                path: argv[0].clone(),
                arg: argv[1..].to_vec(),
                capture_output: false,
                input_data: input.map(|i| base64::engine::general_purpose::STANDARD.encode(i)),
            })?
            .pid)
    }

    /// Whether a process [`Agent::spawn`] started has exited: its exit code.
    pub fn exited(&mut self, pid: i64) -> std::io::Result<Option<i64>> {
        let status = self.0.call(&cmd::GuestExecStatus { pid })?;
        Ok(status.exited.then(|| {
            status
                .exitcode
                .or_else(|| status.signal.map(|s| 128 + s))
                .unwrap_or(-1)
        }))
    }

    /// Up to `count` bytes of the guest's file `path` from `offset`; empty
    /// at its end.
    pub fn read_at(&mut self, path: &str, offset: u64, count: u64) -> std::io::Result<Vec<u8>> {
        let handle = self.open(path, "r")?;
        let seek = if offset > 0 {
            self.0
                .call(&cmd::GuestFileSeek {
                    handle,
                    offset,
                    whence: "set".into(),
                })
                .map(drop)
        } else {
            Ok(())
        };
        let read = seek.and_then(|()| self.0.call(&cmd::GuestFileRead { handle, count }));
        let _ = self.close(handle);
        base64::engine::general_purpose::STANDARD
            .decode(read?.buf_b64)
            .map_err(std::io::Error::other)
    }

    /// Asks the guest to power off (the agent sends no answer on success).
    pub fn shutdown(&mut self) -> std::io::Result<()> {
        self.0.send(&GuestShutdown {})
    }
}

#[derive(Serialize)]
struct GuestShutdown {}

impl Command for GuestShutdown {
    const NAME: &'static str = "guest-shutdown";
    type Return = serde::de::IgnoredAny;
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_serialize_as_the_schema_names_them() {
        let exec = cmd::GuestExec {
            path: "/bin/sh".into(),
            arg: vec!["-c".into(), "true".into()],
            capture_output: true,
            input_data: None,
        };
        assert_eq!(
            serde_json::to_value(&exec).unwrap(),
            serde_json::json!({ "path": "/bin/sh", "arg": ["-c", "true"], "capture-output": true })
        );
        let write = cmd::GuestFileWrite {
            handle: 3,
            buf_b64: "AA==".into(),
        };
        assert_eq!(
            serde_json::to_value(&write).unwrap(),
            serde_json::json!({ "handle": 3, "buf-b64": "AA==" })
        );
        assert_eq!(
            serde_json::to_value(cmd::Quit {}).unwrap(),
            serde_json::json!({})
        );
    }

    #[test]
    fn answers_errors_and_events_are_told_apart() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let mut channel = Channel {
            writer: ours.try_clone().unwrap(),
            reader: BufReader::new(ours),
            events: VecDeque::new(),
        };
        let mut qemu = theirs.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = BufReader::new(theirs).lines();
            let first = lines.next().unwrap().unwrap();
            write!(
                qemu,
                "{{\"event\":\"BLOCK_JOB_READY\",\"data\":{{}}}}\n{{\"return\":{{\"status\":\"running\",\"running\":true}}}}\n"
            )
            .unwrap();
            let second = lines.next().unwrap().unwrap();
            writeln!(
                qemu,
                "{{\"error\":{{\"class\":\"DeviceNotFound\",\"desc\":\"no such device\"}}}}"
            )
            .unwrap();
            (first, second)
        });
        let status = channel.call(&cmd::QueryStatus {}).unwrap();
        assert_eq!(status.status, "running");
        let error = channel
            .call(&cmd::Eject {
                id: "cd".into(),
                force: true,
            })
            .unwrap_err();
        assert!(error
            .to_string()
            .contains("no such device (DeviceNotFound)"));
        let (first, second) = reader.join().unwrap();
        assert_eq!(first, "{\"execute\":\"query-status\",\"arguments\":{}}");
        assert!(second.contains("\"execute\":\"eject\""));
        let events: Vec<Value> = channel.events().collect();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["event"], "BLOCK_JOB_READY");
    }
}
