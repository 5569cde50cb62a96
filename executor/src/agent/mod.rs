//! The host side: what `cvl host serve` runs, answering [`Request`]s on
//! stdin/stdout, one JSON line each. It owns everything under its root:
//!
//! ```text
//! ROOT/cache/                  program files by repository and version (verified by cvl-repo)
//! ROOT/vms/DEPLOYMENT/PATH/    one VM: program-DEV.qcow2 overlays, data-DEV.qcow2,
//!                              qemu.pid, qmp.sock, qga.sock, console.log
//! ROOT/attic/DEPLOYMENT/PATH-TIME/   removed VMs, disks and all (never deleted)
//! ROOT/accel                   the accelerator found to work here (kvm or tcg)
//! ROOT/kernels/SHA256.elf      kit kernels unpacked from their bzImage for PVH boot
//! ```
//!
//! Each QEMU runs in a jail of its own ([`jail`]: its own uid, a mount
//! namespace with its own files only, seccomp, a cgroup); parameters reach
//! the guest through fw_cfg from a tmpfs file of mode 0600 (the VM's) that
//! is removed as soon as QEMU has read it, and on a resend through the
//! guest agent. No value is ever on a command line.
//!
//! One module per concern: [`launch`] (QEMU: start, stop, the accelerator),
//! [`process`] (whether a VM's QEMU runs, waiting for it to end), [`disks`]
//! (program overlays, data disks, carrying them), [`network`] (taps, VAN bridges, VXLAN, public routes), [`incoming`]
//! (files the executor sends, the program cache), [`guest`] (the guest
//! contract: parameters at boot, resends, status, commands run inside),
//! [`jail`] (each QEMU's user, namespace, seccomp and cgroup), [`backup`]
//! (data disks backed up and restored), [`store`] (where backups are kept,
//! checked and thinned), [`attic`] (removed VMs), [`migrate`] (live
//! migration: the stream out of a running VM's QEMU and into an incoming
//! one), [`pvh`] (a kit kernel unpacked from its bzImage to boot sooner).

mod announce;
mod attic;
mod backup;
pub mod cloud_init;
mod disks;
mod guest;
mod incoming;
pub mod jail;
mod launch;
mod migrate;
mod network;
mod process;
mod pvh;
mod store;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::protocol::*;
use guest::ParamsFile;

pub use network::tap_name;
pub use process::running_pid;

type Fail = (HostErrorKind, String);

fn failed(message: impl Into<String>) -> Fail {
    (HostErrorKind::Failed, message.into())
}

/// Serves requests until the input ends, each on a thread of its own, so
/// that a long start does not hold up a status; answers go out as they are
/// ready, tagged with their request's id. At the end of input, the requests
/// under way finish before it returns.
pub fn serve(root: &Path, input: impl BufRead, output: impl Write + Send) -> std::io::Result<()> {
    jail::ensure_cgroups_visible();
    let host = HostAgent::new(root.to_path_buf());
    let output = std::sync::Mutex::new(output);
    let answer = |id: u64, body: Response| {
        let mut text =
            serde_json::to_string(&Envelope { id, body }).expect("a response serializes");
        text.push('\n');
        let mut out = output.lock().unwrap_or_else(|e| e.into_inner());
        // The executor may have gone; the operation stands regardless.
        let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
    };
    std::thread::scope(|scope| {
        for line in input.lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Envelope<Request>>(&line) {
                Ok(Envelope { id, body }) => {
                    let (host, answer) = (&host, &answer);
                    scope.spawn(move || {
                        // A bug in one operation is an answer, not a
                        // conversation that hangs.
                        let body = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            host.handle(body)
                        }))
                        .unwrap_or_else(|panic| Response::Error {
                            kind: HostErrorKind::Failed,
                            message: format!(
                                "the host agent failed (a bug; please report it): {}",
                                panic
                                    .downcast_ref::<String>()
                                    .map(String::as_str)
                                    .or_else(|| panic.downcast_ref::<&str>().copied())
                                    .unwrap_or("a panic")
                            ),
                        });
                        answer(id, body)
                    });
                }
                Err(e) => {
                    let id = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| v.get("id")?.as_u64())
                        .unwrap_or(0);
                    answer(
                        id,
                        Response::Error {
                            kind: HostErrorKind::BadRequest,
                            message: format!("not a request of protocol {PROTOCOL}: {e}"),
                        },
                    );
                }
            }
        }
        Ok(())
    })
}

pub struct HostAgent {
    root: PathBuf,
    /// This agent process: its pieces of incoming files are its own
    /// (`PID-NANOS`), so two conversations sending one file never mix.
    instance: String,
    /// The live migrations this conversation carries.
    streams: migrate::Streams,
}

impl HostAgent {
    pub fn new(root: PathBuf) -> HostAgent {
        ParamsFile::sweep();
        let agent = HostAgent {
            root,
            instance: format!(
                "{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos())
            ),
            streams: migrate::Streams::default(),
        };
        agent.sweep_parts();
        agent
    }

    pub fn handle(&self, request: Request) -> Response {
        // One operation at a time per VM, across agent processes: an agent
        // left over from a killed apply finishes before the next touches it.
        let _lock = match &request {
            Request::Start(spec) => self.lock(&spec.vm),
            Request::Stop { vm, .. }
            | Request::Resend { vm, .. }
            | Request::Attic { vm }
            | Request::Backup { vm, .. }
            | Request::PointSent { vm, .. }
            | Request::Restore { vm, .. }
            | Request::MigrateSend { vm, .. }
            | Request::MigrateCancel { vm }
            | Request::Arrived { vm }
            | Request::Discard { vm } => self.lock(vm),
            Request::Hello { .. }
            | Request::Status { .. }
            | Request::Console { .. }
            | Request::Fabric(_)
            | Request::Missing { .. }
            | Request::Put { .. }
            | Request::Digest { .. }
            | Request::Get { .. }
            | Request::ExecStart { .. }
            | Request::ExecPoll { .. }
            | Request::Backups { .. }
            | Request::PruneBackups { .. }
            | Request::VerifyBackups { .. }
            | Request::ReadPoint { .. }
            | Request::AddPoint { .. }
            // The stream's pieces and the status: a migration under way
            // is not held up by a backup's status or another read.
            | Request::MigrateRead { .. }
            | Request::MigrateWrite { .. }
            | Request::MigrateStatus { .. } => Ok(None),
        };
        let _lock = match _lock {
            Ok(lock) => lock,
            Err((kind, message)) => return Response::Error { kind, message },
        };
        let result = match request {
            Request::Hello { protocol } if protocol == PROTOCOL => Ok(Response::Hello {
                protocol: PROTOCOL,
                version: env!("CARGO_PKG_VERSION").to_string(),
            }),
            Request::Hello { protocol } => Err((
                HostErrorKind::BadRequest,
                format!("this host agent speaks protocol {PROTOCOL}, not {protocol}"),
            )),
            Request::Start(spec) => self.start(&spec),
            Request::Stop { vm, timeout_secs } => self.stop(&vm, timeout_secs),
            Request::Resend { vm, params } => self.resend(&vm, &params),
            Request::Attic { vm } => self.attic(&vm),
            Request::MigrateSend { vm, downtime_ms } => self.migrate_send(&vm, downtime_ms),
            Request::MigrateRead { vm, max } => self.migrate_read(&vm, max),
            Request::MigrateWrite { vm, data, end } => self.migrate_write(&vm, &data, end),
            Request::MigrateStatus { vm } => self.migrate_status(&vm),
            Request::MigrateCancel { vm } => self.migrate_cancel(&vm),
            Request::Arrived { vm } => self.arrived(&vm),
            Request::Discard { vm } => self.discard(&vm),
            Request::Backup {
                vm,
                store,
                devices,
                full,
                elsewhere,
                bitmaps,
            } => self.backup(
                &vm,
                (&store, bitmaps.as_deref().unwrap_or(&store)),
                &devices,
                full,
                elsewhere.as_deref(),
            ),
            Request::ReadPoint {
                vm,
                store,
                device,
                file,
                offset,
                len,
            } => self.read_point(&vm, store.as_deref(), &device, &file, offset, len),
            Request::AddPoint { vm, store, point } => self.add_point(&vm, &store, &point),
            Request::PointSent { vm, store, point } => self.point_sent(&vm, &store, &point),
            Request::Backups { vm, store } => self.backups(&vm, &store),
            Request::PruneBackups {
                vm,
                store,
                keep_last,
                keep_daily,
            } => self.prune(
                &vm,
                &store,
                store::Keep {
                    last: keep_last,
                    daily: keep_daily,
                },
            ),
            Request::VerifyBackups { vm, store } => self.verify_backups(&vm, &store),
            Request::Restore {
                vm,
                store,
                device,
                point,
                from,
                chain,
                bitmaps,
            } => self.restore(
                &vm,
                (&store, bitmaps.as_deref().unwrap_or(&store)),
                &device,
                point.as_deref(),
                from.as_ref(),
                chain.as_deref(),
            ),
            Request::Missing { files } => Ok(Response::Lacks {
                files: files.into_iter().filter(|f| !self.received(f)).collect(),
            }),
            Request::Put { file, offset, data } => self.put(&file, offset, &data),
            Request::Digest { vm, file } => self.digest(&vm, &file),
            Request::Get {
                vm,
                file,
                offset,
                len,
            } => self.get(&vm, &file, offset, len),
            Request::Fabric(fabric) => self.set_fabric(&fabric),
            Request::Console { vm, lines } => self.vm_dir(&vm).map(|dir| Response::Console {
                lines: launch::console_lines(&dir.join("console.log"), lines.min(200) as usize),
            }),
            Request::ExecStart { vm, argv, input } => self.exec_start(&vm, &argv, input.as_deref()),
            Request::ExecPoll {
                vm,
                exec,
                stdout_offset,
                stderr_offset,
            } => self.exec_poll(&vm, &exec, stdout_offset, stderr_offset),
            Request::Status {
                vms,
                all,
                snapshots,
            } => Ok(Response::Status {
                unknown: if all { self.unknown(&vms) } else { Vec::new() },
                // Each asks its guest: all at once, not one after another.
                vms: std::thread::scope(|scope| {
                    let asks: Vec<_> = vms
                        .iter()
                        .map(|vm| {
                            scope.spawn(move || {
                                let mut status = self.status(vm);
                                if snapshots {
                                    status.snapshots = self.data_snapshots_of(vm);
                                }
                                status
                            })
                        })
                        .collect();
                    asks.into_iter()
                        .zip(&vms)
                        .map(|(ask, vm)| {
                            ask.join().unwrap_or_else(|_| VmStatus {
                                vm: vm.clone(),
                                pid: None,
                                qmp: None,
                                agent: false,
                                expects_agent: true,
                                snapshots: Default::default(),
                                accel: None,
                            })
                        })
                        .collect()
                }),
            }),
        };
        result.unwrap_or_else(|(kind, message)| Response::Error { kind, message })
    }

    /// An exclusive lock on the VM (`ROOT/locks/DEPLOYMENT/PATH.lock`),
    /// released when the file closes.
    fn lock(&self, vm: &VmId) -> Result<Option<std::fs::File>, Fail> {
        self.lock_as(vm, libc::LOCK_EX)
    }

    /// The VM's lock if no operation holds it now.
    fn try_lock(&self, vm: &VmId) -> Option<std::fs::File> {
        self.lock_as(vm, libc::LOCK_EX | libc::LOCK_NB)
            .ok()
            .flatten()
    }

    fn lock_as(&self, vm: &VmId, how: libc::c_int) -> Result<Option<std::fs::File>, Fail> {
        let path = self.lock_path(vm, "lock")?;
        std::fs::create_dir_all(path.parent().unwrap()).map_err(|e| failed(e.to_string()))?;
        let file = std::fs::File::create(&path)
            .map_err(|e| failed(format!("cannot lock {}: {e}", path.display())))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), how) } != 0 {
            return Err(failed(format!("cannot lock {}", path.display())));
        }
        Ok(Some(file))
    }

    /// A file beside the VM's lock (`locks/DEPLOYMENT/PATH.EXT`), where
    /// only root writes.
    fn lock_path(&self, vm: &VmId, ext: &str) -> Result<PathBuf, Fail> {
        let dir = self.vm_dir(vm)?;
        let rel = dir.strip_prefix(self.root.join("vms")).expect("under vms");
        // Not with_extension: component paths hold dots (`s.x`).
        Ok(self
            .root
            .join("locks")
            .join(format!("{}.{ext}", rel.display())))
    }

    fn vm_dir(&self, vm: &VmId) -> Result<PathBuf, Fail> {
        let safe = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
                && !s.starts_with('.')
        };
        let path = if vm.path.is_empty() { "_" } else { &vm.path };
        if !safe(&vm.deployment) || !safe(path) {
            return Err((
                HostErrorKind::BadRequest,
                format!("{vm} is not a component name"),
            ));
        }
        Ok(self.root.join("vms").join(&vm.deployment).join(path))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
