//! The QEMU process of a VM folder: whether one runs (its pidfile, held to
//! the VM's uid and to being a QEMU), and waiting for one to end. Kept
//! apart from [`launch`](super::launch) so that what only asks whether a VM
//! runs (disks, backups, the guest contract, the attic) does not depend on
//! what starts one.

use std::path::Path;
use std::time::{Duration, Instant};

use super::jail;

/// The QEMU process of a VM folder, when its pidfile names a live one
/// (that runs as the VM's uid: a jailed QEMU writes its own pidfile, and
/// must not name another process to the agent's signals).
pub fn running_pid(dir: &Path) -> Option<u32> {
    use std::io::Read;
    let mut text = String::new();
    jail::open_vm_file(&dir.join("qemu.pid"))
        .ok()?
        .take(32)
        .read_to_string(&mut text)
        .ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    if let Ok(uid) = std::fs::read_to_string(dir.join(jail::UID_FILE)) {
        if jail::process_uid(pid)? != uid.trim().parse::<u32>().ok()? {
            return None;
        }
    }
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

pub(super) fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"));
    stat.is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

pub(super) fn wait_exit(pid: u32, deadline: Instant) -> bool {
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}
