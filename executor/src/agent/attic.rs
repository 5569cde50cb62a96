//! The attic: a removed VM's folder, disks and all, moved aside (never
//! deleted), its taps and routes removed.

use super::process::running_pid;
use super::{failed, Fail, HostAgent};
use crate::protocol::*;

impl HostAgent {
    pub(super) fn attic(&self, vm: &VmId) -> Result<Response, Fail> {
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
        super::launch::gone(&dir);
        let name = format!("{}-{stamp}", dir.file_name().unwrap().to_string_lossy());
        let to = self.root.join("attic").join(&vm.deployment).join(name);
        std::fs::create_dir_all(to.parent().unwrap()).map_err(|e| failed(e.to_string()))?;
        std::fs::rename(&dir, &to)
            .map_err(|e| failed(format!("cannot move {} to the attic: {e}", dir.display())))?;
        Ok(Response::Moved {
            to: to.display().to_string(),
        })
    }
}
