//! Backups by policy (`cvl policy set DEPLOYMENT --backup-every 1h
//! --backup-to DIR`): after each round's updates, and between rounds when
//! the next one falls due (a policy's interval may be shorter than the
//! service's), the running appliances with data disks whose newest restore
//! point is an interval old are backed up, most overdue first, one at a time (so never during an update the
//! service makes; a person's apply holds the host's lock on the VM, and a
//! deployment an apply is half way through waits), and the store is then
//! pruned as the policy keeps. When a backup is due is
//! `cvl_utility::decide::backup_due`'s to say; a failure is retried with
//! back-off. Each backup is in the history, the log, `/metrics` and the
//! appliance's status page.

use std::time::SystemTime;

use anyhow::Result;
use cvl_executor::protocol::Backup;
use cvl_planner::model::{BackupPolicy, ComponentPath, Status, UtilityState};
use cvl_utility::decide::{self, BackupRecord};
use cvl_utility::web::BackupSeen;

use crate::journal::{self, log};
use crate::{interrupted_apply, unix, Service};

impl Service {
    /// Backs up what is due, one appliance at a time.
    pub(crate) fn back_up_due(&mut self, state: &UtilityState) -> Result<()> {
        let now = unix(SystemTime::now());
        let mut due = Vec::new();
        // The running appliances a policy backs up, with its interval.
        let mut watched = Vec::new();
        for (name, d) in &state.deployments {
            let Some(policy) = &d.policy.backup else {
                continue;
            };
            if interrupted_apply(state, name) {
                continue;
            }
            for (path, vm) in &d.vms {
                // A stopped appliance's data does not change: its last
                // restore point still holds.
                if vm.spec.data_disks.is_empty() || vm.status != Status::Running {
                    continue;
                }
                let key = (name.clone(), path.clone());
                if !self.backups.contains_key(&key) {
                    let (record, seen) = newest_in_store(state, name, path, policy);
                    self.backups.insert(key.clone(), record);
                    self.saw_backup(name, path, seen);
                }
                if let Some(over) =
                    decide::backup_overdue(&self.backups[&key], policy.every_secs, now)
                {
                    due.push((over, key.clone(), policy.clone()));
                }
                watched.push((key, policy.every_secs));
            }
        }
        // Appliances no policy backs up any more are forgotten.
        self.backups.retain(|(d, c), _| {
            state.deployments.get(d).is_some_and(|d| {
                d.policy.backup.is_some()
                    && d.vms
                        .get(c)
                        .is_some_and(|vm| !vm.spec.data_disks.is_empty())
            })
        });
        let kept = self
            .backups
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>();
        self.page
            .update(|live| live.backups.retain(|k, _| kept.contains(k)));
        due.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let done = due
            .into_iter()
            .try_for_each(|(_, (name, path), policy)| self.back_up(state, &name, &path, &policy));
        // When to wake for the next one.
        self.next_backup = watched
            .iter()
            .filter_map(|(key, every)| Some(decide::backup_next(self.backups.get(key)?, *every)))
            .min();
        done
    }

    /// Between rounds: what fell due since (the state read afresh).
    pub(crate) fn back_up_between_rounds(&mut self) -> Result<()> {
        if self
            .next_backup
            .is_none_or(|at| unix(SystemTime::now()) < at)
        {
            return Ok(());
        }
        let state = cvl_ops::state::open()?.load()?;
        self.back_up_due(&state)
    }

    /// One appliance backed up and its store pruned; recorded everywhere.
    fn back_up(
        &mut self,
        state: &UtilityState,
        name: &str,
        path: &ComponentPath,
        policy: &BackupPolicy,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let made =
            cvl_ops::backup::backup(state, name, Some(&path.0), &policy.to, false, &mut |_| {})
                .map_err(|e| format!("{e:#}"))
                .and_then(|mut outcomes| match outcomes.pop() {
                    Some(o) => o.result,
                    None => Err("nothing was backed up".to_string()),
                });
        let keep = cvl_ops::backup::Keep {
            last: policy.keep_last,
            daily: policy.keep_daily,
        };
        let pruned = match &made {
            Ok(_) if keep.last.is_some() || keep.daily.is_some() => {
                cvl_ops::backup::prune(state, name, Some(&path.0), &policy.to, keep)
                    .map(|p| p.into_iter().flat_map(|p| p.dropped).collect())
                    .map_err(|e| format!("{e:#}"))
            }
            _ => Ok(Vec::<Backup>::new()),
        };
        let now = unix(SystemTime::now());
        let key = (name.to_string(), path.clone());
        let record = self.backups.entry(key).or_default();
        let (outcome, detail) = match &made {
            Ok(points) => {
                *record = BackupRecord {
                    last_good: Some(now),
                    ..Default::default()
                };
                let size: u64 = points.iter().map(|b| b.size).sum();
                let mut detail = points
                    .iter()
                    .map(|b| {
                        format!(
                            "restore point {} of {} ({}, {} bytes, {}{})",
                            b.id,
                            b.device,
                            b.kind,
                            b.size,
                            b.consistency,
                            if b.consistency == "frozen" {
                                format!(" {} ms", b.frozen_ms)
                            } else {
                                String::new()
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                detail.push_str(&format!(" in {}", policy.to));
                match &pruned {
                    Ok(dropped) if !dropped.is_empty() => detail.push_str(&format!(
                        "; dropped {}",
                        dropped
                            .iter()
                            .map(|b| b.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    Ok(_) => {}
                    Err(e) => detail.push_str(&format!("; the prune failed: {e}")),
                }
                {
                    let mut m = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
                    m.backups_taken += 1;
                    m.last_backup
                        .insert(format!("{name}/{}", path.0), (now, size));
                }
                let newest = points.last().map(|b| (b.id.clone(), now, size));
                self.saw_backup(
                    name,
                    path,
                    BackupSeen {
                        every_secs: policy.every_secs,
                        newest,
                        error: None,
                    },
                );
                self.reporter.clear(name, "backup_failed");
                ("ok", detail)
            }
            Err(e) => {
                record.failures += 1;
                record.last_failure = Some(now);
                self.metrics
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .backup_failures += 1;
                let error = e.clone();
                self.page.update(|live| {
                    let seen = live
                        .backups
                        .entry((name.to_string(), path.clone()))
                        .or_default();
                    seen.every_secs = policy.every_secs;
                    seen.error = Some(error);
                });
                self.reporter.report(
                    name,
                    "backup_failed",
                    format!(
                        "the backup of {name}/{} into {} failed: {e}",
                        path.0, policy.to
                    ),
                );
                (
                    "failed",
                    format!("into {}: {e} (tried again later)", policy.to),
                )
            }
        };
        log(
            "backup",
            serde_json::json!({
                "deployment": name, "component": path.0, "outcome": outcome,
                "detail": detail, "seconds": started.elapsed().as_secs_f64(),
            }),
        );
        journal::history(journal::Entry {
            deployment: name,
            component: &path.0,
            action: "backup",
            from_version: None,
            to_version: None,
            outcome,
            detail: &detail,
        })
    }

    fn saw_backup(&self, name: &str, path: &ComponentPath, seen: BackupSeen) {
        self.page.update(|live| {
            live.backups.insert((name.to_string(), path.clone()), seen);
        });
    }
}

/// What the store already holds of an appliance, when the service first
/// looks: its newest restore point (a store it cannot read: none, so the
/// first backup is due at once and says what is wrong).
fn newest_in_store(
    state: &UtilityState,
    name: &str,
    path: &ComponentPath,
    policy: &BackupPolicy,
) -> (BackupRecord, BackupSeen) {
    let newest = cvl_ops::backup::list(state, name, Some(&path.0), &policy.to)
        .ok()
        .and_then(|listed| {
            listed
                .into_iter()
                .flat_map(|(_, points)| points)
                .filter_map(|b| {
                    let at = humantime::parse_rfc3339(&b.at).ok()?;
                    Some((unix(at), b))
                })
                .max_by_key(|(at, _)| *at)
        });
    let record = BackupRecord {
        last_good: newest.as_ref().map(|(at, _)| *at),
        ..Default::default()
    };
    let seen = BackupSeen {
        every_secs: policy.every_secs,
        newest: newest.map(|(at, b)| (b.id, at, b.size)),
        error: None,
    };
    (record, seen)
}
