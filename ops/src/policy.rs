//! What `cvl policy set` changes in a deployment's policy: what the
//! service may do by itself (updates, their window, restarts, unsigned
//! repositories) and the backups it takes, each option checked.

use anyhow::{bail, Result};
use cvl_planner::model::{BackupPolicy, Policy, Window};

/// What `cvl policy set` changes in a deployment's policy (`None`: left).
pub struct PolicyChange {
    pub auto: Option<bool>,
    pub window: Option<String>,
    pub restart: Option<bool>,
    pub allow_unsigned: Option<bool>,
    pub backup_every: Option<String>,
    pub backup_to: Option<String>,
    pub keep_last: Option<String>,
    pub keep_daily: Option<String>,
}

impl PolicyChange {
    /// `was` with the change made; an error for a change that says nothing
    /// or does not parse.
    pub fn apply(self, was: &Policy) -> Result<Policy> {
        let backups = self.backup_every.is_some()
            || self.backup_to.is_some()
            || self.keep_last.is_some()
            || self.keep_daily.is_some();
        if self.auto.is_none()
            && self.window.is_none()
            && self.restart.is_none()
            && self.allow_unsigned.is_none()
            && !backups
        {
            bail!(
                "say what to change: --auto on|off, --window HH:MM-HH:MM|none, --restart \
                 on|off, --allow-unsigned on|off, --backup-every DURATION|off [--backup-to \
                 DIR] [--keep-last N] [--keep-daily N]"
            );
        }
        let mut policy = was.clone();
        if backups {
            policy.backup = backup(
                policy.backup.take(),
                self.backup_every.as_deref(),
                self.backup_to,
                self.keep_last.as_deref(),
                self.keep_daily.as_deref(),
            )?;
        }
        policy.auto = self.auto.unwrap_or(policy.auto);
        policy.restart = self.restart.unwrap_or(policy.restart);
        policy.allow_unsigned = self.allow_unsigned.unwrap_or(policy.allow_unsigned);
        match self.window.as_deref() {
            Some("none") => policy.window = None,
            Some(w) => policy.window = Some(Window::parse(w).map_err(anyhow::Error::msg)?),
            None => {}
        }
        Ok(policy)
    }
}

/// The backup part of a deployment's policy after `cvl policy set`'s
/// options (`--backup-every DURATION|off`, `--backup-to`, `--keep-last`,
/// `--keep-daily`), from what it was.
pub fn backup(
    was: Option<BackupPolicy>,
    every: Option<&str>,
    to: Option<String>,
    keep_last: Option<&str>,
    keep_daily: Option<&str>,
) -> Result<Option<BackupPolicy>> {
    if every == Some("off") {
        if to.is_some() || keep_last.is_some() || keep_daily.is_some() {
            bail!("--backup-every off turns the service's backups off: it takes no other backup option");
        }
        return Ok(None);
    }
    let every_secs = match every {
        Some(text) => {
            let d = humantime::parse_duration(text).map_err(|e| {
                anyhow::anyhow!("--backup-every {text}: {e} (say 1h, 30m, 1day, or off)")
            })?;
            if d.as_secs() == 0 {
                bail!("--backup-every {text}: at least 1s");
            }
            Some(d.as_secs())
        }
        None => None,
    };
    let Some(every_secs) = every_secs.or(was.as_ref().map(|b| b.every_secs)) else {
        bail!("the service takes no backups of this deployment yet: say how often (--backup-every 1h) and where (--backup-to DIR)");
    };
    let Some(to) = to.or(was.as_ref().map(|b| b.to.clone())) else {
        bail!("say where the backups go: --backup-to DIR (an absolute folder on the appliances' hosts, or ssh://HOST/DIR on a registered host)");
    };
    crate::backup::Store::parse(&to).map_err(|e| anyhow::anyhow!("--backup-to: {e}"))?;
    let keep = |flag, text: Option<&str>, was: Option<u32>| match text {
        Some(text) => keep_count(flag, text),
        None => Ok(was),
    };
    Ok(Some(BackupPolicy {
        every_secs,
        to,
        keep_last: keep(
            "keep-last",
            keep_last,
            was.as_ref().and_then(|b| b.keep_last),
        )?,
        keep_daily: keep(
            "keep-daily",
            keep_daily,
            was.as_ref().and_then(|b| b.keep_daily),
        )?,
    }))
}

/// `N`, or `all` (no limit).
fn keep_count(flag: &str, text: &str) -> Result<Option<u32>> {
    match text {
        "all" => Ok(None),
        n => match n.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => bail!("--{flag} {text}: say a number of restore points (at least 1), or all"),
        },
    }
}
