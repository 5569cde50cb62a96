//! The utility service's metrics, in the OpenMetrics text format (which
//! Prometheus scrapes), encoded by `prometheus-client`: counters of what
//! the service did since it started, and gauges of what it sees now
//! (deployments, appliances by state, blacklist violations, when each
//! repository last answered, the moves in the recent history and each
//! appliance's last). Rendered from the service's counters and its latest
//! snapshot of the state and its history: a scrape never opens the state.

use std::collections::BTreeMap;

use cvl_planner::model::{HistoryEntry, MoveFigures, Status, UtilityState};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
    /// Crashed appliances started again.
    pub restarts: u64,
    /// Crashed appliances given up on (crashed too often).
    pub restarts_given_up: u64,
    /// Repositories refused when last read, by repository: the attack.
    pub refused: BTreeMap<String, String>,
    /// Backups the service took by policy, and those that failed.
    pub backups_taken: u64,
    pub backup_failures: u64,
    /// Per appliance (`DEPLOYMENT/PATH`) backed up by policy: when its
    /// newest restore point was taken (Unix seconds) and its size.
    pub last_backup: BTreeMap<String, (u64, u64)>,
    /// The hosts silent for `--host-dead-after` or longer.
    pub hosts_unreachable: std::collections::BTreeSet<String>,
}

type Labels = Vec<(&'static str, String)>;

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let g = Gauge::<i64>::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

fn gauges<'a>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) {
    let family = Family::<Labels, Gauge>::default();
    for (key, value) in values {
        family
            .get_or_create(&vec![(label, key.to_string())])
            .set(i64::try_from(value).unwrap_or(i64::MAX));
    }
    registry.register(name, help, family);
}

impl Metrics {
    /// The text a scrape gets: the counters, and the gauges of `state`.
    /// The metrics, from these counters, the state and its recent history
    /// (oldest first, as the status page's snapshot holds it).
    pub fn render(&self, state: &UtilityState, history: &[HistoryEntry]) -> String {
        let mut registry = Registry::default();
        gauge(
            &mut registry,
            "cvl_deployments",
            "Deployments in the state",
            state.deployments.len() as u64,
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
        gauges(
            &mut registry,
            "cvl_appliances",
            "VM appliances in the state, by recorded status",
            "status",
            by_status,
        );
        for (name, help, value) in [
            (
                "cvl_updates_applied",
                "Updates the service carried out that passed their health gate",
                self.updates_applied,
            ),
            (
                "cvl_updates_rolled_back",
                "Updates that failed their health gate and were rolled back",
                self.updates_rolled_back,
            ),
            (
                "cvl_updates_failed",
                "Updates or rollbacks that failed otherwise",
                self.updates_failed,
            ),
            (
                "cvl_resends_applied",
                "Parameter resends the service carried out",
                self.resends_applied,
            ),
            (
                "cvl_poll_rounds",
                "Rounds of polling the deployments' repositories",
                self.rounds,
            ),
            (
                "cvl_restarts",
                "Crashed appliances the service started again",
                self.restarts,
            ),
            (
                "cvl_restarts_given_up",
                "Crashed appliances that crashed too often and were left to a person",
                self.restarts_given_up,
            ),
            (
                "cvl_backups",
                "Backups the service took by policy",
                self.backups_taken,
            ),
            (
                "cvl_backup_failures",
                "Backups by policy that failed (each is retried)",
                self.backup_failures,
            ),
        ] {
            counter(&mut registry, name, help, value);
        }
        gauge(
            &mut registry,
            "cvl_blacklist_violations",
            "Appliances running a version the blacklist bars",
            self.violations,
        );
        gauges(
            &mut registry,
            "cvl_repository_last_success_timestamp_seconds",
            "When each repository last answered a poll (Unix time)",
            "repository",
            self.last_poll.iter().map(|(r, at)| (r.as_str(), *at)),
        );
        gauges(
            &mut registry,
            "cvl_repository_poll_failures",
            "Failed polls in a row, per repository",
            "repository",
            self.poll_failures
                .iter()
                .map(|(r, n)| (r.as_str(), u64::from(*n))),
        );
        let refused = Family::<Labels, Gauge>::default();
        for (repository, attack) in &self.refused {
            refused
                .get_or_create(&vec![
                    ("repository", repository.clone()),
                    ("attack", attack.clone()),
                ])
                .set(1);
        }
        registry.register(
            "cvl_repository_refused",
            "Repositories refused when last read (1), by the attack their metadata amounts to",
            refused,
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        gauges(
            &mut registry,
            "cvl_backup_last_success_timestamp_seconds",
            "When each appliance's newest restore point was taken (Unix time)",
            "appliance",
            self.last_backup
                .iter()
                .map(|(a, (at, _))| (a.as_str(), *at)),
        );
        gauges(
            &mut registry,
            "cvl_backup_age_seconds",
            "How old each appliance's newest restore point is",
            "appliance",
            self.last_backup
                .iter()
                .map(|(a, (at, _))| (a.as_str(), now.saturating_sub(*at))),
        );
        gauges(
            &mut registry,
            "cvl_backup_last_size_bytes",
            "What each appliance's newest restore point added to its store",
            "appliance",
            self.last_backup
                .iter()
                .map(|(a, (_, size))| (a.as_str(), *size)),
        );
        let mut hosts: std::collections::BTreeSet<&str> =
            state.hosts.iter().map(|h| h.name.as_str()).collect();
        hosts.extend(self.hosts_unreachable.iter().map(String::as_str));
        gauges(
            &mut registry,
            "cvl_host_unreachable",
            "Hosts that have not answered for --host-dead-after (1) or answer (0)",
            "host",
            hosts
                .into_iter()
                .map(|h| (h, u64::from(self.hosts_unreachable.contains(h)))),
        );
        moves(&mut registry, history);
        let mut out = String::new();
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}

/// The moves in the recent history (`cvl move`, `cvl host drain`, a
/// person's or the service's), by how, and each appliance's last: how long
/// it took, how long a live one paused the guest, the bytes it sent.
fn moves(registry: &mut Registry, history: &[HistoryEntry]) {
    let mut by_how: BTreeMap<&str, u64> = [("live", 0), ("offline", 0)].into_iter().collect();
    let mut last: BTreeMap<String, &MoveFigures> = BTreeMap::new();
    for entry in history {
        let Some(moved) = &entry.moved else { continue };
        *by_how
            .entry(if moved.live { "live" } else { "offline" })
            .or_default() += 1;
        last.insert(format!("{}/{}", entry.deployment, entry.component), moved);
    }
    gauges(
        registry,
        "cvl_moves",
        "Moves between hosts in the recent history (the status page's), by how",
        "how",
        by_how,
    );
    gauges(
        registry,
        "cvl_move_last_duration_milliseconds",
        "How long each appliance's last move took, to running on its new host",
        "appliance",
        last.iter().map(|(a, m)| (a.as_str(), m.millis)),
    );
    gauges(
        registry,
        "cvl_move_last_downtime_milliseconds",
        "How long each appliance's last live move paused its guest (QEMU's figure)",
        "appliance",
        last.iter()
            .filter_map(|(a, m)| Some((a.as_str(), m.downtime_ms?))),
    );
    gauges(
        registry,
        "cvl_move_last_bytes",
        "What each appliance's last live move sent between the hosts",
        "appliance",
        last.iter()
            .filter_map(|(a, m)| Some((a.as_str(), m.bytes?))),
    );
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
        let moved = |live, millis, bytes, downtime_ms| HistoryEntry {
            at: "2026-12-07T00:00:00Z".into(),
            deployment: "Acme".into(),
            component: "l".into(),
            actor: "cvl move".into(),
            action: "move".into(),
            from_version: None,
            to_version: None,
            outcome: "done".into(),
            detail: String::new(),
            moved: Some(MoveFigures {
                from: "h1".into(),
                to: "h2".into(),
                live,
                millis,
                bytes,
                downtime_ms,
            }),
        };
        let history = [
            moved(false, 20_000, None, None),
            moved(true, 9_000, Some(109_000_000), Some(11)),
        ];
        let text = m.render(&UtilityState::default(), &history);
        assert!(
            text.contains("# TYPE cvl_updates_applied counter\n"),
            "{text}"
        );
        assert!(text.contains("\ncvl_updates_applied_total 2\n"), "{text}");
        assert!(
            text.contains("cvl_appliances{status=\"running\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "cvl_repository_last_success_timestamp_seconds{repository=\"http://r/\\\"x\\\"\"} 1700000000\n"
            ),
            "{text}"
        );
        // The moves: both counted, the last one's figures.
        assert!(text.contains("cvl_moves{how=\"live\"} 1\n"), "{text}");
        assert!(text.contains("cvl_moves{how=\"offline\"} 1\n"), "{text}");
        assert!(
            text.contains("cvl_move_last_duration_milliseconds{appliance=\"Acme/l\"} 9000\n"),
            "{text}"
        );
        assert!(
            text.contains("cvl_move_last_downtime_milliseconds{appliance=\"Acme/l\"} 11\n"),
            "{text}"
        );
        assert!(
            text.contains("cvl_move_last_bytes{appliance=\"Acme/l\"} 109000000\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
        // Every sample line belongs to a family declared before it.
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = declared.last().unwrap();
                assert!(name.starts_with(family.as_str()), "{line}");
            }
        }
    }
}
