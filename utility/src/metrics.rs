//! The utility service's metrics, rendered in Prometheus' text exposition
//! format (version 0.0.4): counters of what it did since it started, and
//! gauges of what it sees now (deployments, appliances by state, blacklist
//! violations, when each repository last answered).

use std::collections::BTreeMap;
use std::fmt::Write;

use cvl_planner::model::{Status, UtilityState};

/// What the service counts and remembers between rounds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Updates carried out and passing their health gate.
    pub updates_applied: u64,
    /// Updates that failed their health gate and were rolled back.
    pub updates_rolled_back: u64,
    /// Updates (or rollbacks) that failed otherwise.
    pub updates_failed: u64,
    pub resends_applied: u64,
    /// Poll rounds finished.
    pub rounds: u64,
    /// Per repository (after mirrors): the Unix time it last answered.
    pub last_poll: BTreeMap<String, u64>,
    /// Per repository: failures in a row now.
    pub poll_failures: BTreeMap<String, u32>,
    /// Blacklist violations seen in the last round.
    pub violations: u64,
}

impl Metrics {
    /// The text a Prometheus scrape gets, with the state's gauges.
    pub fn render(&self, state: &UtilityState) -> String {
        let mut out = String::new();
        family(
            &mut out,
            "cvl_deployments",
            "gauge",
            "Deployments in the state.",
            [(String::new(), state.deployments.len() as u64)],
        );
        let mut by_status: BTreeMap<&str, u64> = [
            Status::Starting,
            Status::Running,
            Status::Stopping,
            Status::Stopped,
            Status::Failed,
        ]
        .into_iter()
        .map(|s| (s.as_str(), 0))
        .collect();
        for d in state.deployments.values() {
            for vm in d.vms.values() {
                *by_status.entry(vm.status.as_str()).or_default() += 1;
            }
        }
        family(
            &mut out,
            "cvl_appliances",
            "gauge",
            "VM appliances in the state, by recorded status.",
            by_status
                .into_iter()
                .map(|(status, n)| (format!("{{status=\"{status}\"}}"), n)),
        );
        for (name, help, value) in [
            (
                "cvl_updates_applied_total",
                "Updates the service carried out that passed their health gate.",
                self.updates_applied,
            ),
            (
                "cvl_updates_rolled_back_total",
                "Updates that failed their health gate and were rolled back.",
                self.updates_rolled_back,
            ),
            (
                "cvl_updates_failed_total",
                "Updates or rollbacks that failed otherwise.",
                self.updates_failed,
            ),
            (
                "cvl_resends_applied_total",
                "Parameter resends the service carried out.",
                self.resends_applied,
            ),
            (
                "cvl_poll_rounds_total",
                "Rounds of polling the deployments' repositories.",
                self.rounds,
            ),
        ] {
            family(&mut out, name, "counter", help, [(String::new(), value)]);
        }
        family(
            &mut out,
            "cvl_blacklist_violations",
            "gauge",
            "Appliances running a version the blacklist bars.",
            [(String::new(), self.violations)],
        );
        family(
            &mut out,
            "cvl_repository_last_success_timestamp_seconds",
            "gauge",
            "When each repository last answered a poll (Unix time).",
            self.last_poll
                .iter()
                .map(|(repo, at)| (format!("{{repository=\"{}\"}}", label(repo)), *at)),
        );
        family(
            &mut out,
            "cvl_repository_poll_failures",
            "gauge",
            "Failed polls in a row, per repository.",
            self.poll_failures
                .iter()
                .map(|(repo, n)| (format!("{{repository=\"{}\"}}", label(repo)), u64::from(*n))),
        );
        out
    }
}

/// One metric family: its help and type, then a sample per label set.
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// A label value escaped as the format says (backslash, quote, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_with_help_and_escaped_labels() {
        let mut m = Metrics {
            updates_applied: 2,
            ..Metrics::default()
        };
        m.last_poll.insert("http://r/\"x\"".into(), 1700000000);
        let text = m.render(&UtilityState::default());
        assert!(text
            .contains("# TYPE cvl_updates_applied_total counter\ncvl_updates_applied_total 2\n"));
        assert!(text.contains("cvl_appliances{status=\"running\"} 0\n"));
        assert!(text.contains(
            "cvl_repository_last_success_timestamp_seconds{repository=\"http://r/\\\"x\\\"\"} 1700000000\n"
        ));
        // Every sample line belongs to a family declared before it.
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(declared.last().map(String::as_str), Some(name), "{line}");
            }
        }
    }
}
