//! Starting and stopping QEMU: the VM's disks, interfaces and guest
//! contract put together on a command line with no parameter value on it,
//! the accelerator that works here, and the QEMU process itself.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cloud_init::SeedInput;
use super::guest::{Contract, ParamsFile};
use super::jail;
use super::process::{running_pid, wait_exit};
use super::{failed, Fail, HostAgent};
use crate::protocol::*;
use crate::qmp::{Agent, Qmp};

impl HostAgent {
    pub(super) fn start(&self, spec: &StartSpec) -> Result<Response, Fail> {
        let t0 = Instant::now();
        let dir = self.vm_dir(&spec.vm)?;
        if let Some(pid) = running_pid(&dir) {
            if spec.incoming {
                return Err(failed(format!(
                    "{} runs here already: it cannot arrive by migration",
                    spec.vm
                )));
            }
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
                accel: super::guest::accel_of(&dir).unwrap_or_default(),
                fetch_ms: 0,
                prepare_ms: 0,
                launch_ms: 0,
                boot_ms: 0,
                data: String::new(),
            });
        }
        let (program, entry) = self.program_dir(&spec.program)?;
        let fetch_ms = t0.elapsed().as_millis() as u64;
        let t0 = Instant::now();
        let description_path = program.join(&spec.description);
        cvl_repo::paths::check_relative(&spec.description).map_err(failed)?;
        let text = std::fs::read_to_string(&description_path)
            .map_err(|e| failed(format!("cannot read {}: {e}", description_path.display())))?;
        let description = cvl_repo::vm::VmDescription::parse(&text)
            .map_err(|e| failed(format!("{}: {e}", description_path.display())))?;
        // The program must be the one the plan was made from (whose
        // repository the planner verified): a server that shows this host
        // another index than it showed the planner is refused.
        if let (Some(expected), Some(entry)) = (&spec.expect_digest, &entry) {
            let found = cvl_repo::program::version_digest(entry, &spec.description, &description)
                .map_err(failed)?;
            if found != *expected {
                return Err(failed(format!(
                    "the program this host was served for {} is not the one planned (its digest \
                     is {found}, the plan's {expected}): the repository serves different files \
                     to different readers, or changed a published version; nothing was started",
                    spec.vm
                )));
            }
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
        // The VM's own user: its disks, taps and parameters are its.
        let uid = jail::uid_of(&dir).map_err(failed)?;

        super::backup::forget_replaced_data(&dir);
        let mut drives = self.program_overlays(spec, &description, &program, &dir)?;
        drives.extend(self.data_disks(spec, &dir)?);
        let data = self.data_snapshots(spec, &dir)?;
        let netdevs = self.attach_nics(spec, &dir, uid)?;
        jail::prepare_dir(&dir, uid).map_err(failed)?;

        let params = ParamsFile::write(&spec.params, uid)?;
        // How the guest takes them, and knows to say it is ready.
        let contract = Contract::of(&description);
        std::fs::write(dir.join("contract"), contract.to_string())
            .map_err(|e| failed(e.to_string()))?;
        let cloud = matches!(contract, Contract::CloudInit { .. });
        let seed = match contract {
            // Arriving by migration, the guest booted long ago: its seed
            // was read and ejected, and its drive migrates empty.
            Contract::CloudInit { .. } if spec.incoming => None,
            Contract::CloudInit { .. } => {
                let identity = format!(
                    "{}\0{}\0{}\0{}",
                    spec.vm.deployment,
                    spec.vm.path,
                    serde_json::to_string(&spec.program).expect("a program source serializes"),
                    cvl_repo::index::sha256_hex(text.as_bytes()),
                );
                let volume = SeedInput::from_params(&spec.params, &identity)
                    .volume()
                    .map_err(|e| failed(format!("cannot make the NoCloud seed: {e}")))?;
                Some(ParamsFile::seed(&volume, uid)?)
            }
            Contract::Kit => None,
        };
        let accel = self.accel(&dir)?;
        // The kernel: unpacked for PVH where it can be (pvh.rs), once per
        // kernel on this host.
        let kernel = description.boot.as_ref().map(|boot| {
            let bzimage = program.join(&boot.kernel);
            let sha256 = entry.as_ref().and_then(|entry| {
                let file = entry.files.iter().find(|f| f.path == boot.kernel)?;
                Some(file.sha256.as_str())
            });
            super::pvh::kernel(&bzimage, sha256, &self.root.join("kernels")).unwrap_or(bzimage)
        });
        let launch_qemu = |accel: &str| -> Result<(), Fail> {
            let mut args: Vec<String> = vec![
                "-name".into(),
                format!("cvl:{}", spec.vm),
                "-accel".into(),
                // TCG's translation cache bounded (QEMU's default is 1 GiB),
                // so that the jail's memory limit holds.
                if accel == "tcg" {
                    format!("tcg,tb-size={}", jail::TCG_CACHE_MIB)
                } else {
                    accel.into()
                },
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
                // Its own seccomp filter on top of the jail.
                "-sandbox".into(),
                "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny".into(),
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
                // The host's entropy, as clouds give it (virtio_rng).
                "-device".into(),
                "virtio-rng-pci".into(),
                "-fw_cfg".into(),
                format!("name=opt/cvl/params,file={}", params.path.display()),
            ];
            if accel == "tcg" {
                // Every feature TCG emulates, RDRAND among them: a guest's
                // random pool is ready at once instead of seconds into its
                // boot. (Under KVM the host's model stays the default.)
                args.extend(["-cpu".into(), "max".into()]);
            }
            if spec.incoming {
                // Paused, until the migration's stream (`migrate-incoming`);
                // marked, so that nothing asks its guest anything until it
                // arrived.
                std::fs::write(dir.join(super::migrate::AWAITED), b"")
                    .map_err(|e| failed(format!("cannot mark {} as awaited: {e}", spec.vm)))?;
                args.extend(["-incoming".into(), "defer".into()]);
            }
            if let (Some(boot), Some(kernel)) = (&description.boot, &kernel) {
                args.extend(["-kernel".into(), kernel.to_string_lossy().into_owned()]);
                if let Some(initrd) = &boot.initrd {
                    args.extend([
                        "-initrd".into(),
                        program.join(initrd).to_string_lossy().into_owned(),
                    ]);
                }
                let cmdline = kernel_cmdline(boot.cmdline.as_deref(), accel, keeps_aslr_off());
                args.extend(["-append".into(), cmdline]);
            }
            if cloud {
                // cloud-init's NoCloud seed on a CD-ROM (ejected once the
                // guest is ready), and the port it says it is ready on.
                args.extend([
                    "-drive".into(),
                    match &seed {
                        Some(seed) => format!(
                            "if=none,id=cvlseed,media=cdrom,readonly=on,format=raw,file={}",
                            seed.path.display()
                        ),
                        None => "if=none,id=cvlseed,media=cdrom,readonly=on".into(),
                    },
                    "-device".into(),
                    "ide-cd,drive=cvlseed,id=cvlseedcd".into(),
                    "-chardev".into(),
                    "socket,path=ready.sock,server=on,wait=off,id=cvlready".into(),
                    "-device".into(),
                    format!("virtserialport,chardev=cvlready,name={READY_PORT}"),
                ]);
            }
            for drive in &drives {
                // Named after its file (`data-ide0-1`): backups find it so.
                let name = drive.file_name().unwrap().to_string_lossy();
                let id = name.trim_end_matches(".qcow2");
                args.extend([
                    "-drive".into(),
                    format!("file={name},if=virtio,format=qcow2,id={id}"),
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
            let mut read_only = vec![program.clone(), params.path.clone()];
            // A repository's version: the versions its disks back onto.
            if program.parent().and_then(Path::file_name) == Some("versions".as_ref()) {
                read_only[0] = program.parent().unwrap_or(&program).to_path_buf();
            }
            read_only.extend(seed.as_ref().map(|s| s.path.clone()));
            read_only.extend(
                kernel
                    .as_ref()
                    .filter(|k| !k.starts_with(&program))
                    .cloned(),
            );
            let mut devices = Vec::new();
            if !netdevs.is_empty() {
                devices.push("/dev/net/tun".into());
            }
            if accel == "kvm" {
                devices.push("/dev/kvm".into());
            }
            let memory = u64::from(spec.memory_mib.max(description.memory));
            let jail = jail::Spec {
                dir: dir.clone(),
                uid,
                read_only,
                devices,
                memory_mib: memory + jail::overhead_mib(memory, accel),
                vcpus: description.vcpus,
            };
            launch_jailed(&jail, &args, &spec.vm)
        };
        // How long QEMU itself takes to start (until its monitor answers).
        let launching = std::cell::Cell::new(Duration::ZERO);
        let launch = |accel: &str| -> Result<(), Fail> {
            let began = Instant::now();
            let launched = launch_qemu(accel);
            launching.set(launching.get() + began.elapsed());
            launched
        };
        let prepare_ms = t0.elapsed().as_millis() as u64;
        let t1 = Instant::now();
        let ready_deadline = |secs: u64| Instant::now() + Duration::from_secs(secs);
        let mut used = accel.name.clone();
        let ready = if spec.incoming {
            used = incoming_accel(&accel, spec.accel.as_deref()).map_err(|why| {
                failed(format!(
                    "{} cannot arrive here live: {why}; move it offline",
                    spec.vm
                ))
            })?;
            launch(&used)?;
            if let Err(e) = self.await_migration(&dir) {
                kill_vm(&dir);
                return Err(e);
            }
            Ok(())
        } else if accel.trial {
            // KVM that exists may still refuse QEMU, or hang or kill guests:
            // a short trial, then TCG, remembered once a guest boots there.
            let trial = launch(&used).map(|()| {
                wait_ready(
                    &dir,
                    contract,
                    ready_deadline(spec.ready_timeout_secs.min(20)),
                )
            });
            if let Ok(Ok(())) = trial {
                self.remember_accel("kvm");
                Ok(())
            } else {
                kill_vm(&dir);
                used = "tcg".into();
                launch(&used)?;
                let ready = wait_ready(&dir, contract, ready_deadline(spec.ready_timeout_secs));
                if ready.is_ok() {
                    self.remember_accel("tcg");
                }
                ready
            }
        } else {
            launch(&used)?;
            wait_ready(&dir, contract, ready_deadline(spec.ready_timeout_secs))
        };
        drop(params);
        if ready.is_ok() && seed.is_some() {
            // Read: out of the guest's drive, and gone from the host.
            if let Ok(mut q) = Qmp::connect(&dir.join("qmp.sock"), Duration::from_secs(5)) {
                let _ = q.eject("cvlseedcd");
            }
        }
        drop(seed);
        let _ = std::fs::write(dir.join("accel"), &used);
        if let Err(e) = ready {
            // Read before the cgroup goes with the VM.
            let oom = jail::oom_killed(uid).then(|| jail::memory_limit(uid).unwrap_or(0) >> 20);
            kill_vm(&dir);
            let console = dir.join("console.log");
            let why = match e {
                NotReady::Exited if oom.is_some() => format!(
                    "its QEMU was killed for going past its memory limit ({} MiB: the VM's \
                     memory and QEMU's own); give it more memory in its VM description",
                    oom.unwrap_or(0)
                ),
                NotReady::Exited => "it powered off while booting".to_string(),
                NotReady::Silent(e) => format!(
                    "{} within {} s ({e}); it was stopped",
                    match contract {
                        Contract::Kit => "its guest agent did not answer",
                        Contract::CloudInit { .. } => "cloud-init did not say it was ready",
                    },
                    spec.ready_timeout_secs
                ),
                NotReady::Said(what) => format!("the guest said: {what}; it was stopped"),
            };
            return Err((
                HostErrorKind::Timeout,
                format!(
                    "{} did not become ready: {why}. The end of its console ({}):\n{}",
                    spec.vm,
                    console.display(),
                    console_tail(&console)
                ),
            ));
        }
        let pid = running_pid(&dir)
            .ok_or_else(|| failed(format!("{} exited right after starting", spec.vm)))?;
        Ok(Response::Started {
            pid,
            already: false,
            accel: used,
            fetch_ms,
            prepare_ms,
            launch_ms: launching.get().as_millis() as u64,
            boot_ms: (t1.elapsed() - launching.get()).as_millis() as u64,
            data,
        })
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

    pub(super) fn stop(&self, vm: &VmId, timeout_secs: u64) -> Result<Response, Fail> {
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
        gone(&dir);
        Ok(Response::Stopped { how: how.into() })
    }
}

/// Why a guest did not become ready.
enum NotReady {
    /// QEMU exited (the guest powered off: the kit does when its start
    /// hook fails).
    Exited,
    /// The guest did not say it was ready in time.
    Silent(std::io::Error),
    /// The guest said why it is not (cloud-init's per-boot script).
    Said(String),
}

/// The virtio-serial port a cloud-init guest says "ready" on.
pub(super) const READY_PORT: &str = "org.cvl.ready.0";

/// The accelerator a guest arriving live runs on here: the one it ran on
/// at its old host (its machine and CPU model follow from it). TCG runs
/// anywhere; KVM only where it is known to work (a host still to try it
/// cannot say, and a host that found TCG cannot).
fn incoming_accel(here: &Accel, there: Option<&str>) -> Result<String, String> {
    match there {
        Some("tcg") => Ok("tcg".into()),
        Some("kvm") if here.name == "kvm" && !here.trial => Ok("kvm".into()),
        Some("kvm") if here.trial => Err(
            "it runs on KVM, and this host has not yet found whether KVM works here (no VM has \
             run here)"
                .into(),
        ),
        Some("kvm") => Err(format!("it runs on KVM, and this host runs {}", here.name)),
        Some(other) => Err(format!(
            "it runs on an accelerator unknown here ({other:?})"
        )),
        // An executor that does not say: as before, this host's own.
        None if here.trial => {
            Err("this host has not yet found which accelerator works (no VM has run here)".into())
        }
        None => Ok(here.name.clone()),
    }
}

/// The guest kernel's command line: the description's (or the kit's
/// default), and under TCG what emulation needs.
fn kernel_cmdline(described: Option<&str>, accel: &str, aslr_off: bool) -> String {
    let mut cmdline = described.unwrap_or("console=ttyS0 quiet").to_string();
    let has = |cmdline: &str, word: &str| cmdline.split_whitespace().any(|w| w == word);
    // Emulated, a guest's timer ticks late when the host is busy, and
    // Linux's boot-time check of the IO-APIC timer then panics ("IO-APIC +
    // timer doesn't work!", seen with six guests booting on two cores):
    // skipped, as cloud images and hypervisors' guests do.
    if accel == "tcg" && !has(&cmdline, "no_timer_check") {
        cmdline.push_str(" no_timer_check");
    }
    // Debian's kernels test each crypto algorithm as it registers: a
    // check of the implementation (not of any key or signature), 0.45 s
    // of an emulated boot's 2.1 s to its first process (five boots each
    // way, measured). Emulated, the implementation is QEMU's translation
    // of the same code a KVM guest runs, which keeps its tests.
    if accel == "tcg" && !has(&cmdline, "cryptomgr.notests") {
        cmdline.push_str(" cryptomgr.notests");
    }
    // TCG keeps what it translated by the code's virtual address: with
    // address space layout randomisation every process maps libc (and
    // everything else) somewhere new and is translated anew. Without it a
    // guest's second `openssl` starts in a quarter of the time (0.12 s ->
    // 0.03 s, measured in Mail), and boots that run many small programs
    // take seconds less. A guest is then weaker against exploits, so only
    // under TCG (tests, machines without KVM); a host keeps it with
    // CVL_TCG_ASLR=keep.
    if accel == "tcg" && aslr_off && !has(&cmdline, "norandmaps") {
        cmdline.push_str(" norandmaps");
    }
    cmdline
}

/// Whether TCG guests boot without address space layout randomisation (the
/// default; `CVL_TCG_ASLR=keep` in the host agent's environment keeps it).
fn keeps_aslr_off() -> bool {
    std::env::var("CVL_TCG_ASLR").map_or(true, |v| v != "keep")
}

/// Waits until the guest is ready as its contract says, giving up early
/// when QEMU exits (a guest that failed to start powers off: no need to
/// wait out the timeout).
fn wait_ready(dir: &Path, contract: Contract, deadline: Instant) -> Result<(), NotReady> {
    match contract {
        Contract::Kit => wait_agent(dir, deadline),
        Contract::CloudInit { .. } => wait_said(dir, deadline),
    }
}

/// The guest kit's ready: its guest agent answers.
fn wait_agent(dir: &Path, deadline: Instant) -> Result<(), NotReady> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match Agent::connect(
            &dir.join("qga.sock"),
            left.min(Duration::from_secs(2))
                .max(Duration::from_millis(50)),
        ) {
            Ok(_) => return Ok(()),
            Err(_) if running_pid(dir).is_none() => return Err(NotReady::Exited),
            Err(e) if Instant::now() >= deadline => return Err(NotReady::Silent(e)),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// cloud-init's ready: its per-boot script writes `ready` (or `failed:
/// why`) on the ready port, at the end of its final stage.
fn wait_said(dir: &Path, deadline: Instant) -> Result<(), NotReady> {
    use std::io::BufRead;
    let socket = dir.join("ready.sock");
    loop {
        if running_pid(dir).is_none() {
            return Err(NotReady::Exited);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NotReady::Silent(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no word on the ready port",
            )));
        }
        let Ok(stream) = std::os::unix::net::UnixStream::connect(&socket) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        // Read in short slices, to notice QEMU exiting.
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut reader = std::io::BufReader::new(stream);
        let mut line = String::new();
        loop {
            if Instant::now() >= deadline {
                break;
            }
            match reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) if line.ends_with('\n') => {
                    let said = line.trim().to_string();
                    if said == "ready" {
                        return Ok(());
                    }
                    if let Some(why) = said.strip_prefix("failed:") {
                        return Err(NotReady::Said(why.trim().to_string()));
                    }
                    line.clear();
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if running_pid(dir).is_none() {
                        return Err(NotReady::Exited);
                    }
                }
                Err(_) => break,
            }
        }
    }
}

/// The last lines of a console log, printable characters only, indented.
pub(super) fn console_tail(path: &Path) -> String {
    let tail = console_lines(path, 12);
    if tail.is_empty() {
        "    (empty)".to_string()
    } else {
        tail.iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// At most `max` last non-blank lines of the console log's last 16 KiB,
/// printable characters only (a guest writes what it likes there).
pub(super) fn console_lines(path: &Path, max: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    const WINDOW: u64 = 16 * 1024;
    let mut text = Vec::new();
    if let Ok(mut file) = jail::open_vm_file(path) {
        let len = file.metadata().map_or(0, |m| m.len());
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)));
        let _ = file.take(WINDOW).read_to_end(&mut text);
    }
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            l.chars()
                .filter(|c| !c.is_control() || *c == '\t')
                .collect::<String>()
        })
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(max)..].to_vec()
}

struct Accel {
    name: String,
    /// Not yet known to work here: try it briefly, fall back to TCG.
    trial: bool,
}

pub(super) fn kill_vm(dir: &Path) {
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
    gone(dir);
}

/// What a VM's QEMU leaves once it is gone: its pidfile and cgroup.
pub(super) fn gone(dir: &Path) {
    let _ = std::fs::remove_file(dir.join("qemu.pid"));
    if let Some(uid) = std::fs::read_to_string(dir.join(jail::UID_FILE))
        .ok()
        .and_then(|t| t.trim().parse().ok())
    {
        jail::remove_cgroup(uid);
    }
}

/// Starts QEMU with `args` in the jail `spec` (the jailer, `cvl host jail`,
/// is this executable), its output in the VM's `qemu.log`, and waits until
/// its monitor answers: QEMU is up. The jailer's process becomes QEMU's,
/// so a thread of the agent reaps it when it ends, and it outlives the
/// agent in a session of its own.
fn launch_jailed(spec: &jail::Spec, args: &[String], vm: &VmId) -> Result<(), Fail> {
    let dir = &spec.dir;
    let log_path = dir.join(jail::LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&log_path)
        .map_err(|e| failed(format!("cannot write {}: {e}", log_path.display())))?;
    let spec_json = serde_json::to_string(spec).expect("a jail spec serializes");
    // This very executable, as the kernel holds it: the file may have been
    // replaced since the agent started (a package upgrade).
    let mut child = Command::new("/proc/self/exe")
        .args([
            "host",
            "jail",
            "--spec",
            &spec_json,
            "--",
            "qemu-system-x86_64",
        ])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| failed(e.to_string()))?)
        .stderr(log)
        .spawn()
        .map_err(|e| failed(format!("cannot start the jailer for {vm}: {e}")))?;
    let exited: std::sync::Arc<std::sync::Mutex<Option<std::process::ExitStatus>>> =
        Default::default();
    let reaped = exited.clone();
    std::thread::spawn(move || {
        if let Ok(status) = child.wait() {
            *reaped.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let failed_to_launch = |message: String| {
        jail::remove_cgroup(spec.uid);
        failed(message)
    };
    loop {
        if let Some(status) = *exited.lock().unwrap_or_else(|e| e.into_inner()) {
            let said = console_lines(&log_path, 8).join("\n");
            let said = if said.contains("qemu-system-x86_64") && said.contains("No such file") {
                "qemu-system-x86_64 is not installed on this host (Debian: apt-get install \
                 qemu-system-x86)"
                    .to_string()
            } else {
                said
            };
            return Err(failed_to_launch(format!(
                "qemu-system-x86_64 failed for {vm} ({status}): {said}"
            )));
        }
        if Qmp::connect(&dir.join("qmp.sock"), Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(failed_to_launch(format!(
                "QEMU for {vm} did not open its monitor within 60 s: {}",
                console_lines(&log_path, 8).join("\n")
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::kernel_cmdline;

    #[test]
    fn a_guest_arrives_on_the_accelerator_it_left() {
        let accel = |name: &str, trial: bool| super::Accel {
            name: name.into(),
            trial,
        };
        let arrive = super::incoming_accel;
        // TCG anywhere, a host still to try KVM included.
        assert_eq!(arrive(&accel("kvm", true), Some("tcg")).unwrap(), "tcg");
        assert_eq!(arrive(&accel("kvm", false), Some("tcg")).unwrap(), "tcg");
        // KVM only where it is known to work.
        assert_eq!(arrive(&accel("kvm", false), Some("kvm")).unwrap(), "kvm");
        assert!(arrive(&accel("kvm", true), Some("kvm"))
            .unwrap_err()
            .contains("not yet found whether KVM works"));
        assert!(arrive(&accel("tcg", false), Some("kvm"))
            .unwrap_err()
            .contains("this host runs tcg"));
        // Unsaid: this host's own, when it knows it.
        assert_eq!(arrive(&accel("tcg", false), None).unwrap(), "tcg");
        assert!(arrive(&accel("kvm", true), None).is_err());
    }

    #[test]
    fn tcg_guests_boot_without_the_timer_check_self_tests_and_randomised_maps() {
        assert_eq!(
            kernel_cmdline(None, "tcg", true),
            "console=ttyS0 quiet no_timer_check cryptomgr.notests norandmaps"
        );
        // Kept where the host asks, and never added twice.
        assert_eq!(
            kernel_cmdline(None, "tcg", false),
            "console=ttyS0 quiet no_timer_check cryptomgr.notests"
        );
        assert_eq!(
            kernel_cmdline(
                Some("console=ttyS0 norandmaps cryptomgr.notests no_timer_check"),
                "tcg",
                true
            ),
            "console=ttyS0 norandmaps cryptomgr.notests no_timer_check"
        );
        // KVM guests boot as described.
        assert_eq!(
            kernel_cmdline(Some("console=ttyS0 root=/dev/vda"), "kvm", true),
            "console=ttyS0 root=/dev/vda"
        );
    }
}
