//! What a test does to the sandbox's deployment through `cvl` (apply,
//! stop, history), and what it keeps of it (each boot's console).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{ready_after, Found, Progress, Test, COMPONENT};
use crate::params::Assignment;
use crate::sandbox::Ran;

impl Test<'_> {
    pub(super) fn apply(&self) -> Result<Ran> {
        self.sandbox.cvl(&[
            "apply",
            "Test.cvl",
            "--auto-approve",
            "--color",
            "never",
            "--ready-timeout",
            &self.spec.ready_timeout.to_string(),
            "--stop-timeout",
            &self.spec.stop_timeout.to_string(),
        ])
    }

    /// Boots the appliance, or the version the deployment now names
    /// (`step`: `ready`, `update`, `second boot`, ...): whether it became
    /// ready.
    pub(super) fn boot(&mut self, step: &str, phase: &str) -> Result<bool> {
        let started = Instant::now();
        (self.progress)(Progress::Begins(step));
        let ran = self.apply()?;
        let found = if ran.ok() {
            let detail = self.last_history()?.1;
            Ok(match ready_after(&detail) {
                Some(s) => format!(
                    "ready after {s:.1} s (budget {} s)",
                    self.spec.ready_timeout
                ),
                None => detail,
            })
        } else {
            self.keep_console(&step.replace(' ', "-"));
            Err((
                format!(
                    "not ready within {} s, or did not boot",
                    self.spec.ready_timeout
                ),
                ran.said(),
            ))
        };
        Ok(self.finish(step, phase, started, found))
    }

    /// After the resend's apply: a resend (not a restart) was done, the
    /// guest still runs the same boot, and it ran its reload hook once.
    pub(super) fn resent(&self, before: &(String, u64), change: &Assignment) -> Result<Found> {
        let (action, detail) = self.last_history()?;
        let after = self.guest_state()?;
        Ok(if action != "resend" {
            Err((
                format!(
                    "changing `{}` made cvl {action}, not resend, the appliance",
                    change.name
                ),
                detail,
            ))
        } else if after.0 != before.0 {
            Err((
                "the guest restarted: its boot id changed across the resend".to_string(),
                "a reload hook must reconfigure the appliance's daemons, not reboot the VM"
                    .to_string(),
            ))
        } else if after.1 != before.1 + 1 {
            Err((
                format!(
                    "the reload hook ran {} time(s), not once",
                    after.1.saturating_sub(before.1)
                ),
                detail,
            ))
        } else {
            Ok(format!(
                "`{}` changed: the reload hook ran, the guest kept running",
                change.name
            ))
        })
    }

    pub(super) fn stop(&self) -> Result<Found> {
        let ran = self.sandbox.cvl(&[
            "stop",
            "Test.cvl",
            "--auto-approve",
            "--stop-timeout",
            &self.spec.stop_timeout.to_string(),
        ])?;
        if !ran.ok() {
            return Ok(Err(("`cvl stop` failed".to_string(), ran.said())));
        }
        let (_, detail) = self.last_history()?;
        Ok(
            if detail.contains("stopped (agent)") || detail.contains("stopped (acpi)") {
                Ok(format!(
                    "powered off within {} s ({detail})",
                    self.spec.stop_timeout
                ))
            } else {
                Err((
                    format!(
                        "did not power off within {} s: QEMU was told to quit",
                        self.spec.stop_timeout
                    ),
                    detail,
                ))
            },
        )
    }

    /// The newest history entry of the deployment: its action and detail.
    pub(super) fn last_history(&self) -> Result<(String, String)> {
        self.last_entry().map(|e| {
            (
                e["action"].as_str().unwrap_or_default().to_string(),
                e["detail"].as_str().unwrap_or_default().to_string(),
            )
        })
    }

    /// The newest history entry of the deployment (`cvl history`'s JSON).
    pub(super) fn last_entry(&self) -> Result<Value> {
        let ran = self.sandbox.cvl(&[
            "history",
            &self.deployment,
            "--limit",
            "1",
            "--format",
            "json",
        ])?;
        let mut v: Value =
            serde_json::from_str(&ran.stdout).context("`cvl history` gave no JSON")?;
        Ok(v["entries"][0].take())
    }

    /// Keeps the console of boot `n`.
    pub(super) fn keep_console(&mut self, label: &str) {
        let from = self
            .sandbox
            .vm_dir(&self.deployment, COMPONENT)
            .join("console.log");
        let to = self
            .spec
            .consoles
            .join(format!("{}-{label}.console.log", self.name));
        if copy_tail(&from, &to, CONSOLE_LIMIT).is_ok() && !self.consoles.contains(&to) {
            self.consoles.push(to);
        }
    }
}

/// How much of each console is kept (its end).
const CONSOLE_LIMIT: u64 = 1 << 20;

/// Copies the end of `from` (at most `limit` bytes), a file a jailed QEMU
/// wrote: opened without following a link, and only a regular file.
pub(super) fn copy_tail(from: &Path, to: &Path, limit: u64) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(from)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        bail!("{} is not a regular file", from.display());
    }
    file.seek(SeekFrom::Start(meta.len().saturating_sub(limit)))?;
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes)?;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(to, bytes)?;
    Ok(())
}
