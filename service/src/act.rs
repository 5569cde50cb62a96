//! One deployment, acted on: planned from the newest allowed versions,
//! split by `cvl_utility::decide` into what the service does now, what
//! waits for a person and what its policy holds, then carried out one
//! appliance at a time under the state's apply lock, each update held to
//! its health gate and rolled back when it fails it. Also: stopping an
//! appliance on a barred version (`--enforce-blacklist`), and finding the
//! updates a killed service began.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Result};
use cvl_executor::apply::FailureKind;
use cvl_planner::model::{ComponentPath, DeploymentSource, FailedVersion, HistoryEntry};
use cvl_planner::plan::{ActionKind, Plan, Reason};
use cvl_planner::Change;
use cvl_repo::loader::TrustReport;
use cvl_repo::{LockMode, Settings};
use cvl_utility::decide::{self, Wait};

use crate::journal::{self, log, log_event, Entry};
use crate::Service;

impl Service {
    /// Plans `name` from the newest allowed versions and carries out what
    /// the service may do by itself, one appliance at a time, each held to
    /// its health gate. `state` is the round's (read at its start);
    /// `may_resume`: a killed service may have left an update begun here.
    pub(crate) fn keep_up_to_date(
        &mut self,
        name: &str,
        settings: &Settings,
        blacklist: &cvl_repo::blacklist::Blacklist,
        state: &cvl_planner::model::UtilityState,
        may_resume: bool,
        crashed: &BTreeSet<ComponentPath>,
    ) -> Result<()> {
        let Some(d) = state.deployments.get(name) else {
            return Ok(());
        };
        let Some(source) = d.source.clone() else {
            return Ok(());
        };
        let policy = d.policy.clone();
        let mut resume = if may_resume {
            resuming(name)?
        } else {
            BTreeMap::new()
        };
        let mut settings = settings.clone();
        settings.blacklist = decide::barred_for(blacklist, state, name);
        // What an update would do, the lock left as it is.
        let (preview, _, trust) =
            self.plan(name, &source, &settings, LockMode::Preview, crashed)?;
        if !preview.missing_secrets.is_empty() {
            let names: Vec<&str> = preview
                .missing_secrets
                .iter()
                .map(|m| m.supply.as_str())
                .collect();
            self.problem(
                name,
                "secrets_missing",
                format!(
                    "skipped: its sensitive values cannot be had ({}): set them in the \
                     service's environment or unlock the user agent",
                    names.join(", ")
                ),
            );
            return Ok(());
        }
        let seen = self.seen.remove(name).unwrap_or_default();
        let (differences, seen) = decide::sensitive_differences(&preview, Some(d), &seen);
        self.seen.insert(name.to_string(), seen);
        let minute = decide::minute_of_day(SystemTime::now());
        let decision = decide::decide(
            &preview,
            &decide::Context {
                recorded: Some(d),
                differences: &differences,
                policy: &policy,
                minute,
                unsigned: &trust.unsigned,
            },
        );
        for diff in differences.iter().filter(|d| d.ours_changed) {
            log(
                "sensitive_changed",
                serde_json::json!({
                    "deployment": name, "component": diff.component.0, "param": diff.param,
                    "message": "the service's own source changed it since the last apply: \
                                it is resent",
                }),
            );
        }
        self.show_waiting(name, d, &preview, &decision);
        self.report_pending(name, &preview, &decision, &resume)?;
        let work = !decision.act.is_empty()
            || !decision.held_actions.is_empty()
            || preview
                .actions
                .iter()
                .any(|a| resume.contains_key(&a.component));
        if !work {
            self.held.remove(name);
            self.reporter.clear(name, "held");
            return Ok(());
        }
        if let Some(why) = &decision.held {
            // Planned again when the policy changes or lets it run.
            self.held.insert(name.to_string(), policy.clone());
            self.reporter
                .report(name, "held", format!("updates wait: {why}"));
            if decision.act.is_empty() {
                return Ok(());
            }
        } else {
            self.held.remove(name);
            self.reporter.clear(name, "held");
        }
        let store = cvl_ops::state::open()?;
        let _lock = match store.lock_apply(
            &format!("cvl utility run: updating {name}"),
            self.config.lock_timeout,
        ) {
            Ok(lock) => lock,
            Err(cvl_state::StateError::Locked { holder, .. }) => {
                self.retry.insert(name.to_string());
                self.reporter.report(
                    name,
                    "lock_held",
                    format!("waits: the state's apply lock is held by {holder}"),
                );
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        drop(store);
        self.reporter.clear(name, "lock_held");
        // The newest allowed versions into cvl.lock, as `cvl update` does
        // (not while the policy holds updates: then only crashes are
        // restarted); then one appliance at a time, planned again after each.
        let mut mode = if decision.held.is_some() {
            LockMode::Use
        } else {
            LockMode::Update
        };
        let mut crashed = crashed.clone();
        let mut attempted = BTreeSet::new();
        loop {
            let state = cvl_ops::state::open()?.load()?;
            let Some(recorded) = state.deployments.get(name) else {
                return Ok(());
            };
            settings.blacklist = decide::barred_for(blacklist, &state, name);
            let (planned, sensitive, trust) =
                self.plan(name, &source, &settings, mode, &crashed)?;
            mode = LockMode::Use;
            // An update a killed service began that has no action left: it
            // finished before the kill; the history says so now.
            let finished: Vec<(ComponentPath, Option<u32>)> = resume
                .iter()
                .filter(|(c, _)| !planned.actions.iter().any(|a| a.component == **c))
                .map(|(c, from)| (c.clone(), *from))
                .collect();
            for (component, from) in finished {
                resume.remove(&component);
                let to = planned
                    .desired
                    .get(&component)
                    .and_then(|d| d.appliance.version);
                journal::history(Entry {
                    deployment: name,
                    component: &component.0,
                    action: "update",
                    from_version: from,
                    to_version: to,
                    outcome: "done",
                    detail: "found finished when the service started again",
                })?;
            }
            let seen = self.seen.get(name).cloned().unwrap_or_default();
            let (differences, _) = decide::sensitive_differences(&planned, Some(recorded), &seen);
            let now = decide::decide(
                &planned,
                &decide::Context {
                    recorded: Some(recorded),
                    differences: &differences,
                    policy: &policy,
                    minute: decide::minute_of_day(SystemTime::now()),
                    unsigned: &trust.unsigned,
                },
            );
            let next = now
                .act
                .iter()
                .map(|&i| &planned.actions[i])
                .find(|a| !attempted.contains(&a.component));
            let Some(action) = next.cloned() else {
                return Ok(());
            };
            attempted.insert(action.component.clone());
            let restart = action.why == Reason::Crashed;
            crashed.remove(&action.component);
            let console = if restart {
                match self.before_restart(name, &planned, &action.component)? {
                    Some(console) => console,
                    None => continue,
                }
            } else {
                String::new()
            };
            let part = only(&planned, &action.component);
            // Marked as begun first: a service killed from here on finds
            // it again and finishes it (or rolls it back).
            if let Reason::VersionChanged { from, to, .. } = &action.why {
                journal::history(Entry {
                    deployment: name,
                    component: &action.component.0,
                    action: "update",
                    from_version: *from,
                    to_version: *to,
                    outcome: "started",
                    detail: &action.reason,
                })?;
            }
            let summary = cvl_ops::run::run_plan(
                &part,
                &sensitive,
                &settings,
                &self.walk_options(),
                "service",
                false,
                &mut |event| log_event(name, event),
            )?;
            let failure = summary.failed.first().map(|(_, f)| f.clone());
            if restart {
                self.after_restart(name, &action.component, &console, failure.as_ref())?;
                continue;
            }
            let mut metrics = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
            match (action.action, failure) {
                (ActionKind::Resend, None) => metrics.resends_applied += 1,
                (_, None) => metrics.updates_applied += 1,
                (_, Some(failure)) if failure.kind == FailureKind::NotReady => {
                    drop(metrics);
                    // Back to the version it ran before, if one is known.
                    let from = match &action.why {
                        Reason::VersionChanged { from, .. } => *from,
                        _ => None,
                    }
                    .or(resume.get(&action.component).copied().flatten());
                    self.roll_back(
                        name,
                        &source,
                        &settings,
                        &planned,
                        &action,
                        from,
                        &failure.message,
                    )?;
                }
                (_, Some(_)) => metrics.updates_failed += 1,
            }
        }
    }

    /// Before restarting a crashed appliance: asks its host again (under
    /// the apply lock now) whether it is still down, and reads the end of
    /// its console, what the crash left. `None`: it runs again (someone
    /// started it): nothing to do.
    fn before_restart(
        &mut self,
        name: &str,
        planned: &Plan,
        component: &ComponentPath,
    ) -> Result<Option<String>> {
        let Some(host) = planned.allocations.get(component).map(|a| a.host.clone()) else {
            return Ok(None);
        };
        let state = cvl_ops::state::open()?.load()?;
        let connector = cvl_ops::hosts::connector(&state)?;
        let links = cvl_executor::transport::Links::new(&connector);
        let vm = cvl_executor::protocol::VmId {
            deployment: name.to_string(),
            path: component.0.clone(),
        };
        use cvl_executor::protocol::{Request, Response};
        let status = links.call(
            &host,
            &Request::Status {
                vms: vec![vm.clone()],
                all: false,
                snapshots: false,
            },
        );
        if let Ok(Response::Status { vms, .. }) = &status {
            if vms.first().is_some_and(|v| v.pid.is_some()) {
                return Ok(None);
            }
        }
        let console = match links.call(&host, &Request::Console { vm, lines: 12 }) {
            Ok(Response::Console { lines }) if !lines.is_empty() => lines.join("\n"),
            Ok(_) => "(its console is empty)".to_string(),
            Err(e) => format!("(its console could not be read: {e})"),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.restarts
            .entry((name.to_string(), component.clone()))
            .or_default()
            .push(now);
        log(
            "crashed",
            serde_json::json!({
                "deployment": name, "component": component.0, "host": host, "console": console,
            }),
        );
        Ok(Some(console))
    }

    /// After restarting a crashed appliance: the history says what the
    /// crash left on its console and how the restart went.
    fn after_restart(
        &mut self,
        name: &str,
        component: &ComponentPath,
        console: &str,
        failure: Option<&cvl_executor::apply::Failure>,
    ) -> Result<()> {
        let mut metrics = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        metrics.restarts += 1;
        drop(metrics);
        let key = (name.to_string(), component.clone());
        let (outcome, how) = match failure {
            None => {
                self.restart_failed.remove(&key);
                (
                    "restarted",
                    "started again, its data disks kept".to_string(),
                )
            }
            // It died again while booting: tried again after its back-off,
            // until the limit.
            Some(f) if f.kind == FailureKind::NotReady => {
                self.restart_failed.insert(key);
                (
                    "failed",
                    format!("did not start again ({f}); tried again after its back-off"),
                )
            }
            Some(f) => (
                "failed",
                format!("did not start again ({f}); recorded failed: it waits for a person"),
            ),
        };
        journal::history(Entry {
            deployment: name,
            component: &component.0,
            action: "restart",
            from_version: None,
            to_version: None,
            outcome,
            detail: &format!(
                "its QEMU was gone (crashed, killed, or its host restarted); {how}. The end of \
                 its console before the restart:\n{console}"
            ),
        })
    }

    /// What waits, for the status page: for a person (and why), or for
    /// the policy.
    fn show_waiting(
        &self,
        name: &str,
        d: &cvl_planner::model::DeploymentState,
        preview: &Plan,
        decision: &decide::Decision,
    ) {
        let held: Vec<(usize, String)> = match &decision.held {
            Some(why) => decision
                .held_actions
                .iter()
                .map(|&i| (i, format!("held: {why}")))
                .collect(),
            None => Vec::new(),
        };
        let waiting: BTreeMap<ComponentPath, cvl_utility::web::Pending> = decision
            .pending
            .iter()
            .map(|(i, wait)| (*i, format!("waits for a person: {wait}")))
            .chain(held)
            .map(|(i, why)| {
                let a = &preview.actions[i];
                let from = d
                    .vms
                    .get(&a.component)
                    .and_then(|vm| vm.spec.appliance.version);
                let what = format!(
                    "{} {}: {} ({why})",
                    a.action.as_str(),
                    a.component.0,
                    a.reason
                );
                (
                    a.component.clone(),
                    cvl_utility::web::Pending { from, what },
                )
            })
            .collect();
        self.page.update(|live| {
            live.problems.remove(name);
            if waiting.is_empty() {
                live.pending.remove(name);
            } else {
                live.pending.insert(name.to_string(), waiting);
            }
            match &decision.held {
                Some(why) => live
                    .held
                    .insert(name.to_string(), format!("updates wait: {why}")),
                None => live.held.remove(name),
            };
        });
    }

    /// Says what waits for a person (a log line and a history `report`,
    /// once while it stays the same), naming who applied a sensitive value
    /// the service will not put back.
    fn report_pending(
        &mut self,
        name: &str,
        preview: &Plan,
        decision: &decide::Decision,
        resume: &BTreeMap<ComponentPath, Option<u32>>,
    ) -> Result<()> {
        let waits: Vec<(&cvl_planner::plan::Action, &Wait)> = decision
            .pending
            .iter()
            .map(|(i, wait)| (&preview.actions[*i], wait))
            .filter(|(a, _)| !resume.contains_key(&a.component))
            .collect();
        if waits.is_empty() {
            self.reporter.clear(name, "pending");
            return Ok(());
        }
        let history = if waits
            .iter()
            .any(|(_, w)| matches!(w, Wait::AppliedByOthers(_)))
        {
            cvl_ops::state::open()?.history(Some(name), 500)?
        } else {
            Vec::new()
        };
        let said: Vec<String> = waits
            .iter()
            .map(|(a, wait)| match wait {
                Wait::AppliedByOthers(params) => {
                    let by = applied_by(&history, &a.component)
                        .map(|e| format!("by {} at {}", e.actor, e.at))
                        .unwrap_or_else(|| "by someone else".to_string());
                    format!(
                        "{name}/{} {}: the service's value differs from the one applied {by}; \
                         not resent ({} {} waits)",
                        a.component.0,
                        params.join(", "),
                        a.action.as_str(),
                        a.component.0
                    )
                }
                Wait::Stopped(_) | Wait::RestartOff | Wait::Unsigned(_) => format!(
                    "{} {} ({}): {wait}",
                    a.action.as_str(),
                    a.component.0,
                    a.reason
                ),
                Wait::Kind(_) => {
                    format!("{} {} ({})", a.action.as_str(), a.component.0, a.reason)
                }
            })
            .collect();
        let said = format!("waits for a person: {}", said.join("; "));
        if self.reporter.report(name, "pending", said.clone()) {
            journal::history(Entry {
                deployment: name,
                component: "",
                action: "report",
                from_version: None,
                to_version: None,
                outcome: "pending",
                detail: &said,
            })?;
        }
        Ok(())
    }

    /// The health gate failed: the version that failed is recorded (never
    /// taken again), the import pinned to `from`, and the appliance
    /// started on it, data disks untouched.
    #[allow(clippy::too_many_arguments)]
    fn roll_back(
        &mut self,
        name: &str,
        source: &DeploymentSource,
        settings: &Settings,
        planned: &Plan,
        action: &cvl_planner::plan::Action,
        from: Option<u32>,
        message: &str,
    ) -> Result<()> {
        let Some(desired) = planned.desired.get(&action.component) else {
            return Ok(());
        };
        let url = desired.appliance.source.clone();
        let Some(to) = desired.appliance.version else {
            return Ok(());
        };
        let reason = message.lines().next().unwrap_or(message).to_string();
        cvl_ops::state::open()?.commit(&[Change::VersionFailed {
            deployment: name.to_string(),
            failed: FailedVersion {
                url: url.clone(),
                version: to,
                component: action.component.clone(),
                at: cvl_ops::state::now(),
                reason: reason.clone(),
            },
        }])?;
        let Some(from) = from.filter(|&f| f != to) else {
            self.metrics
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .updates_failed += 1;
            let said = format!(
                "version {to} of {url} failed its health gate and there is no earlier version to \
                 go back to: {reason}"
            );
            journal::history(Entry {
                deployment: name,
                component: &action.component.0,
                action: "rollback",
                from_version: None,
                to_version: Some(to),
                outcome: "failed",
                detail: &said,
            })?;
            return Ok(());
        };
        let dir = Path::new(&source.file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        cvl_repo::loader::pin(settings, &dir, &url, from).map_err(anyhow::Error::msg)?;
        journal::history(Entry {
            deployment: name,
            component: &action.component.0,
            action: "rollback",
            from_version: Some(to),
            to_version: Some(from),
            outcome: "started",
            detail: &format!("version {to} failed its health gate: {reason}"),
        })?;
        let state = cvl_ops::state::open()?.load()?;
        let mut settings = settings.clone();
        settings.blacklist = decide::barred_for(&settings.blacklist, &state, name);
        let (back, sensitive, _) =
            self.plan(name, source, &settings, LockMode::Use, &BTreeSet::new())?;
        let part = only(&back, &action.component);
        // The data too, as it was before the update (the failed version
        // may have migrated it).
        let mut options = self.walk_options();
        options.restore_data.insert(
            action.component.clone(),
            cvl_executor::protocol::snapshot_of_version(from),
        );
        let summary = cvl_ops::run::run_plan(
            &part,
            &sensitive,
            &settings,
            &options,
            "service (rollback)",
            false,
            &mut |event| log_event(name, event),
        )?;
        let ok = summary.ok();
        {
            let mut metrics = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
            if ok {
                metrics.updates_rolled_back += 1;
            } else {
                metrics.updates_failed += 1;
            }
        }
        journal::history(Entry {
            deployment: name,
            component: &action.component.0,
            action: "rollback",
            from_version: Some(to),
            to_version: Some(from),
            outcome: if ok { "rolled back" } else { "failed" },
            detail: &format!(
                "version {to} failed its health gate ({reason}); version {from} {}",
                if ok {
                    format!(
                        "runs again, on its data as it was before the update; version {to} is \
                         not taken again"
                    )
                } else {
                    "did not start either: a person must look (cvl status)".to_string()
                }
            ),
        })?;
        Ok(())
    }

    /// Stops an appliance whose version is barred (`--enforce-blacklist`).
    pub(crate) fn enforce(
        &mut self,
        deployment: &str,
        component: &ComponentPath,
        why: &str,
    ) -> Result<()> {
        let store = cvl_ops::state::open()?;
        let _lock = match store.lock_apply(
            &format!("cvl utility run: enforcing the blacklist on {deployment}"),
            self.config.lock_timeout,
        ) {
            Ok(lock) => lock,
            Err(cvl_state::StateError::Locked { holder, .. }) => {
                self.reporter.report(
                    deployment,
                    "lock_held",
                    format!("waits: the state's apply lock is held by {holder}"),
                );
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let state = cvl_ops::state::open()?.load()?;
        let plan = cvl_planner::plan_stop(&state, deployment, Some(component))?;
        if !plan.has_changes() {
            return Ok(());
        }
        log(
            "enforce_blacklist",
            serde_json::json!({ "deployment": deployment, "component": component.0, "why": why }),
        );
        let settings = Settings::from_env().map_err(anyhow::Error::msg)?;
        cvl_ops::run::run_plan(
            &plan,
            &Default::default(),
            &settings,
            &self.walk_options(),
            "service (blacklist)",
            true,
            &mut |event| log_event(deployment, event),
        )?;
        Ok(())
    }
}

/// The newest entry that applied `component`'s parameters, by anyone but
/// the service: who a sensitive value the service will not put back came
/// from.
fn applied_by<'h>(
    history: &'h [HistoryEntry],
    component: &ComponentPath,
) -> Option<&'h HistoryEntry> {
    history.iter().rev().find(|e| {
        e.component == component.0
            && e.outcome == "done"
            && !e.actor.starts_with("service")
            && matches!(e.action.as_str(), "start" | "update" | "resend" | "move")
    })
}

/// A plan restricted to one component's action (what it waits for is
/// already done, or is not the service's to do).
fn only(plan: &Plan, component: &ComponentPath) -> Plan {
    let mut part = plan.clone();
    part.actions.retain(|a| a.component == *component);
    part
}

/// The deployments where the history says the service began an update or
/// rollback it did not finish (it was killed): one look at the log.
pub(crate) fn started_updates() -> Result<BTreeSet<String>> {
    let entries = cvl_ops::state::open()?.history(None, 10_000)?;
    let mut last: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.actor.starts_with("service")) {
        last.insert((&e.deployment, &e.component), &e.outcome);
    }
    Ok(last
        .into_iter()
        .filter(|((_, c), outcome)| !c.is_empty() && *outcome == "started")
        .map(|((d, _), _)| d.to_string())
        .collect())
}

/// The components whose last service entry is an update or rollback that
/// started and never ended, with the version they ran before.
fn resuming(deployment: &str) -> Result<BTreeMap<ComponentPath, Option<u32>>> {
    let entries = cvl_ops::state::open()?.history(Some(deployment), 200)?;
    let mut last: BTreeMap<String, &HistoryEntry> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.actor.starts_with("service")) {
        last.insert(e.component.clone(), e);
    }
    Ok(last
        .into_iter()
        .filter(|(c, e)| !c.is_empty() && e.outcome == "started")
        .map(|(c, e)| (ComponentPath(c), e.from_version))
        .collect())
}

impl Service {
    /// A plan of the deployment as recorded, quietly (errors are the
    /// result), with what its repositories are trusted as. A repository
    /// refused (an attack named) is logged and counted; the earliest expiry
    /// of its signed repositories is kept (past it, it is planned again, to
    /// say it is frozen).
    fn plan(
        &mut self,
        name: &str,
        source: &DeploymentSource,
        settings: &Settings,
        lock: LockMode,
        crashed: &BTreeSet<ComponentPath>,
    ) -> Result<(Plan, cvl_planner::lower::SensitiveValues, TrustReport)> {
        let file = PathBuf::from(&source.file);
        if !file.is_file() {
            bail!(
                "{} is gone: the deployment was applied from it (apply it from where it is now)",
                file.display()
            );
        }
        let input = cvl_ops::plan::Input {
            file: &file,
            deploy: Some(&source.deploy),
            target: None,
            options: cvl_repo::LoadOptions {
                settings: settings.clone(),
                lock,
            },
            crashed: crashed.clone(),
            pins: Default::default(),
        };
        let planned = cvl_ops::plan::plan(&input, &mut cvl_ops::secrets::Nobody)?;
        let trust = planned.trust().clone();
        self.trusted(name, &trust);
        let (plan, sensitive) = planned.or_first_error(&file)?;
        Ok((plan, sensitive, trust))
    }

    /// What a plan's repositories were found to be: refusals logged and
    /// counted (once while they stay the same), the earliest expiry kept.
    fn trusted(&mut self, name: &str, trust: &TrustReport) {
        let mut metrics = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
        // What this deployment's last plan refused and this one did not
        // is no longer refused (its repository verified, or no longer
        // imported).
        let now: BTreeSet<String> = trust.refused.iter().map(|r| r.repository.clone()).collect();
        let before = self.refused_by.remove(name).unwrap_or_default();
        for gone in before.difference(&now) {
            metrics.refused.remove(gone);
        }
        for refused in &trust.refused {
            metrics.refused.insert(
                refused.repository.clone(),
                refused.attack.as_str().to_string(),
            );
        }
        drop(metrics);
        if !now.is_empty() {
            self.refused_by.insert(name.to_string(), now);
        }
        for refused in &trust.refused {
            self.reporter.report(
                name,
                "refused",
                format!("{refused}; the appliances keep running what they run"),
            );
        }
        let earliest = trust
            .signed
            .values()
            .filter_map(|v| humantime::parse_rfc3339(&v.expires).ok())
            .min();
        match earliest {
            Some(at) => {
                self.expiries.insert(name.to_string(), at);
            }
            None => {
                self.expiries.remove(name);
            }
        }
    }
}
