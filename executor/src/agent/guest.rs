//! The guest contract (docs/guest-kit.md): parameters at boot through
//! fw_cfg from a tmpfs file, resends through the guest agent, and what
//! runs (process, QMP, guest agent).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::launch::{alive, running_pid};
use super::{failed, Fail, HostAgent};
use crate::protocol::*;
use crate::qmp::{Agent, Qmp};

impl HostAgent {
    pub(super) fn resend(&self, vm: &VmId, params: &str) -> Result<Response, Fail> {
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

    pub(super) fn write(params: &str) -> Result<ParamsFile, Fail> {
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
