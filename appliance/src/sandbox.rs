//! The sandbox an appliance test runs in: a network namespace of its own
//! (the VAN's bridge, the VM's tap and its public route are made inside
//! it, so nothing touches the host's network), a home of its own (state,
//! host root, caches: the utility's state is never opened) and `cvl` run
//! inside both, as a subscriber runs it. Dropped, it kills what still runs
//! in its namespace and removes the namespace and the folder; a sandbox
//! left by a test that was killed is removed by the next one.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Names of sandboxes' namespaces and folders: `cvl-test-PID-N`.
const PREFIX: &str = "cvl-test-";

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct Sandbox {
    name: String,
    dir: PathBuf,
    cvl: PathBuf,
    /// `CVL_SECRET_*` for the deployment: memory and the child's
    /// environment only.
    secrets: BTreeMap<String, String>,
}

/// What one `cvl` run in the sandbox said.
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.code == 0
    }

    /// Its last lines of standard error (what went wrong, as cvl said it).
    pub fn said(&self) -> String {
        let lines: Vec<&str> = self.stderr.trim_end().lines().collect();
        lines[lines.len().saturating_sub(12)..].join("\n")
    }
}

impl Sandbox {
    /// Makes a sandbox for `cvl` (the executable to run in it).
    pub fn new(cvl: &Path) -> Result<Sandbox> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!(
                "cvl test needs root: it makes a network namespace, a bridge and taps, \
                 and runs QEMU in a jail (run it with sudo)"
            );
        }
        sweep();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir(&dir)
            .with_context(|| format!("cannot make the sandbox's folder {}", dir.display()))?;
        let mut sandbox = Sandbox {
            name,
            dir,
            cvl: cvl.to_path_buf(),
            secrets: BTreeMap::new(),
        };
        ip(&["netns", "add", &sandbox.name])?;
        ip(&["-n", &sandbox.name, "link", "set", "lo", "up"])?;
        sandbox.dir = std::fs::canonicalize(&sandbox.dir)?;
        Ok(sandbox)
    }

    /// The sandbox's folder (its home is `home/` in it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The network namespace everything runs in.
    pub fn namespace(&self) -> &str {
        &self.name
    }

    /// The folder of a VM of the sandbox's host: `DEPLOYMENT/PATH`.
    pub fn vm_dir(&self, deployment: &str, path: &str) -> PathBuf {
        self.dir.join("home/host/vms").join(deployment).join(path)
    }

    /// A sensitive value every later `cvl` gets in its environment.
    pub fn secret(&mut self, env: String, value: String) {
        self.secrets.insert(env, value);
    }

    /// `cvl ARGS` in the namespace, the folder and the home of the sandbox.
    pub fn cvl<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Ran> {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name])
            .arg(&self.cvl)
            .args(args)
            .current_dir(&self.dir);
        // Nothing of the user's utility: its state, its host root, its
        // agent, its secrets.
        for (name, _) in std::env::vars_os() {
            let n = name.to_string_lossy();
            if n.starts_with("CVL_SECRET_")
                || matches!(
                    n.as_ref(),
                    "CVL_STATE" | "CVL_HOST_ROOT" | "CVL_AGENT_SOCK" | "PGPASSWORD"
                )
            {
                command.env_remove(&name);
            }
        }
        let home = self.dir.join("home");
        command
            .env("CVL_HOME", &home)
            .env("CVL_STATE", home.join("state.db"))
            .env("CVL_AGENT_SOCK", home.join("no-agent"))
            .envs(&self.secrets)
            .stdin(Stdio::null());
        let started = Instant::now();
        let out = command
            .output()
            .with_context(|| format!("cannot run {} in the sandbox", self.cvl.display()))?;
        Ok(Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: started.elapsed(),
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        remove(&self.name, Some(&self.dir));
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (iproute2): install it")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Kills every process in the namespace `name` (QEMU, host agents), waits
/// for them, and removes the namespace and the folder.
fn remove(name: &str, dir: Option<&Path>) {
    let pids = Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let pids: Vec<i32> = pids
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    for &pid in &pids {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Removes the sandboxes of `cvl test` runs that are gone (killed before
/// they could clean up).
fn sweep() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut names: Vec<String> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .map(str::to_string)
        .collect();
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let n = entry.file_name().to_string_lossy().into_owned();
            if n.starts_with(PREFIX) && !names.contains(&n) {
                names.push(n);
            }
        }
    }
    for name in names {
        let pid = name[PREFIX.len()..]
            .split('-')
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = std::env::temp_dir().join(&name);
        remove(&name, Some(&dir));
    }
}
