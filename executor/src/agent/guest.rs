//! The guest contract (docs/guest-kit.md): parameters at boot through
//! fw_cfg from a tmpfs file, resends through the guest agent, what runs
//! (process, QMP, guest agent), and commands run inside (`cvl exec`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::process::{alive, running_pid};
use super::{failed, Fail, HostAgent};
use crate::protocol::*;
use crate::qmp::{cmd, Agent, Qmp};

/// How a guest takes its parameters and says it is ready: the VM
/// description's `guest` (and `agent`). Both read the parameters from
/// fw_cfg; the kit's ready is its guest agent answering, cloud-init's a word
/// on the ready port (the seed's per-boot script).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Contract {
    Kit,
    CloudInit { agent: bool },
}

impl Contract {
    pub(super) fn of(description: &cvl_repo::vm::VmDescription) -> Contract {
        match description.guest {
            cvl_repo::vm::GuestContract::Kit => Contract::Kit,
            cvl_repo::vm::GuestContract::CloudInit => Contract::CloudInit {
                agent: description.agent,
            },
        }
    }

    /// The contract a VM was started with (its folder's `contract`).
    pub(super) fn of_vm(dir: &Path) -> Contract {
        match std::fs::read_to_string(dir.join("contract")).as_deref() {
            Ok("cloud-init") => Contract::CloudInit { agent: true },
            Ok("cloud-init without agent") => Contract::CloudInit { agent: false },
            _ => Contract::Kit,
        }
    }

    pub(super) fn expects_agent(self) -> bool {
        !matches!(self, Contract::CloudInit { agent: false })
    }

    /// What a resend runs once the new parameters are in place: the kit's
    /// reload hook, or a cloud image's own when it has one.
    fn reload(self) -> &'static str {
        match self {
            Contract::Kit => "exec /sbin/cvl-reload",
            Contract::CloudInit { .. } => {
                "if [ -x /etc/cvl/reload ]; then exec /etc/cvl/reload; fi; exit 0"
            }
        }
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Contract::Kit => "kit",
            Contract::CloudInit { agent: true } => "cloud-init",
            Contract::CloudInit { agent: false } => "cloud-init without agent",
        })
    }
}

/// The longest a resend's reload hook may run before the resend fails. A
/// hook that restarts its daemons and has a certificate issued anew takes
/// about 30 s under TCG on a loaded host (LDAP's, resent with the suite's
/// other members on two cores, measured 30.5 s and 32.7 s in CI), so 30 s
/// was too tight; a hook that hangs still fails, with this in its error.
const RELOAD_TIME: Duration = Duration::from_secs(120);

/// The most of a command's output one poll returns, per stream.
const EXEC_PIECE: u64 = 1 << 20;

impl HostAgent {
    /// The guest agent of a running VM, or why there is none.
    fn guest_agent(&self, vm: &VmId) -> Result<Agent, Fail> {
        let dir = self.vm_dir(vm)?;
        if running_pid(&dir).is_none() {
            return Err(failed(format!(
                "{vm} is not running: start it with `cvl apply`"
            )));
        }
        Agent::connect(&dir.join("qga.sock"), Duration::from_secs(10)).map_err(|e| {
            failed(format!(
                "the guest agent of {vm} does not answer ({e}): the guest runs no \
                 qemu-guest-agent, or has not finished booting (see its console.log)"
            ))
        })
    }

    /// Starts `argv` in the guest, its output going to files of its own
    /// under /run/cvl/exec (tmpfs, mode 0700), read back by `exec_poll`.
    /// The command runs through `sh -c 'exec "$@"'`: its arguments are
    /// passed as they are, never parsed by a shell.
    pub(super) fn exec_start(
        &self,
        vm: &VmId,
        argv: &[String],
        input: Option<&str>,
    ) -> Result<Response, Fail> {
        use base64::Engine;
        if argv.is_empty() || argv[0].is_empty() {
            return Err((HostErrorKind::BadRequest, "no command to run".into()));
        }
        let input = input
            .map(|i| base64::engine::general_purpose::STANDARD.decode(i))
            .transpose()
            .map_err(|e| {
                (
                    HostErrorKind::BadRequest,
                    format!("input is not base64: {e}"),
                )
            })?;
        let tag = format!(
            "{:x}",
            Sha256::digest(format!("{vm}{:?}{}", Instant::now(), std::process::id()).as_bytes())
                [..8]
                .iter()
                .fold(0u64, |a, b| a << 8 | u64::from(*b))
        );
        let script = format!(
            "umask 077; mkdir -p /run/cvl/exec && exec \"$@\" >/run/cvl/exec/{tag}.out 2>/run/cvl/exec/{tag}.err"
        );
        let mut full = vec!["/bin/sh".to_string(), "-c".into(), script, "sh".into()];
        full.extend(argv.iter().cloned());
        let pid = self
            .guest_agent(vm)?
            .spawn(&full, input.as_deref())
            .map_err(|e| failed(format!("cannot run {} in {vm}: {e}", argv[0])))?;
        Ok(Response::ExecStarted {
            exec: ExecHandle { pid, tag },
        })
    }

    /// What the command wrote past the offsets; its exit code once it has
    /// exited and nothing more is left to read (then its files go).
    pub(super) fn exec_poll(
        &self,
        vm: &VmId,
        exec: &ExecHandle,
        stdout_offset: u64,
        stderr_offset: u64,
    ) -> Result<Response, Fail> {
        use base64::Engine;
        if !exec.tag.chars().all(|c| c.is_ascii_hexdigit()) || exec.tag.is_empty() {
            return Err((HostErrorKind::BadRequest, "not a command's tag".into()));
        }
        let mut agent = self.guest_agent(vm)?;
        let io = |e: std::io::Error| failed(format!("reading the command's output in {vm}: {e}"));
        // Whether it has exited first: what it wrote before is all there.
        let exit = agent.exited(exec.pid).map_err(io)?;
        let out_path = format!("/run/cvl/exec/{}.out", exec.tag);
        let err_path = format!("/run/cvl/exec/{}.err", exec.tag);
        // A file not there yet: the command's shell has not opened it.
        let mut read = |path: &str, offset: u64| match agent.read_at(path, offset, EXEC_PIECE) {
            Err(e) if e.to_string().contains("No such file") => Ok(Vec::new()),
            other => other.map_err(io),
        };
        let stdout = read(&out_path, stdout_offset)?;
        let stderr = read(&err_path, stderr_offset)?;
        let drained = stdout.len() < EXEC_PIECE as usize && stderr.len() < EXEC_PIECE as usize;
        let exit = exit.filter(|_| drained);
        if exit.is_some() {
            let _ = agent.exec(
                &["/bin/rm", "-f", &out_path, &err_path],
                Duration::from_secs(10),
            );
        }
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        Ok(Response::ExecOutput {
            stdout: b64(&stdout),
            stderr: b64(&stderr),
            exit,
        })
    }

    pub(super) fn resend(&self, vm: &VmId, params: &str) -> Result<Response, Fail> {
        let dir = self.vm_dir(vm)?;
        if running_pid(&dir).is_none() {
            return Err(failed(format!("{vm} is not running: nothing to resend to")));
        }
        let contract = Contract::of_vm(&dir);
        if !contract.expects_agent() {
            return Err(failed(format!(
                "{vm} runs no guest agent: its parameters change by a restart (plan again)"
            )));
        }
        let mut agent = Agent::connect(&dir.join("qga.sock"), Duration::from_secs(10))
            .map_err(|e| failed(format!("the guest agent of {vm} does not answer: {e}")))?;
        let io = |e: std::io::Error| failed(format!("resend to {vm}: {e}"));
        let t = RELOAD_TIME;
        // The file is made 0600 before the values go in.
        agent
            .exec(
                &[
                    "/bin/sh",
                    "-c",
                    "mkdir -p /run/cvl; umask 077; : > /run/cvl/params.new",
                ],
                t,
            )
            .map_err(io)?;
        agent
            .write_file("/run/cvl/params.new", params.as_bytes())
            .map_err(io)?;
        let then = format!(
            "mv /run/cvl/params.new /run/cvl/params && {}",
            contract.reload()
        );
        let (code, _) = agent.exec(&["/bin/sh", "-c", &then], t).map_err(io)?;
        if code != 0 {
            return Err(failed(format!(
                "the reload hook of {vm} exited with {code}"
            )));
        }
        Ok(Response::Resent)
    }

    /// Running VMs under this root that are not in `known`.
    pub(super) fn unknown(&self, known: &[VmId]) -> Vec<VmStatus> {
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

    pub(super) fn status(&self, vm: &VmId) -> VmStatus {
        let Ok(dir) = self.vm_dir(vm) else {
            return VmStatus {
                vm: vm.clone(),
                pid: None,
                qmp: None,
                agent: false,
                expects_agent: true,
                snapshots: Default::default(),
                accel: None,
            };
        };
        let pid = running_pid(&dir);
        // A VM in a migration is left alone: its monitor is the
        // migration's, and what a ping writes to its guest agent's port
        // reaches a device whose state is on its way to another host.
        if pid.is_some() && super::migrate::migrating(&dir) {
            return VmStatus {
                vm: vm.clone(),
                pid,
                qmp: Some(MIGRATING.into()),
                agent: false,
                expects_agent: Contract::of_vm(&dir).expects_agent(),
                snapshots: Default::default(),
                accel: accel_of(&dir),
            };
        }
        let qmp = pid.and_then(|_| {
            Qmp::connect(&dir.join("qmp.sock"), Duration::from_secs(1))
                .and_then(|mut q| q.status())
                .ok()
        });
        let agent = pid.is_some()
            && Agent::connect(&dir.join("qga.sock"), Duration::from_secs(1))
                .and_then(|mut a| a.ping())
                .is_ok();
        if agent {
            self.thaw_left_frozen(vm, &dir);
        }
        VmStatus {
            vm: vm.clone(),
            pid,
            qmp,
            agent,
            expects_agent: Contract::of_vm(&dir).expects_agent(),
            snapshots: Default::default(),
            accel: pid.and(accel_of(&dir)),
        }
    }
}

impl HostAgent {
    /// Where a backup marks that it is freezing the VM's guest: from just
    /// before the freeze until the thaw has answered.
    pub(super) fn freeze_mark(&self, vm: &VmId) -> Option<PathBuf> {
        self.lock_path(vm, "freezing").ok()
    }

    /// A backup killed between freezing the guest's file systems and
    /// thawing them left its mark, and nothing holds the VM now: thawed.
    fn thaw_left_frozen(&self, vm: &VmId, dir: &Path) {
        let Some(mark) = self.freeze_mark(vm).filter(|m| m.exists()) else {
            return;
        };
        let Some(_held) = self.try_lock(vm) else {
            return; // a backup runs: its own thaw follows
        };
        let thawed = Agent::connect(&dir.join("qga.sock"), Duration::from_secs(3))
            .and_then(|mut a| a.execute(&cmd::GuestFsfreezeThaw {}));
        if thawed.is_ok() {
            let _ = std::fs::remove_file(mark);
        }
    }
}

/// The parameters for fw_cfg: a tmpfs file of mode 0600, removed on drop.
pub(super) struct ParamsFile {
    pub(super) path: PathBuf,
}

impl ParamsFile {
    /// Removes the parameters files of agents that died before removing
    /// their own (killed outright): QEMU read them when it started.
    pub(super) fn sweep() {
        let Ok(entries) = std::fs::read_dir("/dev/shm") else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = ["cvl-params-", "cvl-seed-"]
                .iter()
                .find_map(|prefix| name.strip_prefix(prefix))
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

    /// The parameters, readable by the VM's `uid` alone.
    pub(super) fn write(params: &str, uid: u32) -> Result<ParamsFile, Fail> {
        ParamsFile::write_as("params", params.as_bytes(), uid)
    }

    /// A cloud-init guest's seed volume, on tmpfs too (it holds nothing
    /// sensitive, but nothing of a VM's start is written to disk).
    pub(super) fn seed(bytes: &[u8], uid: u32) -> Result<ParamsFile, Fail> {
        ParamsFile::write_as("seed", bytes, uid)
    }

    fn write_as(kind: &str, bytes: &[u8], uid: u32) -> Result<ParamsFile, Fail> {
        let dir = Path::new("/dev/shm");
        if !dir.is_dir() {
            return Err(failed(
                "/dev/shm (tmpfs) is missing: parameters are never written to disk",
            ));
        }
        let mut salt = Sha256::new();
        salt.update(format!("{:?}", Instant::now()).as_bytes());
        salt.update(bytes);
        let path = dir.join(format!(
            "cvl-{kind}-{}-{:x}",
            std::process::id(),
            salt.finalize()[..6]
                .iter()
                .fold(0u64, |a, b| a << 8 | u64::from(*b))
        ));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
        file.write_all(bytes).map_err(|e| failed(e.to_string()))?;
        std::os::unix::fs::fchown(&file, Some(uid), Some(uid))
            .map_err(|e| failed(format!("cannot give {} to its VM: {e}", path.display())))?;
        Ok(ParamsFile { path })
    }
}

impl Drop for ParamsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The accelerator the VM in `dir` was started on (its `accel` file).
pub(super) fn accel_of(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("accel"))
        .ok()
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
}
