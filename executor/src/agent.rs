//! The host side: what `cvl host serve` runs, answering [`Request`]s on
//! stdin/stdout, one JSON line each. It owns everything under its root:
//!
//! ```text
//! ROOT/cache/                  program files by repository and version (verified by cvl-repo)
//! ROOT/vms/DEPLOYMENT/PATH/    one VM: program-DEV.qcow2 overlays, data-DEV.qcow2,
//!                              qemu.pid, qmp.sock, qga.sock, console.log
//! ROOT/attic/DEPLOYMENT/PATH-TIME/   removed VMs, disks and all (never deleted)
//! ROOT/accel                   the accelerator found to work here (kvm or tcg)
//! ```
//!
//! QEMU runs daemonized; parameters reach the guest through fw_cfg from a
//! tmpfs file of mode 0600 that is removed as soon as QEMU has read it, and
//! on a resend through the guest agent. No value is ever on a command line.

use std::io::{BufRead, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::protocol::*;
use crate::qmp::{Agent, Qmp};

type Fail = (HostErrorKind, String);

fn failed(message: impl Into<String>) -> Fail {
    (HostErrorKind::Failed, message.into())
}

/// Serves requests until the input ends, each on a thread of its own, so
/// that a long start does not hold up a status; answers go out as they are
/// ready, tagged with their request's id. At the end of input, the requests
/// under way finish before it returns.
pub fn serve(root: &Path, input: impl BufRead, output: impl Write + Send) -> std::io::Result<()> {
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
                    scope.spawn(move || answer(id, host.handle(body)));
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
}

impl HostAgent {
    pub fn new(root: PathBuf) -> HostAgent {
        ParamsFile::sweep();
        HostAgent { root }
    }

    pub fn handle(&self, request: Request) -> Response {
        // One operation at a time per VM, across agent processes: an agent
        // left over from a killed apply finishes before the next touches it.
        let _lock = match &request {
            Request::Start(spec) => self.lock(&spec.vm),
            Request::Stop { vm, .. } | Request::Resend { vm, .. } | Request::Attic { vm } => {
                self.lock(vm)
            }
            Request::Hello { .. }
            | Request::Status { .. }
            | Request::Fabric(_)
            | Request::Missing { .. }
            | Request::Put { .. }
            | Request::Digest { .. }
            | Request::Get { .. } => Ok(None),
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
            Request::Status { vms, all } => Ok(Response::Status {
                unknown: if all { self.unknown(&vms) } else { Vec::new() },
                // Each asks its guest: all at once, not one after another.
                vms: std::thread::scope(|scope| {
                    let asks: Vec<_> = vms
                        .iter()
                        .map(|vm| scope.spawn(move || self.status(vm)))
                        .collect();
                    asks.into_iter()
                        .zip(&vms)
                        .map(|(ask, vm)| {
                            ask.join().unwrap_or_else(|_| VmStatus {
                                vm: vm.clone(),
                                pid: None,
                                qmp: None,
                                agent: false,
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
        let dir = self.vm_dir(vm)?;
        let rel = dir.strip_prefix(self.root.join("vms")).expect("under vms");
        // Not with_extension: component paths hold dots (`s.x`).
        let path = self
            .root
            .join("locks")
            .join(format!("{}.lock", rel.display()));
        std::fs::create_dir_all(path.parent().unwrap()).map_err(|e| failed(e.to_string()))?;
        let file = std::fs::File::create(&path)
            .map_err(|e| failed(format!("cannot lock {}: {e}", path.display())))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(failed(format!("cannot lock {}", path.display())));
        }
        Ok(Some(file))
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

    fn start(&self, spec: &StartSpec) -> Result<Response, Fail> {
        let t0 = Instant::now();
        let dir = self.vm_dir(&spec.vm)?;
        if let Some(pid) = running_pid(&dir) {
            if spec.fresh_program {
                return Err(failed(format!(
                    "{} is running: stop it before an update",
                    spec.vm
                )));
            }
            let deadline = Instant::now() + Duration::from_secs(spec.ready_timeout_secs);
            Agent::wait(&dir.join("qga.sock"), deadline).map_err(|e| {
                (
                    HostErrorKind::Timeout,
                    format!("{} runs but its guest agent does not answer: {e}", spec.vm),
                )
            })?;
            return Ok(Response::Started {
                pid,
                already: true,
                accel: std::fs::read_to_string(dir.join("accel")).unwrap_or_default(),
                prepare_ms: 0,
                boot_ms: 0,
            });
        }
        let program = self.program_dir(&spec.program)?;
        let description_path = program.join(&spec.description);
        cvl_repo::paths::check_relative(&spec.description).map_err(failed)?;
        let text = std::fs::read_to_string(&description_path)
            .map_err(|e| failed(format!("cannot read {}: {e}", description_path.display())))?;
        let description = cvl_repo::vm::VmDescription::parse(&text)
            .map_err(|e| failed(format!("{}: {e}", description_path.display())))?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;

        // Disks: program overlays (replaced on an update), data disks (never).
        let mut drives = Vec::new();
        let data_devices: Vec<&str> = spec.data_disks.iter().map(|(d, _)| d.as_str()).collect();
        for disk in &description.disks {
            if data_devices.contains(&disk.device.as_str()) {
                continue;
            }
            let base = program.join(&disk.file);
            let overlay = dir.join(format!("program-{}.qcow2", file_safe(&disk.device)));
            if spec.fresh_program || !overlay.exists() {
                let tmp = overlay.with_extension("tmp");
                let _ = std::fs::remove_file(&tmp);
                let base = std::path::absolute(&base).map_err(|e| failed(e.to_string()))?;
                qemu_img(&[
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-b",
                    &base.to_string_lossy(),
                    "-F",
                    "qcow2",
                    &tmp.to_string_lossy(),
                ])?;
                std::fs::rename(&tmp, &overlay).map_err(|e| failed(e.to_string()))?;
            }
            drives.push(overlay);
        }
        // Data disks carried over from another host: taken where missing.
        for (file, dest) in &spec.adopt {
            let disk = self.data_disk(&spec.vm, file)?;
            if !disk.exists() {
                std::fs::rename(self.incoming(dest)?, &disk).map_err(|e| {
                    failed(format!(
                        "cannot take the data disk {file} carried over: {e}"
                    ))
                })?;
            }
        }
        for (device, size) in &spec.data_disks {
            let disk = dir.join(data_disk_file(device));
            if !disk.exists() {
                if !valid_size(size) {
                    return Err(failed(format!(
                        "the data disk {device} has the size {size:?}; give one like \"100M\" or \"2G\" in datadisks"
                    )));
                }
                let tmp = disk.with_extension("tmp");
                let _ = std::fs::remove_file(&tmp);
                qemu_img(&["create", "-q", "-f", "qcow2", &tmp.to_string_lossy(), size])?;
                std::fs::rename(&tmp, &disk).map_err(|e| failed(e.to_string()))?;
            }
            drives.push(disk);
        }

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
            ensure_tap(&tap, bridge.as_deref())?;
            if let (true, Some(ip)) = (nic.public, &nic.ip) {
                if let Some(uplink) = self.fabric().and_then(|f| f.uplink) {
                    self.route_public(ip, &uplink)?;
                    routes.push(ip.clone());
                }
            }
            netdevs.push((format!("n{i}"), tap, nic.mac.clone()));
        }
        drop(_network);
        // Which taps are this VM's: removed with it when it goes to the attic.
        let taps: String = netdevs
            .iter()
            .map(|(_, tap, _)| format!("{tap}\n"))
            .collect();
        std::fs::write(dir.join("taps"), taps).map_err(|e| failed(e.to_string()))?;
        let routes: String = routes.iter().map(|ip| format!("{ip}\n")).collect();
        std::fs::write(dir.join("routes"), routes).map_err(|e| failed(e.to_string()))?;

        let params = ParamsFile::write(&spec.params)?;
        let accel = self.accel(&dir)?;
        let launch = |accel: &str| -> Result<(), Fail> {
            let mut args: Vec<String> = vec![
                "-name".into(),
                format!("cvl:{}", spec.vm),
                "-accel".into(),
                accel.into(),
                "-machine".into(),
                description.machine.clone(),
                "-m".into(),
                spec.memory_mib.max(description.memory).to_string(),
                "-smp".into(),
                description.vcpus.to_string(),
                "-nodefaults".into(),
                "-no-user-config".into(),
                "-display".into(),
                "none".into(),
                "-serial".into(),
                "file:console.log".into(),
                "-daemonize".into(),
                "-pidfile".into(),
                "qemu.pid".into(),
                "-qmp".into(),
                "unix:qmp.sock,server=on,wait=off".into(),
                "-chardev".into(),
                "socket,path=qga.sock,server=on,wait=off,id=qga0".into(),
                "-device".into(),
                "virtio-serial".into(),
                "-device".into(),
                "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0".into(),
                "-fw_cfg".into(),
                format!("name=opt/cvl/params,file={}", params.path.display()),
            ];
            if let Some(boot) = &description.boot {
                args.extend([
                    "-kernel".into(),
                    program.join(&boot.kernel).to_string_lossy().into_owned(),
                ]);
                if let Some(initrd) = &boot.initrd {
                    args.extend([
                        "-initrd".into(),
                        program.join(initrd).to_string_lossy().into_owned(),
                    ]);
                }
                args.extend([
                    "-append".into(),
                    boot.cmdline
                        .clone()
                        .unwrap_or_else(|| "console=ttyS0 quiet".into()),
                ]);
            }
            for drive in &drives {
                args.extend([
                    "-drive".into(),
                    format!(
                        "file={},if=virtio,format=qcow2",
                        drive.file_name().unwrap().to_string_lossy()
                    ),
                ]);
            }
            for (id, tap, mac) in &netdevs {
                args.extend([
                    "-netdev".into(),
                    format!("tap,id={id},ifname={tap},script=no,downscript=no"),
                    "-device".into(),
                    format!("virtio-net-pci,netdev={id},mac={mac}"),
                ]);
            }
            let out = Command::new("qemu-system-x86_64")
                .args(&args)
                .current_dir(&dir)
                .output()
                .map_err(|e| failed(if e.kind() == std::io::ErrorKind::NotFound {
                    "qemu-system-x86_64 is not installed on this host (Debian: apt-get install qemu-system-x86)".to_string()
                } else {
                    format!("cannot run qemu-system-x86_64: {e}")
                }))?;
            if !out.status.success() {
                return Err(failed(format!(
                    "qemu-system-x86_64 failed for {}: {}",
                    spec.vm,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Ok(())
        };
        let prepare_ms = t0.elapsed().as_millis() as u64;
        let t1 = Instant::now();
        let ready_deadline = |secs: u64| Instant::now() + Duration::from_secs(secs);
        launch(&accel.name)?;
        let mut used = accel.name.clone();
        let ready = if accel.trial {
            // KVM that exists may still hang guests: give it a short trial.
            match Agent::wait(
                &dir.join("qga.sock"),
                ready_deadline(spec.ready_timeout_secs.min(20)),
            ) {
                Ok(_) => {
                    self.remember_accel("kvm");
                    Ok(())
                }
                Err(_) => {
                    kill_vm(&dir);
                    self.remember_accel("tcg");
                    used = "tcg".into();
                    launch("tcg")?;
                    Agent::wait(
                        &dir.join("qga.sock"),
                        ready_deadline(spec.ready_timeout_secs),
                    )
                    .map(|_| ())
                }
            }
        } else {
            Agent::wait(
                &dir.join("qga.sock"),
                ready_deadline(spec.ready_timeout_secs),
            )
            .map(|_| ())
        };
        drop(params);
        let _ = std::fs::write(dir.join("accel"), &used);
        if let Err(e) = ready {
            kill_vm(&dir);
            return Err((
                HostErrorKind::Timeout,
                format!(
                    "{} did not become ready: its guest agent did not answer within {} s ({e}); \
                     it was stopped; its console is in {}",
                    spec.vm,
                    spec.ready_timeout_secs,
                    dir.join("console.log").display()
                ),
            ));
        }
        let pid = running_pid(&dir)
            .ok_or_else(|| failed(format!("{} exited right after starting", spec.vm)))?;
        Ok(Response::Started {
            pid,
            already: false,
            accel: used,
            prepare_ms,
            boot_ms: t1.elapsed().as_millis() as u64,
        })
    }

    /// Where a file sent by the executor lives, checked to stay there.
    fn incoming(&self, dest: &str) -> Result<PathBuf, Fail> {
        cvl_repo::paths::confined(&self.root.join("incoming"), dest).map_err(|e| {
            (
                HostErrorKind::BadRequest,
                format!("refused to store `{dest}`: {e}"),
            )
        })
    }

    /// The SHA-256 and size of a stopped VM's data disk, to carry it over.
    fn digest(&self, vm: &VmId, file: &str) -> Result<Response, Fail> {
        let disk = self.data_disk(vm, file)?;
        if running_pid(&self.vm_dir(vm)?).is_some() {
            return Err(failed(format!(
                "{vm} is running: stop it before carrying its disks"
            )));
        }
        if !disk.exists() {
            return Ok(Response::Digest {
                sha256: None,
                size: 0,
            });
        }
        let mut hasher = Sha256::new();
        let size = std::io::copy(
            &mut std::fs::File::open(&disk).map_err(|e| failed(e.to_string()))?,
            &mut hasher,
        )
        .map_err(|e| failed(e.to_string()))?;
        Ok(Response::Digest {
            sha256: Some(hex(&hasher.finalize())),
            size,
        })
    }

    /// A piece of a VM's data disk (at most 8 MiB).
    fn get(&self, vm: &VmId, file: &str, offset: u64, len: u64) -> Result<Response, Fail> {
        use base64::Engine;
        use std::io::{Read, Seek, SeekFrom};
        let disk = self.data_disk(vm, file)?;
        let mut input = std::fs::File::open(&disk).map_err(|e| failed(e.to_string()))?;
        input
            .seek(SeekFrom::Start(offset))
            .map_err(|e| failed(e.to_string()))?;
        let mut buf = Vec::new();
        input
            .take(len.min(8 << 20))
            .read_to_end(&mut buf)
            .map_err(|e| failed(e.to_string()))?;
        Ok(Response::Piece {
            data: base64::engine::general_purpose::STANDARD.encode(&buf),
        })
    }

    /// A VM's data disk file, by its name in the VM's folder.
    fn data_disk(&self, vm: &VmId, file: &str) -> Result<PathBuf, Fail> {
        let plain = file
            .strip_prefix("data-")
            .and_then(|f| f.strip_suffix(".qcow2"));
        if !plain.is_some_and(|p| {
            !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        }) {
            return Err((
                HostErrorKind::BadRequest,
                format!("`{file}` is not a data disk's name"),
            ));
        }
        Ok(self.vm_dir(vm)?.join(file))
    }

    /// The mark a received file gets once verified: outside the incoming
    /// tree, so no file sent can pose as one.
    fn received_mark(&self, dest: &str) -> PathBuf {
        self.root
            .join("incoming-verified")
            .join(hex(&Sha256::digest(dest.as_bytes())))
    }

    fn received(&self, file: &Incoming) -> bool {
        let Ok(path) = self.incoming(&file.dest) else {
            return false;
        };
        std::fs::metadata(&path).is_ok_and(|m| m.len() == file.size)
            && std::fs::read_to_string(self.received_mark(&file.dest))
                .is_ok_and(|m| m == format!("{} {}", file.sha256, file.size))
    }

    /// A piece of a file from the executor; the last one verifies the
    /// whole and puts it in place (a file of another content is refused).
    fn put(&self, file: &Incoming, offset: u64, data: &str) -> Result<Response, Fail> {
        use base64::Engine;
        use std::io::{Seek, SeekFrom};
        let bad = |m: String| (HostErrorKind::BadRequest, m);
        let dest = self.incoming(&file.dest)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| bad(format!("a piece of {} is not base64: {e}", file.dest)))?;
        let end = offset + bytes.len() as u64;
        if end > file.size {
            return Err(bad(format!("a piece of {} goes past its size", file.dest)));
        }
        let part = self
            .root
            .join("incoming-parts")
            .join(hex(&Sha256::digest(file.dest.as_bytes())));
        std::fs::create_dir_all(part.parent().unwrap()).map_err(|e| failed(e.to_string()))?;
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(offset == 0)
            .open(&part)
            .map_err(|e| failed(format!("cannot write {}: {e}", part.display())))?;
        let have = out.metadata().map_err(|e| failed(e.to_string()))?.len();
        if have != offset {
            return Err(failed(format!(
                "a piece of {} at {offset} came after {have} bytes: send it again from 0",
                file.dest
            )));
        }
        out.seek(SeekFrom::Start(offset))
            .and_then(|_| out.write_all(&bytes))
            .map_err(|e| failed(format!("cannot write {}: {e}", part.display())))?;
        if end < file.size {
            return Ok(Response::Stored { complete: false });
        }
        out.sync_all().map_err(|e| failed(e.to_string()))?;
        drop(out);
        let mut hasher = Sha256::new();
        std::io::copy(
            &mut std::fs::File::open(&part).map_err(|e| failed(e.to_string()))?,
            &mut hasher,
        )
        .map_err(|e| failed(e.to_string()))?;
        let actual = hex(&hasher.finalize());
        if actual != file.sha256 {
            let _ = std::fs::remove_file(&part);
            return Err(failed(format!(
                "{} arrived with SHA-256 {actual}, not {}: refused",
                file.dest, file.sha256
            )));
        }
        std::fs::create_dir_all(dest.parent().unwrap()).map_err(|e| failed(e.to_string()))?;
        std::fs::rename(&part, &dest).map_err(|e| failed(e.to_string()))?;
        let mark = self.received_mark(&file.dest);
        std::fs::create_dir_all(mark.parent().unwrap()).map_err(|e| failed(e.to_string()))?;
        std::fs::write(&mark, format!("{} {}", file.sha256, file.size))
            .map_err(|e| failed(e.to_string()))?;
        Ok(Response::Stored { complete: true })
    }

    /// The local folder holding a program's files, fetched and verified
    /// into this host's cache.
    fn program_dir(&self, source: &ProgramSource) -> Result<PathBuf, Fail> {
        match source {
            ProgramSource::Folder { dir } => Ok(PathBuf::from(dir)),
            ProgramSource::Staged { name, version } => {
                let dir = self.incoming(name)?;
                let Some(version) = version else {
                    return Ok(dir);
                };
                // A repository's files as sent: read in place, verified
                // against the index as any repository is.
                let settings = cvl_repo::Settings::plain(self.root.clone());
                let fetcher = cvl_repo::Fetcher::new(settings);
                let location = cvl_repo::Location::Dir(dir.clone());
                let index = fetcher
                    .index(&location)
                    .map_err(failed)?
                    .ok_or_else(|| failed(format!("{} holds no repository", dir.display())))?;
                fetcher
                    .fetch_version(&location, &index, *version)
                    .map_err(failed)
            }
            ProgramSource::Repository { url, version } => {
                let settings = cvl_repo::Settings::plain(self.root.clone());
                let fetcher = cvl_repo::Fetcher::new(settings);
                let location = cvl_repo::Location::parse(url, None).map_err(failed)?;
                // Unreachable from here: the executor can send the files.
                let fetch_failed = |e: String| {
                    if cvl_repo::fetch::is_unreachable(&e) {
                        (HostErrorKind::Unreachable, e)
                    } else {
                        failed(e)
                    }
                };
                let index = fetcher
                    .index(&location)
                    .map_err(fetch_failed)?
                    .ok_or_else(|| failed(format!("{url} is not a repository")))?;
                fetcher
                    .cache_version(&location, &index, *version)
                    .map_err(fetch_failed)
            }
        }
    }

    fn accel(&self, _dir: &Path) -> Result<Accel, Fail> {
        if let Ok(name) = std::env::var("CVL_ACCEL") {
            if name != "kvm" && name != "tcg" {
                return Err(failed(format!("CVL_ACCEL is {name:?}: use kvm or tcg")));
            }
            return Ok(Accel { name, trial: false });
        }
        if let Ok(name) = std::fs::read_to_string(self.root.join("accel")) {
            return Ok(Accel {
                name: name.trim().to_string(),
                trial: false,
            });
        }
        let kvm = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok();
        Ok(if kvm {
            Accel {
                name: "kvm".into(),
                trial: true,
            }
        } else {
            self.remember_accel("tcg");
            Accel {
                name: "tcg".into(),
                trial: false,
            }
        })
    }

    fn remember_accel(&self, name: &str) {
        let _ = cvl_repo::write_atomic(&self.root.join("accel"), name.as_bytes());
    }

    fn stop(&self, vm: &VmId, timeout_secs: u64) -> Result<Response, Fail> {
        let dir = self.vm_dir(vm)?;
        let Some(pid) = running_pid(&dir) else {
            return Ok(Response::Stopped {
                how: "not running".into(),
            });
        };
        let deadline = Instant::now() + Duration::from_secs(timeout_secs);
        let mut how = "agent";
        let asked = Agent::connect(&dir.join("qga.sock"), Duration::from_secs(2))
            .and_then(|mut a| a.shutdown())
            .is_ok();
        if !asked {
            how = "acpi";
            if let Ok(mut q) = Qmp::connect(&dir.join("qmp.sock"), Duration::from_secs(2)) {
                let _ = q.powerdown();
            }
        }
        if !wait_exit(pid, deadline) {
            how = "quit";
            if let Ok(mut q) = Qmp::connect(&dir.join("qmp.sock"), Duration::from_secs(2)) {
                let _ = q.quit();
            }
            if !wait_exit(pid, Instant::now() + Duration::from_secs(5)) {
                how = "killed";
                // SAFETY: signalling a process id read from our own pidfile.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                wait_exit(pid, Instant::now() + Duration::from_secs(5));
            }
        }
        let _ = std::fs::remove_file(dir.join("qemu.pid"));
        Ok(Response::Stopped { how: how.into() })
    }

    fn resend(&self, vm: &VmId, params: &str) -> Result<Response, Fail> {
        let dir = self.vm_dir(vm)?;
        if running_pid(&dir).is_none() {
            return Err(failed(format!("{vm} is not running: nothing to resend to")));
        }
        let mut agent = Agent::connect(&dir.join("qga.sock"), Duration::from_secs(10))
            .map_err(|e| failed(format!("the guest agent of {vm} does not answer: {e}")))?;
        let io = |e: std::io::Error| failed(format!("resend to {vm}: {e}"));
        let t = Duration::from_secs(30);
        // The file is made 0600 before the values go in.
        agent
            .exec(&["/bin/sh", "-c", "umask 077; : > /run/cvl/params.new"], t)
            .map_err(io)?;
        agent
            .write_file("/run/cvl/params.new", params.as_bytes())
            .map_err(io)?;
        let (code, _) = agent
            .exec(
                &[
                    "/bin/sh",
                    "-c",
                    "mv /run/cvl/params.new /run/cvl/params && exec /sbin/cvl-reload",
                ],
                t,
            )
            .map_err(io)?;
        if code != 0 {
            return Err(failed(format!(
                "the reload hook of {vm} exited with {code}"
            )));
        }
        Ok(Response::Resent)
    }

    fn attic(&self, vm: &VmId) -> Result<Response, Fail> {
        let dir = self.vm_dir(vm)?;
        if running_pid(&dir).is_some() {
            return Err(failed(format!(
                "{vm} is running: stop it before moving it to the attic"
            )));
        }
        if !dir.exists() {
            return Ok(Response::Moved { to: String::new() });
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.remove_taps(&dir)?;
        let name = format!("{}-{stamp}", dir.file_name().unwrap().to_string_lossy());
        let to = self.root.join("attic").join(&vm.deployment).join(name);
        std::fs::create_dir_all(to.parent().unwrap()).map_err(|e| failed(e.to_string()))?;
        std::fs::rename(&dir, &to)
            .map_err(|e| failed(format!("cannot move {} to the attic: {e}", dir.display())))?;
        Ok(Response::Moved {
            to: to.display().to_string(),
        })
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
    fn set_fabric(&self, fabric: &Fabric) -> Result<Response, Fail> {
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
        ip(&["route", "replace", &format!("{addr}/32"), "dev", "cvlpub"])
    }

    /// Removes a VM's taps, and a VAN's bridge and VXLAN link with the last
    /// VM of that VAN on this host.
    fn remove_taps(&self, dir: &Path) -> Result<(), Fail> {
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

    /// Running VMs under this root that are not in `known`.
    fn unknown(&self, known: &[VmId]) -> Vec<VmStatus> {
        let mut out = Vec::new();
        let Ok(deployments) = std::fs::read_dir(self.root.join("vms")) else {
            return out;
        };
        for d in deployments.flatten() {
            let Ok(vms) = std::fs::read_dir(d.path()) else {
                continue;
            };
            for v in vms.flatten() {
                let deployment = d.file_name().to_string_lossy().into_owned();
                let name = v.file_name().to_string_lossy().into_owned();
                let vm = VmId {
                    deployment,
                    path: if name == "_" { String::new() } else { name },
                };
                if !known.contains(&vm) && running_pid(&v.path()).is_some() {
                    out.push(self.status(&vm));
                }
            }
        }
        out
    }

    fn status(&self, vm: &VmId) -> VmStatus {
        let Ok(dir) = self.vm_dir(vm) else {
            return VmStatus {
                vm: vm.clone(),
                pid: None,
                qmp: None,
                agent: false,
            };
        };
        let pid = running_pid(&dir);
        let qmp = pid.and_then(|_| {
            Qmp::connect(&dir.join("qmp.sock"), Duration::from_secs(1))
                .and_then(|mut q| q.status())
                .ok()
        });
        let agent = pid.is_some()
            && Agent::connect(&dir.join("qga.sock"), Duration::from_secs(1))
                .and_then(|mut a| a.ping())
                .is_ok();
        VmStatus {
            vm: vm.clone(),
            pid,
            qmp,
            agent,
        }
    }
}

struct Accel {
    name: String,
    /// Not yet known to work here: try it briefly, fall back to TCG.
    trial: bool,
}

/// The parameters for fw_cfg: a tmpfs file of mode 0600, removed on drop.
struct ParamsFile {
    path: PathBuf,
}

impl ParamsFile {
    /// Removes the parameters files of agents that died before removing
    /// their own (killed outright): QEMU read them when it started.
    fn sweep() {
        let Ok(entries) = std::fs::read_dir("/dev/shm") else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("cvl-params-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if !alive(pid) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn write(params: &str) -> Result<ParamsFile, Fail> {
        let dir = Path::new("/dev/shm");
        if !dir.is_dir() {
            return Err(failed(
                "/dev/shm (tmpfs) is missing: parameters are never written to disk",
            ));
        }
        let path = dir.join(format!(
            "cvl-params-{}-{:x}",
            std::process::id(),
            Sha256::digest(format!("{:?}{params}", Instant::now()).as_bytes())[..6]
                .iter()
                .fold(0u64, |a, b| a << 8 | u64::from(*b))
        ));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
        file.write_all(params.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
        Ok(ParamsFile { path })
    }
}

impl Drop for ParamsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn file_safe(device: &str) -> String {
    device
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn valid_size(size: &str) -> bool {
    let digits = size.trim_end_matches(['K', 'M', 'G', 'T', 'k']);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) && digits != "0"
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

fn ensure_tap(tap: &str, bridge: Option<&str>) -> Result<(), Fail> {
    // Already as wanted (a restart): no process to spawn.
    if link_exists(tap)
        && link_up(tap)
        && link_master(tap).as_deref() == bridge
        && bridge.is_none_or(link_up)
    {
        return Ok(());
    }
    if let Some(bridge) = bridge {
        if !link_exists(bridge) {
            ip(&["link", "add", bridge, "type", "bridge"])?;
        }
        ip(&["link", "set", bridge, "up"])?;
    }
    if !link_exists(tap) {
        ip(&["tuntap", "add", "dev", tap, "mode", "tap"])?;
    }
    if let Some(bridge) = bridge {
        ip(&["link", "set", tap, "master", bridge])?;
    }
    ip(&["link", "set", tap, "up"])
}

fn qemu_img(args: &[&str]) -> Result<(), Fail> {
    let out = Command::new("qemu-img").args(args).output().map_err(|e| {
        failed(format!(
            "cannot run qemu-img (Debian: apt-get install qemu-utils): {e}"
        ))
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(format!(
            "qemu-img {} failed: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The QEMU process of a VM folder, when its pidfile names a live one.
pub fn running_pid(dir: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join("qemu.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_qemu = cmdline.windows(11).any(|w| w == b"qemu-system");
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true);
    (is_qemu && !zombie).then_some(pid)
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
    stat.is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

fn wait_exit(pid: u32, deadline: Instant) -> bool {
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

fn kill_vm(dir: &Path) {
    if let Some(pid) = running_pid(dir) {
        if let Ok(mut q) = Qmp::connect(&dir.join("qmp.sock"), Duration::from_secs(2)) {
            let _ = q.quit();
        }
        if !wait_exit(pid, Instant::now() + Duration::from_secs(5)) {
            // SAFETY: signalling a process id read from our own pidfile.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            wait_exit(pid, Instant::now() + Duration::from_secs(5));
        }
    }
    let _ = std::fs::remove_file(dir.join("qemu.pid"));
}
