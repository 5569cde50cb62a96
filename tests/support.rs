//! Shared by the end-to-end tests: the `cvl` binary, the appliance guest
//! (built from Debian packages by scripts/build-guest.sh), the suite
//! published into local repositories, network namespaces that clean up
//! after themselves (their processes killed, the namespace deleted, even
//! when a test fails), and a guest-agent client to look inside guests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

pub use cvl_executor::qmp::Agent;

/// Tests that boot guests run one at a time: two cores, TCG.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `cvl` binary, built now if needed (this package cannot name
/// another package's binary).
pub fn cvl_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "cvl", "--bin", "cvl"])
        .current_dir(workspace())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build -p cvl failed");
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().unwrap().parent().unwrap();
    let cvl = debug.join("cvl");
    assert!(cvl.is_file(), "no cvl at {}", cvl.display());
    cvl
}

/// The guest's kernel and initramfs (built once, kept in target/).
pub fn guest() -> PathBuf {
    let out = workspace().join("target/cvl-guest");
    let status = Command::new(workspace().join("scripts/build-guest.sh"))
        .arg(&out)
        .status()
        .expect("build-guest.sh runs");
    assert!(status.success(), "scripts/build-guest.sh failed");
    out
}

/// A network namespace of the test's own; dropping it kills every process
/// in it (the QEMUs) and deletes it, with its bridges and taps.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        let ns = Netns {
            name: name.to_string(),
        };
        ns.cleanup();
        run(&["ip", "netns", "add", name]);
        run(&["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"]);
        ns
    }

    fn cleanup(&self) {
        let pids = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: signalling processes of our own namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.cleanup();
    }
}

pub fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A VM description booting the guest directly, with one small program disk.
pub const DESCRIPTION: &str = "memory = 192\nvcpus = 1\n\n[[disk]]\ndevice = \"virtio0\"\n\
    file = \"system.qcow2\"\n\n[boot]\nkernel = \"vmlinuz\"\ninitrd = \"initrd.img\"\n\
    cmdline = \"console=ttyS0 quiet\"\n";

/// Stages `cvl_file` as a publisher keeps it (the guest, a program disk, a
/// VM description under the name its `vm` gives) and returns the staged file.
pub fn stage(dir: &Path, guest: &Path, name: &str, cvl_text: &str, description: &str) -> PathBuf {
    let src = dir.join("src").join(name);
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join(format!("{name}.cvl"));
    std::fs::write(&file, cvl_text).unwrap();
    if let Some(vm) = cvl_text
        .split("vm = \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
    {
        std::fs::write(src.join(vm), description).unwrap();
        for f in ["vmlinuz", "initrd.img"] {
            std::fs::copy(guest.join(f), src.join(f)).unwrap();
        }
        if !src.join("system.qcow2").exists() {
            run(&[
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                src.join("system.qcow2").to_str().unwrap(),
                "8M",
            ]);
        }
    }
    file
}

/// Every file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&p));
            } else if e.file_type().is_ok_and(|t| t.is_file()) {
                out.push(p);
            }
        }
    }
    out
}

/// Whether a process runs (a zombie does not: where PID 1 does not reap
/// orphans, an exited daemon stays one).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}
