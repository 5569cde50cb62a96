//! Hosts that stop answering: the survey ([`page`](crate::page)) says
//! which have been silent for `--host-dead-after`; the service reports each
//! once when it goes silent and once when it answers again, in the log,
//! the history of every deployment with appliances there, `/metrics` and
//! the pages. Nothing is moved or restarted on a silence alone: a host that
//! does not answer may still run its VMs (a network split), and without
//! fencing, which is not built, a copy started elsewhere could run twice.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use cvl_planner::model::Status;

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
        let on = |host: &str| -> BTreeMap<String, Vec<String>> {
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
        };
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
