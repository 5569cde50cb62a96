//! How the executor reaches a host's agent. One set of operations
//! ([`Request`]) and two transports under it: [`local`], the agent as a
//! child process on this machine, and [`ssh`], the same agent over an SSH
//! exec channel on another host. Either way one conversation per host
//! ([`Link`]) carries every operation at once, paired by id ([`Mux`]), and
//! every call has a deadline.

pub mod local;
pub mod ssh;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::protocol::{Envelope, ProgramSource, Request, Response, PROTOCOL};
use crate::staging::Staging;

pub use local::LocalConnector;

/// Opens the conversation with a host, by the name the plan placed VMs on.
pub trait Connector: Send + Sync {
    fn connect(&self, host: &str) -> Result<Arc<dyn Link>, String>;
}

/// One conversation with a host agent; calls may come from many threads.
pub trait Link: Send + Sync {
    fn call(&self, request: &Request, timeout: Duration) -> Result<Response, String>;

    /// Another machine: it cannot read this one's files.
    fn remote(&self) -> bool {
        false
    }
}

/// How long a host has to answer `request`: what the operation itself may
/// take (a guest's boot, a stop's grace period) and a margin for the rest.
pub fn deadline(request: &Request) -> Duration {
    Duration::from_secs(match request {
        // Program disks may be fetched first.
        Request::Start(spec) => spec.ready_timeout_secs + 900,
        Request::Stop { timeout_secs, .. } => timeout_secs + 60,
        Request::Resend { .. } => 120,
        Request::ExecStart { .. } | Request::ExecPoll { .. } => 60,
        Request::Attic { .. } => 300,
        Request::Hello { .. }
        | Request::Status { .. }
        | Request::Console { .. }
        | Request::Fabric(_) => 30,
        Request::Missing { .. } => 60,
        // Hashing a whole data disk, or reading a piece of one.
        Request::Digest { .. } | Request::Get { .. } | Request::ReadPoint { .. } => 600,
        // A piece of a few MiB, and for the last the whole file's hash.
        Request::Put { .. } => 300,
        // Copying whole disks.
        Request::Backup { .. } | Request::Restore { .. } => 4 * 3600,
        Request::Backups { .. } | Request::PointSent { .. } => 60,
        // Copying a restore point into the store, and hashing it.
        Request::AddPoint { .. } => 3600,
        Request::PruneBackups { .. } | Request::VerifyBackups { .. } => 3600,
        // A piece of a migration: it waits 200 ms at most, then sends what
        // is there; the status and the cancel ask QEMU once.
        Request::MigrateRead { .. } | Request::MigrateWrite { .. } => 120,
        Request::MigrateSend { .. }
        | Request::MigrateStatus { .. }
        | Request::MigrateCancel { .. }
        | Request::Arrived { .. } => 60,
        Request::Discard { .. } => 120,
    })
}

/// Every host's link, opened on first use and shared after: one connection
/// per host however many actions run on it. A host that could not be
/// reached fails each of its actions with the same message.
pub struct Links<'a> {
    connector: &'a dyn Connector,
    links: Mutex<BTreeMap<String, Arc<LinkCell>>>,
    /// Programs sent to a host in this apply, by host and staging.
    staged: Mutex<BTreeMap<(String, String), Arc<SentCell>>>,
    sent_files: AtomicU64,
    sent_bytes: AtomicU64,
    /// Held by the live migration under way: one at a time (each takes
    /// what the hosts' links and CPUs give; a drain moves VMs one by one).
    migrating: Mutex<()>,
}

/// How long a live move may take, and how long it may pause its guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveLimits {
    /// The longest the guest may pause at the end (QEMU's
    /// `downtime-limit`: it sends memory until what is left fits).
    pub max_downtime_ms: u64,
    /// The whole migration's limit: past it the move is cancelled.
    pub timeout: Duration,
}

impl Default for LiveLimits {
    /// libvirt's default pause (300 ms); ten minutes in all.
    fn default() -> LiveLimits {
        LiveLimits {
            max_downtime_ms: 300,
            timeout: Duration::from_secs(600),
        }
    }
}

/// Why a live move did not happen; the VM runs where it was either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrateError {
    /// It did not finish within [`LiveLimits::timeout`] (it did not
    /// converge: the guest writes its memory faster than it is sent, or
    /// there is too much to send): an offline move may do instead.
    TooSlow(String),
    /// Anything else: a host failed or went silent.
    Failed(String),
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::TooSlow(e) | MigrateError::Failed(e) => f.write_str(e),
        }
    }
}

impl From<String> for MigrateError {
    fn from(e: String) -> MigrateError {
        MigrateError::Failed(e)
    }
}

/// What a live migration took: QEMU's downtime, the bytes QEMU counted
/// and the bytes the executor carried, and the whole time.
#[derive(Debug, Clone, PartialEq)]
pub struct Migrated {
    pub downtime_ms: Option<u64>,
    pub transferred: u64,
    pub relayed: u64,
    pub seconds: f64,
    /// Why its public addresses could not be routed to its new host.
    pub unrouted: Option<String>,
}

/// A program sent to a host, or why it could not be.
type SentCell = OnceLock<Result<(), String>>;

/// A host's link once connected, or why it could not be.
type LinkCell = OnceLock<Result<Arc<dyn Link>, String>>;

impl<'a> Links<'a> {
    pub fn new(connector: &'a dyn Connector) -> Links<'a> {
        Links {
            connector,
            links: Mutex::new(BTreeMap::new()),
            staged: Mutex::new(BTreeMap::new()),
            sent_files: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            migrating: Mutex::new(()),
        }
    }

    /// Files sent to hosts so far: how many, how many bytes.
    pub fn sent(&self) -> (u64, u64) {
        (
            self.sent_files.load(Ordering::Relaxed),
            self.sent_bytes.load(Ordering::Relaxed),
        )
    }

    /// When `host` is another machine, makes sure it holds the program's
    /// files (sending what it lacks, once per apply however many VMs need
    /// them) and returns the source it should start from.
    pub fn stage(&self, host: &str, staging: &Staging) -> Result<Option<ProgramSource>, String> {
        let link = self.get(host)?;
        if !link.remote() {
            return Ok(None);
        }
        let cell = self
            .staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((
                host.to_string(),
                format!("{}@{:?}", staging.name, staging.version),
            ))
            .or_default()
            .clone();
        cell.get_or_init(|| self.send(&*link, host, staging))
            .clone()
            .map(|_| Some(staging.source()))
    }

    /// Carries `vm`'s data disks `files` from host `from` to host `to`
    /// (the VM stopped), into `to`'s incoming folder; returns what its start
    /// should adopt. A disk `from` no longer has (a move cut short after
    /// it finished there) is left to `to`, which then has it.
    pub fn carry(
        &self,
        from: &str,
        to: &str,
        vm: &crate::protocol::VmId,
        files: &[String],
    ) -> Result<Vec<(String, String)>, String> {
        use sha2::Digest;
        let source = self.get(from)?;
        let tag: String = sha2::Sha256::digest(vm.to_string().as_bytes())[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut adopt = Vec::new();
        for file in files {
            let ask = Request::Digest {
                vm: vm.clone(),
                file: file.clone(),
            };
            let (sha256, size) = match source.call(&ask, deadline(&ask))? {
                Response::Digest {
                    sha256: Some(sha256),
                    size,
                } => (sha256, size),
                Response::Digest { sha256: None, .. } => continue,
                Response::Error { message, .. } => return Err(format!("host {from}: {message}")),
                other => return Err(format!("host {from} answered {other:?}")),
            };
            let incoming = crate::protocol::Incoming {
                dest: format!("move-{tag}/{file}"),
                sha256,
                size,
            };
            self.relay(from, to, &incoming, |offset| Request::Get {
                vm: vm.clone(),
                file: file.clone(),
                offset,
                len: 4 << 20,
            })?;
            adopt.push((file.clone(), incoming.dest));
        }
        Ok(adopt)
    }

    /// Moves the running `vm` from host `from` to host `to`, where an
    /// `incoming` start waits for it: QEMU's migration stream read from
    /// `from` a piece at a time and written into `to`, until the VM runs on
    /// `to`. On any failure the migration is cancelled (the VM runs on
    /// `from` as before) and what `to` started is discarded.
    pub fn migrate(
        &self,
        from: &str,
        to: &str,
        vm: &crate::protocol::VmId,
        limits: LiveLimits,
    ) -> Result<Migrated, MigrateError> {
        let _one_at_a_time = self.migrating.lock().unwrap_or_else(|e| e.into_inner());
        let started = std::time::Instant::now();
        let carried = self.carry_migration(from, to, vm, limits, started);
        if carried.is_err() {
            // What `to` runs goes first: a guest that arrived there must
            // not run beside the one resumed on `from`.
            let _ = self.call(to, &Request::Discard { vm: vm.clone() });
            let _ = self.call(from, &Request::MigrateCancel { vm: vm.clone() });
        }
        carried
    }

    fn carry_migration(
        &self,
        from: &str,
        to: &str,
        vm: &crate::protocol::VmId,
        limits: LiveLimits,
        started: std::time::Instant,
    ) -> Result<Migrated, MigrateError> {
        let expect = |host: &str, response: Response| -> Result<Response, String> {
            match response {
                Response::Error { message, .. } => Err(format!("host {host}: {message}")),
                other => Ok(other),
            }
        };
        // Whether its guest agent answers here: then it must answer there.
        let answered_here = self.agent_answers(from, vm)?;
        expect(
            from,
            self.call(
                from,
                &Request::MigrateSend {
                    vm: vm.clone(),
                    downtime_ms: limits.max_downtime_ms,
                },
            )?,
        )?;
        // Reads from `from` and writes into `to` overlap: a writer thread
        // takes the pieces the reader hands it (a few at most in flight).
        let (pieces, taken) = std::sync::mpsc::sync_channel::<(String, bool)>(4);
        let relayed = std::thread::scope(|scope| -> Result<u64, MigrateError> {
            let writer = scope.spawn(move || -> Result<(), String> {
                for (data, end) in taken {
                    let write = Request::MigrateWrite {
                        vm: vm.clone(),
                        data,
                        end,
                    };
                    expect(to, self.call(to, &write)?)?;
                }
                Ok(())
            });
            let mut relayed = 0u64;
            let read = (|| loop {
                if started.elapsed() > limits.timeout {
                    return Err(MigrateError::TooSlow(format!(
                        "the live move did not finish within {} ({} MB sent; the guest may write \
                         its memory faster than it can be sent: allow more pause with \
                         --max-downtime, more time with --timeout, or move it offline)",
                        humantime::format_duration(limits.timeout),
                        relayed / 1_000_000
                    )));
                }
                let read = Request::MigrateRead {
                    vm: vm.clone(),
                    max: 4 << 20,
                };
                let Response::Stream { data, end } = expect(from, self.call(from, &read)?)? else {
                    return Err(format!("host {from} answered a read of the stream oddly").into());
                };
                relayed += (data.len() as u64 / 4) * 3;
                if (!data.is_empty() || end) && pieces.send((data, end)).is_err() {
                    // The writer stopped: its error says why.
                    return Ok(());
                }
                if end {
                    return Ok(());
                }
            })();
            drop(pieces);
            let written = writer
                .join()
                .unwrap_or_else(|_| Err("the migration's writer failed".to_string()));
            read.and(written.map_err(MigrateError::Failed))
                .map(|()| relayed)
        })?;
        // QEMU closes its end once it sent everything, or failed.
        let status = |host: &str| -> Result<(String, Option<u64>, u64, bool), String> {
            match expect(
                host,
                self.call(host, &Request::MigrateStatus { vm: vm.clone() })?,
            )? {
                Response::Migration {
                    status,
                    downtime_ms,
                    transferred,
                    running,
                    ..
                } => Ok((status, downtime_ms, transferred, running)),
                other => Err(format!("host {host} answered a status with {other:?}")),
            }
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let (downtime, transferred) = loop {
            let (state, downtime, transferred, _) = status(from)?;
            match state.as_str() {
                "completed" => break (downtime, transferred),
                "active" | "device" | "pre-switchover" | "setup"
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return Err(format!("the migration from {from} ended {state}").into()),
            }
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !status(to)?.3 {
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "{vm} does not run on {to} 30 s after its migration completed"
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // It runs there: routed there (what fails in that is said, not
        // undone), and then its guest must show that it lives before the
        // source's QEMU, paused with everything as it was, is let go.
        let unrouted = self
            .call(to, &Request::Arrived { vm: vm.clone() })
            .and_then(|r| expect(to, r))
            .err();
        self.settled(from, to, vm, answered_here)?;
        Ok(Migrated {
            unrouted,
            downtime_ms: downtime,
            transferred,
            relayed,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// What `host` says of `vm`: its process, monitor, guest agent and
    /// accelerator.
    pub fn status_of(
        &self,
        host: &str,
        vm: &crate::protocol::VmId,
    ) -> Result<crate::protocol::VmStatus, String> {
        let ask = Request::Status {
            vms: vec![vm.clone()],
            all: false,
            snapshots: false,
        };
        match self.call(host, &ask)? {
            Response::Status { vms, .. } => vms
                .into_iter()
                .next()
                .ok_or_else(|| format!("host {host} said nothing of {vm}")),
            Response::Error { message, .. } => Err(format!("host {host}: {message}")),
            other => Err(format!("host {host} answered a status with {other:?}")),
        }
    }

    /// Whether `vm`'s guest agent on `host` answers (false for a guest
    /// without one).
    fn agent_answers(&self, host: &str, vm: &crate::protocol::VmId) -> Result<bool, String> {
        self.status_of(host, vm).map(|v| v.agent)
    }

    /// After a migration, before the source lets its QEMU go: the guest
    /// that arrived on `to` lives. Its console shows no kernel oops or
    /// panic (a guest whose memory arrived damaged dies within moments:
    /// seen under TCG), and, if its agent answered on `from` before the
    /// move, it answers on `to` at least a second after it began to run
    /// there. Within 10 s; else the move fails, and is undone.
    fn settled(
        &self,
        from: &str,
        to: &str,
        vm: &crate::protocol::VmId,
        agent: bool,
    ) -> Result<(), MigrateError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        std::thread::sleep(Duration::from_secs(1));
        loop {
            let console = match self.call(
                to,
                &Request::Console {
                    vm: vm.clone(),
                    lines: 40,
                },
            )? {
                Response::Console { lines } => lines,
                _ => Vec::new(),
            };
            if let Some(line) = console.iter().find(|l| guest_failed(l)) {
                return Err(MigrateError::Failed(format!(
                    "{vm}'s guest failed on {to} right after it arrived there (its console: \
                     {}): undone, the guest goes on from where it paused on {from}",
                    line.trim()
                )));
            }
            if !agent || self.agent_answers(to, vm)? {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(MigrateError::Failed(format!(
                    "{vm}'s guest agent answered on {from} before the move but not on {to} within \
                     10 s after it arrived there: undone, the guest goes on from where it paused \
                     on {from}"
                )));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Sends a file from host `from` (read a piece at a time by the
    /// requests `read` makes for an offset) to host `to`, as `incoming`
    /// (verified there whole); nothing when `to` already has it.
    pub fn relay(
        &self,
        from: &str,
        to: &str,
        incoming: &crate::protocol::Incoming,
        read: impl Fn(u64) -> Request,
    ) -> Result<(), String> {
        let source = self.get(from)?;
        let target = self.get(to)?;
        let ask = Request::Missing {
            files: vec![incoming.clone()],
        };
        match target.call(&ask, deadline(&ask))? {
            Response::Lacks { files } if files.is_empty() => return Ok(()),
            Response::Lacks { .. } => {}
            Response::Error { message, .. } => return Err(format!("host {to}: {message}")),
            other => return Err(format!("host {to} answered {other:?}")),
        }
        let mut offset = 0;
        loop {
            let get = read(offset);
            let data = match source.call(&get, deadline(&get))? {
                Response::Piece { data } => data,
                Response::Error { message, .. } => return Err(format!("host {from}: {message}")),
                other => return Err(format!("host {from} answered {other:?}")),
            };
            let n = data.len() as u64 / 4 * 3
                - data.bytes().rev().take_while(|b| *b == b'=').count() as u64;
            let put = Request::Put {
                file: incoming.clone(),
                offset,
                data,
            };
            let stored = target.call(&put, deadline(&put))?;
            self.sent_bytes.fetch_add(n, Ordering::Relaxed);
            match stored {
                Response::Stored { complete: true } => return Ok(()),
                Response::Stored { complete: false } if n > 0 => offset += n,
                Response::Stored { .. } => {
                    return Err(format!("{} on host {from} ended early", incoming.dest))
                }
                Response::Error { message, .. } => return Err(format!("host {to}: {message}")),
                other => return Err(format!("host {to} answered {other:?}")),
            }
        }
    }

    fn send(&self, link: &dyn Link, host: &str, staging: &Staging) -> Result<(), String> {
        use base64::Engine;
        use std::io::Read;
        const PIECE: usize = 4 << 20;
        let files: Vec<_> = staging.files.iter().map(|(f, _)| f.clone()).collect();
        let ask = Request::Missing { files };
        let lacks = match link.call(&ask, deadline(&ask))? {
            Response::Lacks { files } => files,
            Response::Error { message, .. } => return Err(format!("host {host}: {message}")),
            other => return Err(format!("host {host} answered {other:?}")),
        };
        for file in lacks {
            let (_, local) = staging
                .files
                .iter()
                .find(|(f, _)| *f == file)
                .ok_or_else(|| {
                    format!("host {host} asked for {}, which was not offered", file.dest)
                })?;
            let mut input = std::fs::File::open(local)
                .map_err(|e| format!("cannot read {}: {e}", local.display()))?;
            let mut offset = 0u64;
            let mut buf = vec![0u8; PIECE];
            loop {
                let mut n = 0;
                while n < PIECE {
                    match input.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) => return Err(format!("cannot read {}: {e}", local.display())),
                    }
                }
                if offset + n as u64 > file.size || (n == 0 && offset < file.size) {
                    return Err(format!(
                        "{} changed while it was sent: it is no longer {} bytes",
                        local.display(),
                        file.size
                    ));
                }
                let put = Request::Put {
                    file: file.clone(),
                    offset,
                    data: base64::engine::general_purpose::STANDARD.encode(&buf[..n]),
                };
                match link.call(&put, deadline(&put))? {
                    Response::Stored { complete } => {
                        offset += n as u64;
                        self.sent_bytes.fetch_add(n as u64, Ordering::Relaxed);
                        if complete {
                            self.sent_files.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                    Response::Error { message, .. } => {
                        return Err(format!("host {host}: {message}"))
                    }
                    other => return Err(format!("host {host} answered {other:?}")),
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, host: &str) -> Result<Arc<dyn Link>, String> {
        let cell = self
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(host.to_string())
            .or_default()
            .clone();
        cell.get_or_init(|| self.connector.connect(host)).clone()
    }

    /// Calls `request` on `host` with its deadline.
    pub fn call(&self, host: &str, request: &Request) -> Result<Response, String> {
        self.get(host)?.call(request, deadline(request))
    }
}

type Reply = mpsc::Sender<Result<Response, String>>;

/// Requests and answers paired by id over one line-oriented byte stream.
/// The transport feeds it each line that arrives ([`Mux::deliver`]) and
/// tells it when the stream ends ([`Mux::close`]).
pub struct Mux {
    host: String,
    next: AtomicU64,
    pending: Mutex<HashMap<u64, Reply>>,
    writer: Mutex<Option<Box<dyn Write + Send>>>,
    closed: Mutex<Option<String>>,
}

impl Mux {
    pub fn new(host: &str, writer: Box<dyn Write + Send>) -> Arc<Mux> {
        Arc::new(Mux {
            host: host.to_string(),
            next: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            writer: Mutex::new(Some(writer)),
            closed: Mutex::new(None),
        })
    }

    pub fn call(&self, request: &Request, timeout: Duration) -> Result<Response, String> {
        if let Some(why) = self
            .closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(why);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        let mut line = serde_json::to_string(&Envelope {
            id,
            body: request.clone(),
        })
        .expect("a request serializes");
        line.push('\n');
        let written = match self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            Some(w) => w.write_all(line.as_bytes()).and_then(|_| w.flush()),
            None => Err(std::io::Error::other("the conversation is closing")),
        };
        if let Err(e) = written {
            self.forget(id);
            return Err(format!("the host agent on {} went away: {e}", self.host));
        }
        match rx.recv_timeout(timeout) {
            Ok(answer) => answer,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.forget(id);
                Err(format!(
                    "host {} did not answer {} within {} s",
                    self.host,
                    what(request),
                    timeout.as_secs()
                ))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self
                .closed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_else(|| format!("the host agent on {} went away", self.host))),
        }
    }

    fn forget(&self, id: u64) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// One line from the agent.
    pub fn deliver(&self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        match serde_json::from_str::<Envelope<Response>>(line) {
            Ok(Envelope { id, body }) => {
                if let Some(reply) = self
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id)
                {
                    let _ = reply.send(Ok(body));
                }
            }
            Err(e) => self.close(format!(
                "the host agent on {} answered something else ({e}): is it cvl {}?",
                self.host,
                env!("CARGO_PKG_VERSION")
            )),
        }
    }

    /// The stream ended: every call waiting, and every later one, fails
    /// with `why`.
    pub fn close(&self, why: String) {
        self.closed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(why.clone());
        for (_, reply) in self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
        {
            let _ = reply.send(Err(why.clone()));
        }
    }

    /// Ends the requests: the agent finishes what is under way and exits.
    pub fn finish(&self) {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// `hello`: the agent speaks this protocol.
    pub fn hello(&self) -> Result<(), String> {
        match self.call(
            &Request::Hello { protocol: PROTOCOL },
            deadline(&Request::Hello { protocol: PROTOCOL }),
        )? {
            Response::Hello { .. } => Ok(()),
            Response::Error { message, .. } => Err(format!("host {}: {message}", self.host)),
            other => Err(format!(
                "the host agent on {} answered hello with {other:?}",
                self.host
            )),
        }
    }
}

fn what(request: &Request) -> String {
    match request {
        Request::Hello { .. } => "hello".to_string(),
        Request::Start(spec) => format!("the start of {}", spec.vm),
        Request::Stop { vm, .. } => format!("the stop of {vm}"),
        Request::Resend { vm, .. } => format!("the resend to {vm}"),
        Request::Attic { vm } => format!("the removal of {vm}"),
        Request::Status { .. } => "a status request".to_string(),
        Request::Console { vm, .. } => format!("reading the console of {vm}"),
        Request::Fabric(_) => "the fabric".to_string(),
        Request::Missing { .. } | Request::Put { .. } => "a file transfer".to_string(),
        Request::Digest { vm, .. } | Request::Get { vm, .. } => {
            format!("reading the data disks of {vm}")
        }
        Request::ExecStart { vm, .. } | Request::ExecPoll { vm, .. } => {
            format!("a command in {vm}")
        }
        Request::Backup { vm, .. } => format!("the backup of {vm}"),
        Request::Backups { vm, .. } => format!("listing the backups of {vm}"),
        Request::PruneBackups { vm, .. } => format!("pruning the backups of {vm}"),
        Request::VerifyBackups { vm, .. } => format!("verifying the backups of {vm}"),
        Request::Restore { vm, .. } => format!("the restore of {vm}"),
        Request::ReadPoint { vm, .. } | Request::AddPoint { vm, .. } => {
            format!("carrying a restore point of {vm}")
        }
        Request::PointSent { vm, .. } => format!("the end of the backup of {vm}"),
        Request::MigrateSend { vm, .. }
        | Request::MigrateRead { vm, .. }
        | Request::MigrateWrite { vm, .. }
        | Request::MigrateStatus { vm }
        | Request::MigrateCancel { vm }
        | Request::Arrived { vm } => format!("the migration of {vm}"),
        Request::Discard { vm } => format!("discarding {vm}"),
    }
}

/// Hosts reached two ways: this machine as a child process, the others over
/// SSH.
pub struct Hosts {
    pub local: LocalConnector,
    pub ssh: ssh::SshConnector,
}

impl Connector for Hosts {
    fn connect(&self, host: &str) -> Result<Arc<dyn Link>, String> {
        if host == self.local.name {
            self.local.connect(host)
        } else {
            self.ssh.connect(host)
        }
    }
}

/// A line of a guest's console that says its kernel failed.
fn guest_failed(line: &str) -> bool {
    [
        "Oops:",
        "Kernel panic",
        "BUG: ",
        "general protection fault",
        "invalid opcode:",
    ]
    .iter()
    .any(|m| line.contains(m))
}
