//! Hosts that stop answering: the survey ([`page`](crate::page)) says
//! which have been silent for `--host-dead-after`; the service reports each
//! once when it goes silent and once when it answers again, in the log,
//! the history of every deployment with appliances there, `/metrics` and
//! the pages. Nothing is moved or restarted on a silence alone: a host that
//! does not answer may still run its VMs (a network split). A silent host
//! is fenced first, by its fence command ([`cvl_ops::fence`]); without one
//! the service waits for a person (`cvl host fence NAME --confirm-dead`).
//! Once fenced, the next plan of each deployment recovers its appliances
//! on the other hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::Result;
use cvl_ops::fence::How;
use cvl_planner::model::{Status, UtilityState};

use crate::journal::{self, log};
use crate::Service;

impl Service {
    /// Reports the hosts the survey found unreachable, and those that
    /// answer again: once each way, in the log, the history of every
    /// deployment with appliances there, `/metrics` and the page.
    pub(crate) fn watch_hosts(&mut self) -> Result<()> {
        let crashes = self.page.crashes();
        if let Some(at) = crashes.unreachable_changed {
            self.crashes_handled = self.crashes_handled.max(at);
        }
        let now: BTreeSet<String> = crashes.unreachable.keys().cloned().collect();
        if now == self.unreachable {
            return Ok(());
        }
        let state = cvl_ops::state::open()?.load()?;
        let on = |host: &str| on_host(&state, host);
        let silent: Vec<String> = now.difference(&self.unreachable).cloned().collect();
        let back: Vec<String> = self.unreachable.difference(&now).cloned().collect();
        for host in &silent {
            let (silent, error) = &crashes.unreachable[host];
            let appliances = on(host);
            log(
                "host_unreachable",
                serde_json::json!({
                    "host": host, "silent_s": silent, "error": error, "appliances": appliances,
                }),
            );
            for (deployment, components) in &appliances {
                let said = format!(
                    "host {host} has not answered for {silent} s ({error}): {} cannot be \
                     reached; nothing is moved (a host that does not answer may still run them)",
                    components.join(", ")
                );
                entry(deployment, "unreachable", &said)?;
                self.problem(deployment, "host_unreachable", said);
            }
        }
        for host in &back {
            self.fence_tried.remove(host);
            // Fenced and back: it must run none of the VMs now elsewhere.
            if state
                .hosts
                .iter()
                .any(|h| h.name == *host && h.fenced.is_some())
            {
                let retired = cvl_ops::fence::retire(&state, host).map_err(|e| format!("{e:#}"));
                log(
                    "host_retired",
                    serde_json::json!({
                        "host": host, "attic": retired.as_ref().ok(),
                        "error": retired.as_ref().err(),
                        "message": "fenced, it answers again: its old VMs' folders go to its \
                                    attic; `cvl host rejoin` puts it back into placement",
                    }),
                );
            }
            let appliances = on(host);
            log(
                "host_answers",
                serde_json::json!({ "host": host, "appliances": appliances }),
            );
            for deployment in appliances.keys() {
                entry(
                    deployment,
                    "answers again",
                    &format!("host {host} answers again"),
                )?;
                self.reporter.clear(deployment, "host_unreachable");
                let prefix = format!("host {host} ");
                self.page.update(|live| {
                    if live
                        .problems
                        .get(deployment)
                        .is_some_and(|p| p.starts_with(&prefix))
                    {
                        live.problems.remove(deployment);
                    }
                });
            }
        }
        self.metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .hosts_unreachable = now.clone();
        self.unreachable = now;
        Ok(())
    }
}

impl Service {
    /// Runs the fence command of each host silent past `--host-dead-after`
    /// and not yet fenced (again after `--host-dead-after`); says when a host has
    /// none or it failed (nothing moves then). Whether a host was fenced.
    pub(crate) fn fence_silent_hosts(&mut self, state: &UtilityState) -> Result<bool> {
        let mut fenced = false;
        for name in self.unreachable.clone() {
            let Some(host) = state.hosts.iter().find(|h| h.name == name) else {
                continue;
            };
            if host.fenced.is_some()
                || self
                    .fence_tried
                    .get(&name)
                    .is_some_and(|(at, _)| at.elapsed() < self.config.host_dead_after)
            {
                continue;
            }
            let appliances = on_host(state, &name);
            let result = match &host.fence {
                None => Err(format!(
                    "host {name} has no fence command: nothing is moved until it is fenced \
                     (`cvl host set {name} --fence 'COMMAND'`, or once you know it is off, \
                     `cvl host fence {name} --confirm-dead`)"
                )),
                Some(_) => cvl_ops::fence::fence(&name, How::Command)
                    .map(|at| format!("host {name} is fenced: {at}"))
                    .map_err(|e| format!("{e:#}; nothing is moved")),
            };
            log(
                if result.is_ok() {
                    "host_fenced"
                } else {
                    "host_not_fenced"
                },
                serde_json::json!({
                    "host": name, "appliances": appliances,
                    "message": result.as_ref().unwrap_or_else(|e| e),
                }),
            );
            let said = result.as_ref().unwrap_or_else(|e| e).clone();
            let new = self
                .fence_tried
                .insert(name.clone(), (Instant::now(), said.clone()))
                .is_none_or(|(_, before)| before != said);
            for deployment in appliances.keys().filter(|_| new) {
                match &result {
                    Ok(said) => {
                        entry(deployment, "fenced", said)?;
                        self.reporter.clear(deployment, "host_unreachable");
                    }
                    Err(why) => {
                        entry(deployment, "not fenced", why)?;
                        self.problem(deployment, "host_unreachable", why.clone());
                    }
                }
            }
            fenced |= result.is_ok();
        }
        Ok(fenced)
    }
}

/// Per deployment, its appliances (not stopped) on `host`.
fn on_host(state: &UtilityState, host: &str) -> BTreeMap<String, Vec<String>> {
    let mut by_deployment: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, d) in &state.deployments {
        for (path, vm) in &d.vms {
            if vm.alloc.host == host && vm.status != Status::Stopped {
                by_deployment
                    .entry(name.clone())
                    .or_default()
                    .push(path.0.clone());
            }
        }
    }
    by_deployment
}

/// A line in a deployment's history about one of its hosts.
fn entry(deployment: &str, outcome: &str, detail: &str) -> Result<()> {
    journal::history(journal::Entry {
        deployment,
        component: "",
        action: "host",
        from_version: None,
        to_version: None,
        outcome,
        detail,
    })
}
