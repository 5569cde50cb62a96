//! Live migration, a host's side. The source's QEMU migrates into a unix
//! socket in the VM's folder that this agent listens on; the destination's
//! QEMU (started `incoming`) listens on one that this agent connects to.
//! Between the two, the executor carries the stream in pieces over the
//! conversations it already holds with both hosts (SSH: authenticated and
//! encrypted), so nothing listens on a host's network for a migration.
//!
//! QEMU sends the memory (pre-copy, auto-converge for a guest that dirties
//! it fast) and, by block migration with `block-incremental`, the blocks
//! the VM's own disks hold: its program overlays' (their backing program
//! is on both hosts) and its data disks', with their dirty bitmaps (the
//! backups' restore points follow the disk). The source QEMU stays paused
//! once the destination has everything; the executor then discards it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::process::running_pid;
use super::{failed, jail, Fail, HostAgent};
use crate::protocol::*;
use crate::qmp::{Command, Qmp};

/// The socket the source's QEMU sends into (this agent listens).
const OUT: &str = "migrate-out.sock";
/// The socket the destination's QEMU listens on (this agent connects).
const IN: &str = "migrate-in.sock";
/// A VM launched to receive a migration, until it arrived.
pub(super) const AWAITED: &str = "migrating";

/// Whether the VM in `dir` is in a migration, sending (its stream's socket
/// is there) or receiving (launched for one and not yet arrived): its
/// guest is not asked anything then (a status does not ping its agent).
pub(super) fn migrating(dir: &Path) -> bool {
    dir.join(OUT).exists() || dir.join(AWAITED).exists()
}
/// The most one [`Request::MigrateRead`] answers with.
const MAX_PIECE: u64 = 4 << 20;

/// The migration streams of this conversation, by VM folder.
#[derive(Default)]
pub(super) struct Streams(Mutex<HashMap<PathBuf, Arc<Mutex<UnixStream>>>>);

impl Streams {
    fn insert(&self, dir: &Path, stream: UnixStream) {
        self.lock()
            .insert(dir.to_path_buf(), Arc::new(Mutex::new(stream)));
    }

    fn get(&self, dir: &Path, vm: &VmId) -> Result<Arc<Mutex<UnixStream>>, Fail> {
        self.lock().get(dir).cloned().ok_or_else(|| {
            (
                HostErrorKind::BadRequest,
                format!("no migration of {vm} is under way in this conversation"),
            )
        })
    }

    fn remove(&self, dir: &Path) {
        self.lock().remove(dir);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<Mutex<UnixStream>>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// QMP's migration commands, typed as QEMU 7.2's schema has them.
#[derive(Serialize)]
struct Capability {
    capability: &'static str,
    state: bool,
}

#[derive(Serialize)]
struct SetCapabilities {
    capabilities: Vec<Capability>,
}
impl Command for SetCapabilities {
    const NAME: &'static str = "migrate-set-capabilities";
    type Return = serde::de::IgnoredAny;
}

#[derive(Serialize)]
struct SetParameters {
    #[serde(rename = "block-incremental")]
    block_incremental: bool,
    #[serde(rename = "downtime-limit")]
    downtime_limit: u64,
    #[serde(rename = "max-bandwidth")]
    max_bandwidth: u64,
}
impl Command for SetParameters {
    const NAME: &'static str = "migrate-set-parameters";
    type Return = serde::de::IgnoredAny;
}

#[derive(Serialize)]
struct Migrate {
    uri: String,
}
impl Command for Migrate {
    const NAME: &'static str = "migrate";
    type Return = serde::de::IgnoredAny;
}

#[derive(Serialize)]
struct MigrateIncoming {
    uri: String,
}
impl Command for MigrateIncoming {
    const NAME: &'static str = "migrate-incoming";
    type Return = serde::de::IgnoredAny;
}

#[derive(Serialize, Default)]
struct MigrateCancel {}
impl Command for MigrateCancel {
    const NAME: &'static str = "migrate_cancel";
    type Return = serde::de::IgnoredAny;
}

#[derive(Serialize, Default)]
struct Cont {}
impl Command for Cont {
    const NAME: &'static str = "cont";
    type Return = serde::de::IgnoredAny;
}

/// The guest's NICs announce themselves (RARP), as a migration's
/// destination does when it starts: the VAN's bridges and VXLAN links
/// learn where the guest is.
#[derive(Serialize)]
struct AnnounceSelf {
    initial: u64,
    max: u64,
    rounds: u64,
    step: u64,
}
impl Command for AnnounceSelf {
    const NAME: &'static str = "announce-self";
    type Return = serde::de::IgnoredAny;
}

#[derive(Serialize, Default)]
struct QueryMigrate {}
#[derive(Deserialize, Default)]
struct MigrationInfo {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    downtime: Option<u64>,
    #[serde(default, rename = "total-time")]
    total_time: Option<u64>,
    #[serde(default)]
    ram: Option<Transferred>,
    #[serde(default)]
    disk: Option<Transferred>,
    #[serde(default, rename = "error-desc")]
    error: Option<String>,
}
#[derive(Deserialize, Default)]
struct Transferred {
    #[serde(default)]
    transferred: u64,
}
impl Command for QueryMigrate {
    const NAME: &'static str = "query-migrate";
    type Return = MigrationInfo;
}

/// Both sides: memory and the disks' own blocks; the disks' dirty bitmaps
/// (the backups' marks of what the guest wrote since a restore point, so
/// the first backup after a move is incremental, not full); the events; a
/// guest that dirties memory faster than it is sent is slowed down.
fn capabilities() -> SetCapabilities {
    SetCapabilities {
        capabilities: vec![
            Capability {
                capability: "block",
                state: true,
            },
            Capability {
                capability: "dirty-bitmaps",
                state: true,
            },
            Capability {
                capability: "events",
                state: true,
            },
            Capability {
                capability: "auto-converge",
                state: true,
            },
        ],
    }
}

fn qmp(dir: &Path) -> Result<Qmp, Fail> {
    Qmp::connect(&dir.join("qmp.sock"), Duration::from_secs(5)).map_err(|e| {
        failed(format!(
            "cannot reach QEMU's monitor in {}: {e}",
            dir.display()
        ))
    })
}

fn qmp_err(what: &str) -> impl Fn(std::io::Error) -> Fail + '_ {
    move |e| failed(format!("{what}: {e}"))
}

impl HostAgent {
    /// The destination: QEMU (just launched with `-incoming defer`) listens
    /// on [`IN`], and this conversation holds the connection to it.
    pub(super) fn await_migration(&self, dir: &Path) -> Result<(), Fail> {
        let mut q = qmp(dir)?;
        q.execute(&capabilities())
            .map_err(qmp_err("QEMU refuses the migration's capabilities"))?;
        let path = dir.join(IN);
        let _ = std::fs::remove_file(&path);
        q.execute(&MigrateIncoming {
            uri: format!("unix:{IN}"),
        })
        .map_err(qmp_err("QEMU does not wait for a migration"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match UnixStream::connect(&path) {
                Ok(stream) => break stream,
                Err(e) if Instant::now() > deadline => {
                    return Err(failed(format!(
                        "the incoming QEMU does not listen on {}: {e}",
                        path.display()
                    )))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        // Connected: the name is no longer needed.
        let _ = std::fs::remove_file(&path);
        self.streams.insert(dir, stream);
        Ok(())
    }

    pub(super) fn migrate_send(&self, vm: &VmId, downtime_ms: u64) -> Result<Response, Fail> {
        let dir = self.vm_dir(vm)?;
        if running_pid(&dir).is_none() {
            return Err(failed(format!(
                "{vm} does not run here: nothing to migrate"
            )));
        }
        let uid = jail::uid_of(&dir).map_err(failed)?;
        let path = dir.join(OUT);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| failed(format!("cannot listen on {}: {e}", path.display())))?;
        // QEMU runs as the VM's own user.
        std::os::unix::fs::chown(&path, Some(uid), Some(uid))
            .map_err(|e| failed(format!("cannot give {} to the VM: {e}", path.display())))?;
        let mut q = qmp(&dir)?;
        q.execute(&capabilities())
            .map_err(qmp_err("QEMU refuses the migration's capabilities"))?;
        q.execute(&SetParameters {
            block_incremental: true,
            downtime_limit: downtime_ms.max(1),
            // The executor's relay is what limits the rate, not QEMU
            // (whose default is 32 MiB/s).
            max_bandwidth: 1 << 40,
        })
        .map_err(qmp_err("QEMU refuses the migration's parameters"))?;
        q.execute(&Migrate {
            uri: format!("unix:{OUT}"),
        })
        .map_err(qmp_err("QEMU does not migrate"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| failed(e.to_string()))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        let _ = q.execute(&MigrateCancel {});
                        let _ = std::fs::remove_file(&path);
                        return Err(failed(format!(
                            "QEMU did not connect to {} within 10 s",
                            path.display()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(failed(format!("cannot accept QEMU's stream: {e}"))),
            }
        };
        let _ = std::fs::remove_file(&path);
        stream
            .set_nonblocking(false)
            .map_err(|e| failed(e.to_string()))?;
        self.streams.insert(&dir, stream);
        Ok(Response::Migrating)
    }

    /// What the source's QEMU sends: waits up to 200 ms for something, then
    /// gathers for up to 50 ms more, up to `max` (a piece per round trip:
    /// a socket's buffer alone would make the pieces small).
    pub(super) fn migrate_read(&self, vm: &VmId, max: u64) -> Result<Response, Fail> {
        let dir = self.vm_dir(vm)?;
        let stream = self.streams.get(&dir, vm)?;
        let mut stream = stream.lock().unwrap_or_else(|e| e.into_inner());
        let max = max.clamp(1, MAX_PIECE) as usize;
        let mut data = vec![0u8; max];
        let mut len = 0;
        let mut end = false;
        let mut until = Instant::now() + Duration::from_millis(200);
        let mut first = true;
        while len < max {
            let Some(wait) = until
                .checked_duration_since(Instant::now())
                .filter(|w| !w.is_zero())
            else {
                break;
            };
            stream
                .set_read_timeout(Some(wait))
                .map_err(|e| failed(e.to_string()))?;
            match stream.read(&mut data[len..]) {
                Ok(0) => {
                    end = true;
                    break;
                }
                Ok(n) => {
                    len += n;
                    if first {
                        first = false;
                        until = Instant::now() + Duration::from_millis(50);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(failed(format!("the migration stream broke: {e}"))),
            }
        }
        drop(stream);
        if end {
            self.streams.remove(&dir);
        }
        data.truncate(len);
        Ok(Response::Stream {
            data: base64::engine::general_purpose::STANDARD.encode(&data),
            end,
        })
    }

    pub(super) fn migrate_write(&self, vm: &VmId, data: &str, end: bool) -> Result<Response, Fail> {
        let dir = self.vm_dir(vm)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| (HostErrorKind::BadRequest, format!("not base64: {e}")))?;
        let stream = self.streams.get(&dir, vm)?;
        {
            let mut stream = stream.lock().unwrap_or_else(|e| e.into_inner());
            stream
                .write_all(&bytes)
                .map_err(|e| failed(format!("the incoming QEMU stopped reading: {e}")))?;
            if end {
                let _ = stream.shutdown(std::net::Shutdown::Write);
            }
        }
        if end {
            self.streams.remove(&dir);
        }
        Ok(Response::Migrating)
    }

    pub(super) fn migrate_status(&self, vm: &VmId) -> Result<Response, Fail> {
        let dir = self.vm_dir(vm)?;
        if running_pid(&dir).is_none() {
            return Ok(Response::Migration {
                status: "no QEMU".into(),
                downtime_ms: None,
                total_ms: None,
                transferred: 0,
                running: false,
            });
        }
        let mut q = qmp(&dir)?;
        let info = q
            .execute(&QueryMigrate {})
            .map_err(qmp_err("QEMU does not say how its migration stands"))?;
        let running = q.status().map(|s| s == "running").unwrap_or(false);
        let status = match (info.status, info.error) {
            (Some(status), Some(error)) => format!("{status}: {error}"),
            (Some(status), None) => status,
            (None, _) => "none".into(),
        };
        Ok(Response::Migration {
            status,
            downtime_ms: info.downtime,
            total_ms: info.total_time,
            transferred: info.ram.unwrap_or_default().transferred
                + info.disk.unwrap_or_default().transferred,
            running,
        })
    }

    pub(super) fn arrived(&self, vm: &VmId) -> Result<Response, Fail> {
        let dir = self.vm_dir(vm)?;
        if running_pid(&dir).is_none() {
            return Err(failed(format!("{vm} does not run here")));
        }
        // It runs here: its guest may be asked again.
        let _ = std::fs::remove_file(dir.join(AWAITED));
        let _ = std::fs::remove_file(dir.join(IN));
        self.route_arrived(&dir)?;
        Ok(Response::Migrating)
    }

    pub(super) fn migrate_cancel(&self, vm: &VmId) -> Result<Response, Fail> {
        let dir = self.vm_dir(vm)?;
        self.streams.remove(&dir);
        let _ = std::fs::remove_file(dir.join(OUT));
        if running_pid(&dir).is_some() {
            let mut q = qmp(&dir)?;
            q.execute(&MigrateCancel {})
                .map_err(qmp_err("QEMU does not cancel its migration"))?;
            // Completed, but the destination did not take over: the guest
            // goes on here from where it paused.
            if q.status().is_ok_and(|s| s == "postmigrate") {
                q.execute(&Cont {})
                    .map_err(qmp_err("QEMU does not resume the guest"))?;
                // The destination may have run it a moment and told the
                // network so: here again, it says it is back.
                let _ = q.execute(&AnnounceSelf {
                    initial: 50,
                    max: 550,
                    rounds: 5,
                    step: 100,
                });
                self.route_arrived(&dir)?;
            }
        }
        Ok(Response::Migrating)
    }

    pub(super) fn discard(&self, vm: &VmId) -> Result<Response, Fail> {
        let dir = self.vm_dir(vm)?;
        self.streams.remove(&dir);
        super::launch::kill_vm(&dir);
        if dir.exists() {
            self.remove_taps(&dir)?;
            std::fs::remove_dir_all(&dir)
                .map_err(|e| failed(format!("cannot delete {}: {e}", dir.display())))?;
        }
        Ok(Response::Discarded)
    }
}
