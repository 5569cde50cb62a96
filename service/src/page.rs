//! What feeds the service's HTTP endpoints (`cvl-utility`'s `web`: the
//! status page and `/metrics`): a publisher thread reads the state
//! (read-only) when it changes, with its recent history, the blacklist and
//! what the service and the host survey know, and publishes that as a
//! snapshot; a survey thread asks every host about its VMs (drift, last
//! contact) every few seconds; consoles are read through the host agent
//! when an appliance's page asks.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cvl_executor::protocol::{Request, Response, VmId};
use cvl_executor::transport::Links;
use cvl_planner::model::ComponentPath;
use cvl_utility::web::{Feed, HostSeen, Live, Snapshot, Survey};

use crate::journal::log;

/// How many history entries the pages draw from.
const HISTORY: u32 = 500;
/// How often the state's version is looked at.
const LOOK: Duration = Duration::from_millis(500);
/// How soon a snapshot that could not be read is tried again.
const RETRY: Duration = Duration::from_millis(100);

/// What the service shares with its pages: its own knowledge, what the
/// survey found, and a count of changes to each (so the publisher knows
/// to publish).
#[derive(Default)]
pub struct Shared {
    live: Mutex<(u64, Live)>,
    survey: Mutex<(u64, Survey)>,
    /// What the last survey found crashed, and when it asked.
    crashes: Mutex<Crashes>,
    /// Wakes the service's loop when a survey finds a crash.
    woken: std::sync::Condvar,
}

/// Appliances recorded running whose host answered that their QEMU is
/// gone: crashed, killed, or their host restarted.
#[derive(Debug, Clone, Default)]
pub struct Crashes {
    /// When the survey that found them asked (none yet: `None`).
    pub asked_at: Option<std::time::SystemTime>,
    pub vms: std::collections::BTreeSet<(String, ComponentPath)>,
    /// The hosts silent for `--host-dead-after` or longer, with the seconds
    /// and the last error, and when that set last changed (a survey's
    /// asking time).
    pub unreachable: std::collections::BTreeMap<String, (u64, String)>,
    pub unreachable_changed: Option<std::time::SystemTime>,
}

impl Shared {
    /// Changes what the service knows.
    pub fn update(&self, f: impl FnOnce(&mut Live)) {
        let mut guard = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let before = guard.1.clone();
        f(&mut guard.1);
        if guard.1 != before {
            guard.0 += 1;
        }
    }

    /// What the last survey found crashed.
    pub fn crashes(&self) -> Crashes {
        self.crashes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits up to `timeout` for a survey to find a crash or a host that
    /// became unreachable or answers again; whether one did (what was found
    /// before `since` does not count).
    pub fn wait_for_crash(&self, timeout: Duration, since: std::time::SystemTime) -> bool {
        let deadline = Instant::now() + timeout;
        let mut crashes = self.crashes.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if !crashes.vms.is_empty() && crashes.asked_at.is_some_and(|at| at > since) {
                return true;
            }
            if crashes.unreachable_changed.is_some_and(|at| at > since) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            crashes = self
                .woken
                .wait_timeout(crashes, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// What the last survey found.
    pub fn survey(&self) -> Survey {
        self.survey
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }
}

/// The token for a non-loopback page, from a file of the user's only:
/// its first line, at least 16 bytes.
pub fn read_token(path: &Path) -> Result<Vec<u8>> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("--http-token-file {}: cannot read it", path.display()))?;
    if meta.mode() & 0o077 != 0 {
        bail!(
            "--http-token-file {}: others can read it (mode {:o}); `chmod 600 {}` and try again",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        );
    }
    if meta.len() > 4096 {
        bail!(
            "--http-token-file {}: more than 4 KiB; a token is one line",
            path.display()
        );
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let token = first.strip_suffix(b"\r").unwrap_or(first).to_vec();
    if token.len() < 16 {
        bail!(
            "--http-token-file {}: the token is shorter than 16 bytes; make one with \
             `head -c 24 /dev/urandom | base64 > {}`",
            path.display(),
            path.display()
        );
    }
    Ok(token)
}

/// Asks the hosts about their VMs every `every`, from a thread of its own:
/// what the status page shows as drift, and the crashes the service
/// restarts.
pub fn watch(shared: Arc<Shared>, every: Duration, dead_after: Duration) -> Result<()> {
    std::thread::Builder::new()
        .name("survey".into())
        .spawn(move || survey(&shared, every, dead_after))?;
    Ok(())
}

/// Publishes the first snapshot before returning (a page is never drawn
/// from nothing: a failed read is tried again at once, for up to a
/// second), then keeps publishing from a thread of its own.
pub fn feed(feed: Feed, shared: Arc<Shared>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut seen = None;
    loop {
        let now = generations(&shared);
        match snapshot(&shared) {
            Ok(first) => {
                feed.publish(first);
                seen = Some(now);
                break;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(RETRY),
            Err(e) => {
                log(
                    "status_page_failed",
                    serde_json::json!({ "error": format!("{e:#}") }),
                );
                break;
            }
        }
    }
    std::thread::Builder::new()
        .name("status-publisher".into())
        .spawn(move || publish(&feed, &shared, seen))?;
    Ok(())
}

/// Publishes a snapshot whenever the state, the service's knowledge or the
/// survey changed; one that cannot be read is tried again soon, not at the
/// next change.
fn publish(feed: &Feed, shared: &Shared, mut seen: Option<Generations>) {
    let mut failing = false;
    loop {
        // Taken before the read: a change while reading is seen next time.
        let now = generations(shared);
        if seen.as_ref() != Some(&now) {
            match snapshot(shared) {
                Ok(snapshot) => {
                    feed.publish(snapshot);
                    seen = Some(now);
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        log(
                            "status_page_failed",
                            serde_json::json!({ "error": format!("{e:#}") }),
                        );
                    }
                    failing = true;
                    std::thread::sleep(RETRY);
                    continue;
                }
            }
        }
        std::thread::sleep(LOOK);
    }
}

/// What tells that a snapshot is out of date: the state's version, and
/// the count of changes to the service's knowledge and to the survey.
type Generations = (Option<String>, u64, u64);

fn generations(shared: &Shared) -> Generations {
    (
        cvl_ops::state::version(),
        shared.live.lock().unwrap_or_else(|e| e.into_inner()).0,
        shared.survey.lock().unwrap_or_else(|e| e.into_inner()).0,
    )
}

fn snapshot(shared: &Shared) -> Result<Snapshot> {
    let Some(mut store) = cvl_ops::state::open_read_only()? else {
        return Ok(Snapshot {
            hosts: cvl_ops::hosts::hosts_or_local(&[]),
            taken_at: cvl_ops::state::now(),
            ..Snapshot::default()
        });
    };
    let state = store.load()?;
    let history = store.history(None, HISTORY)?;
    drop(store);
    let blacklist = cvl_repo::blacklist::Blacklist::load(&cvl_repo::settings::default_home())
        .unwrap_or_default();
    Ok(Snapshot {
        hosts: cvl_ops::hosts::hosts_or_local(&state.hosts),
        state,
        history,
        blacklist,
        live: shared
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone(),
        survey: shared.survey(),
        taken_at: cvl_ops::state::now(),
    })
}

/// Asks the hosts about their VMs every `every`: what drifted, and when
/// each last answered.
fn survey(shared: &Shared, every: Duration, dead_after: Duration) {
    let mut last_contact: std::collections::BTreeMap<String, String> = Default::default();
    let mut last_answer: std::collections::BTreeMap<String, u64> = Default::default();
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let watching_since = unix(std::time::SystemTime::now());
    loop {
        let started = Instant::now();
        let asked_at = std::time::SystemTime::now();
        let asked =
            cvl_ops::state::read().and_then(|state| cvl_ops::survey::survey(&state, None, false));
        if let Ok((mut seen, answered)) = asked {
            // What a person stopped while the hosts were asked is not a crash.
            cvl_ops::survey::settle_now(&mut seen);
            let mut survey = Survey::default();
            let now = unix(std::time::SystemTime::now());
            let mut unreachable = std::collections::BTreeMap::new();
            for (host, answer) in &answered {
                match answer {
                    Ok(()) => {
                        last_answer.insert(host.clone(), unix(asked_at));
                    }
                    Err(e) => {
                        if let Some(silent) = cvl_utility::decide::unreachable_for(
                            last_answer.get(host).copied(),
                            watching_since,
                            now,
                            dead_after.as_secs(),
                        ) {
                            unreachable.insert(host.clone(), (silent, e.clone()));
                        }
                    }
                }
            }
            let crashed: std::collections::BTreeSet<(String, ComponentPath)> = seen
                .iter()
                .filter(|s| s.crashed())
                .map(|s| (s.deployment.clone(), ComponentPath(s.component.clone())))
                .collect();
            {
                let mut crashes = shared.crashes.lock().unwrap_or_else(|e| e.into_inner());
                let changed = crashes
                    .unreachable
                    .keys()
                    .ne(unreachable.keys())
                    .then_some(asked_at)
                    .or(crashes.unreachable_changed);
                let woken = !crashed.is_empty() || changed != crashes.unreachable_changed;
                *crashes = Crashes {
                    asked_at: Some(asked_at),
                    vms: crashed,
                    unreachable: unreachable.clone(),
                    unreachable_changed: changed,
                };
                if woken {
                    shared.woken.notify_all();
                }
            }
            for s in seen {
                if !s.drift.is_empty() && s.deployment != "-" {
                    survey
                        .drift
                        .insert((s.deployment, ComponentPath(s.component)), s.drift);
                }
            }
            for (host, answer) in answered {
                let error = match answer {
                    Ok(()) => {
                        last_contact.insert(host.clone(), cvl_ops::state::now());
                        None
                    }
                    Err(e) => Some(e),
                };
                survey.hosts.insert(
                    host.clone(),
                    HostSeen {
                        last_contact: last_contact.get(&host).cloned(),
                        error,
                        unreachable_for: unreachable.get(&host).map(|(silent, _)| *silent),
                    },
                );
            }
            let mut guard = shared.survey.lock().unwrap_or_else(|e| e.into_inner());
            // Contact times change every time: published only when
            // something else did, or a minute passed.
            let changed = guard.1.drift != survey.drift
                || guard
                    .1
                    .hosts
                    .iter()
                    .map(|(h, s)| (h, &s.error, s.unreachable_for.is_some()))
                    .ne(survey
                        .hosts
                        .iter()
                        .map(|(h, s)| (h, &s.error, s.unreachable_for.is_some())));
            let stale = guard.1.hosts.values().any(|s| {
                s.last_contact.as_deref().is_some_and(|t| {
                    humantime::parse_rfc3339(t)
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(60))
                })
            });
            if changed || stale || guard.0 == 0 {
                guard.1 = survey;
                guard.0 += 1;
            }
        }
        std::thread::sleep(every.saturating_sub(started.elapsed()));
    }
}

/// An appliance's console tail, from its host's agent.
pub fn console_tail(deployment: &str, component: &str, host: &str) -> Result<String, String> {
    let state = cvl_ops::state::read().map_err(|e| format!("{e:#}"))?;
    let connector = cvl_ops::hosts::connector(&state).map_err(|e| format!("{e:#}"))?;
    let links = Links::new(&connector);
    let request = Request::Console {
        vm: VmId {
            deployment: deployment.to_string(),
            path: component.to_string(),
        },
        lines: 40,
    };
    match links.call(host, &request)? {
        Response::Console { lines } if lines.is_empty() => Ok("(empty)".to_string()),
        Response::Console { lines } => Ok(lines.join("\n")),
        Response::Error { message, .. } => Err(message),
        other => Err(format!("host {host} answered {other:?}")),
    }
}
