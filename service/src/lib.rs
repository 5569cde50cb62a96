//! The utility service (`cvl utility run`), which keeps deployed appliances
//! up to date by itself (paper §5: updates "automatic, reliable, and even
//! mandatory"). Every interval it asks the repositories every deployment
//! imports whether they changed (a conditional request each), and plans
//! again each deployment that has something new: a repository, the
//! blacklist, its records changed by someone else, the sensitive values
//! in the user agent, or its policy now letting held work run. For each:
//!
//! 1. it plans from the newest allowed versions (the blacklist, and the
//!    versions that failed here before, barred) against the state;
//! 2. `cvl_utility::decide` says what it may do by itself: updates and
//!    resends of running appliances, never a start of one a person
//!    stopped, never a sensitive value a person applied put back; the rest
//!    waits for a person and is reported; the policy may hold it (auto off,
//!    outside its window) until it lets it run;
//! 3. it carries that out one appliance at a time in dependency order,
//!    holding the state's apply lock for each, and holds each update to
//!    its health gate: an appliance that does not become ready gets its
//!    previous version's program disks back (its data disks untouched), and
//!    the version is recorded as failed and never taken again.
//!
//! It also reports appliances running a barred version with no allowed one
//! to go to (and stops them when told to), finishes updates a killed
//! service left half done, logs one JSON line per event to stderr
//! ([`journal`]), records every action in the state's history, and feeds
//! the status page and `/metrics` ([`page`]).
//!
//! - [`poll`]: the repositories each deployment imports, asked whether they
//!   changed, with back-off.
//! - [`act`]: one deployment planned, decided and acted on; rollback;
//!   enforcing the blacklist.
//! - [`backups`]: data disks backed up by the deployments' policies.
//! - [`hosts`]: hosts that stop answering, reported (nothing moved).

pub mod act;
pub mod backups;
pub mod hosts;
pub mod journal;
pub mod page;
pub mod poll;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use cvl_planner::model::{ComponentPath, Policy, Status, UtilityState};
use cvl_repo::Settings;
use cvl_utility::decide;
use cvl_utility::metrics::Metrics;

use crate::journal::{log, Reporter};

/// How the service runs (`cvl utility run`'s options).
#[derive(Debug, Clone)]
pub struct Config {
    /// How often the repositories are asked.
    pub interval: Duration,
    /// Serve `/metrics` here.
    pub metrics: Option<SocketAddr>,
    /// Serve the status page here.
    pub http: Option<SocketAddr>,
    /// The token the status page asks for (needed off loopback).
    pub http_token: Option<Vec<u8>>,
    /// How often the status page's hosts are asked about their VMs.
    pub survey_interval: Duration,
    /// How long a host may stay silent before it is reported unreachable.
    pub host_dead_after: Duration,
    /// Stop appliances on a barred version no allowed one replaces.
    pub enforce_blacklist: bool,
    /// One round, then return.
    pub once: bool,
    /// Seconds an updated guest has to become ready (its health gate).
    pub ready_timeout: u64,
    /// Seconds a guest has to power off before QEMU is told to quit.
    pub stop_timeout: u64,
    /// How long an automatic change waits for the state's apply lock.
    pub lock_timeout: Duration,
    /// How many crashes it restarts before it leaves one to a person.
    pub restart_limit: decide::RestartLimit,
    /// How many pre-update snapshots each data disk keeps.
    pub keep_snapshots: u32,
    /// Wait while another service holds the state, then take over.
    pub standby: bool,
}

/// How a service names itself in the state's service lock.
const WHO: &str = "cvl utility run";

/// How the service ended.
#[derive(Debug)]
pub enum Ended {
    /// `--once`: its one round is done.
    Once,
    /// Another service already runs on this state (it holds its lock).
    AnotherRuns(String),
    /// Its hold on the state ended (a PostgreSQL session cut): it stopped
    /// before acting again.
    LostLock(String),
}

/// Runs the service: forever, or one round with `config.once`.
pub fn run(config: Config) -> Result<Ended> {
    let store = cvl_ops::state::open()?;
    let mut lock = match store.lock_service(WHO) {
        Ok(lock) => Some(lock),
        Err(cvl_state::StateError::ServiceRunning { .. }) if config.standby => None,
        Err(e @ cvl_state::StateError::ServiceRunning { .. }) => {
            return Ok(Ended::AnotherRuns(e.to_string()))
        }
        Err(e) => return Err(e.into()),
    };
    let metrics = Arc::new(Mutex::new(Metrics::default()));
    let page = Arc::new(page::Shared::default());
    // The status page and /metrics share a runtime and the snapshots the
    // publisher makes; neither opens the state per request.
    let web = if config.http.is_some() || config.metrics.is_some() {
        Some(cvl_utility::web::Web::start()?)
    } else {
        None
    };
    let mut http = None;
    let mut metrics_addr = None;
    // The hosts are asked about their VMs every survey interval: drift for
    // the page, and the crashes the service restarts.
    page::watch(page.clone(), config.survey_interval, config.host_dead_after)?;
    if let Some(web) = &web {
        page::feed(web.feed(), page.clone())?;
        if let Some(addr) = config.http {
            let console: Arc<cvl_utility::web::ConsoleReader> = Arc::new(page::console_tail);
            let config = cvl_utility::web::Config {
                addr,
                token: config.http_token.clone(),
            };
            http = Some(
                web.serve_page(config, console)
                    .map_err(|e| anyhow::anyhow!("cannot serve the status page on {addr}: {e}"))?,
            );
        }
        if let Some(addr) = config.metrics {
            let counters = metrics.clone();
            let render = move || counters.lock().unwrap_or_else(|e| e.into_inner()).clone();
            metrics_addr = Some(
                web.serve_metrics(addr, Arc::new(render))
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for --metrics: {e}"))?,
            );
        }
    }
    log(
        "started",
        serde_json::json!({
            "interval_s": config.interval.as_secs(),
            "metrics": metrics_addr.map(|a| a.to_string()),
            "http": http.map(|a| a.to_string()),
            "enforce_blacklist": config.enforce_blacklist,
        }),
    );
    // A standby waits for the active service's lock (its session ends
    // when it stops or dies), its page saying so.
    let mut lock = match lock.take() {
        Some(lock) => lock,
        None => standby(&store, &page)?,
    };
    drop(store);
    log(
        "active",
        serde_json::json!({ "message": "this service acts on the state" }),
    );
    page.update(|live| live.role = Some("active".to_string()));
    let mut service = Service {
        config,
        metrics,
        page,
        watcher: poll::Watcher::default(),
        reporter: Reporter::default(),
        evaluated: BTreeSet::new(),
        planned_at: HashMap::new(),
        retry: BTreeSet::new(),
        held: BTreeMap::new(),
        blacklist_seen: None,
        agent_seen: None,
        resume_pending: BTreeSet::new(),
        rounds: 0,
        seen: HashMap::new(),
        restarts: HashMap::new(),
        restart_failed: BTreeSet::new(),
        crashes_handled: SystemTime::UNIX_EPOCH,
        expiries: HashMap::new(),
        refused_by: HashMap::new(),
        backups: HashMap::new(),
        next_backup: None,
        unreachable: BTreeSet::new(),
        fence_tried: HashMap::new(),
    };
    let mut next_round = Instant::now();
    loop {
        // Never act without the lock: a session that ended (its connection
        // cut) may have let a standby take over.
        if !lock.held() {
            let why = "this service lost the state's service lock (its database session \
                       ended): another service may act now; it does nothing more";
            log("lost_lock", serde_json::json!({ "message": why }));
            return Ok(Ended::LostLock(why.to_string()));
        }
        if Instant::now() >= next_round {
            let started = Instant::now();
            if let Err(e) = service.round() {
                log(
                    "round_failed",
                    serde_json::json!({ "error": format!("{e:#}") }),
                );
            }
            if service.config.once {
                return Ok(Ended::Once);
            }
            // What the round freed goes back to the system (mimalloc keeps
            // it otherwise).
            // SAFETY: mi_collect only frees memory mimalloc no longer uses;
            // malloc_trim the same for the C allocator (SQLite's).
            unsafe {
                libmimalloc_sys::mi_collect(true);
                libc::malloc_trim(0);
            }
            // The next round after the interval, give or take a tenth.
            next_round = started + decide::backoff(service.config.interval, 0, poll::jitter());
        } else {
            // Woken by a survey that found a crash, or a host that went
            // silent or answers again.
            if let Err(e) = service.watch_hosts() {
                log(
                    "round_failed",
                    serde_json::json!({ "error": format!("{e:#}") }),
                );
            }
            if let Err(e) = service.restart_crashed() {
                log(
                    "round_failed",
                    serde_json::json!({ "error": format!("{e:#}") }),
                );
            }
            if let Err(e) = service.back_up_between_rounds() {
                log(
                    "backups_failed",
                    serde_json::json!({ "error": format!("{e:#}") }),
                );
            }
        }
        let mut left = next_round.saturating_duration_since(Instant::now());
        // A backup due before the next round: woken for it.
        if let Some(at) = service.next_backup {
            let now = unix(SystemTime::now());
            left = left.min(Duration::from_secs(at.saturating_sub(now).max(1)));
        }
        // A silent host: looked at again soon (its fencing retried, a
        // person's `cvl host fence` acted on).
        if !service.unreachable.is_empty() {
            left = left.min(service.config.host_dead_after.max(Duration::from_secs(1)));
        }
        service.page.wait_for_crash(left, service.crashes_handled);
    }
}

/// Waits as a standby until the service lock is free, then holds it: says
/// which service is active (log, status page) each time that changes.
fn standby(store: &cvl_state::Store, page: &page::Shared) -> Result<cvl_state::ApplyLock> {
    let mut said = String::new();
    loop {
        match store.lock_service(WHO) {
            Ok(lock) => return Ok(lock),
            Err(cvl_state::StateError::ServiceRunning { holder, .. }) => {
                if holder != said {
                    log(
                        "standby",
                        serde_json::json!({
                            "active": holder,
                            "message": "another service acts on this state: this one waits \
                                        and takes over when it ends",
                        }),
                    );
                    page.update(|live| live.role = Some(format!("standby (active: {holder})")));
                    said = holder;
                }
            }
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(STANDBY_POLL);
    }
}

/// How often a standby asks for the service lock.
const STANDBY_POLL: Duration = Duration::from_secs(1);

/// The service between rounds: what it watches and what it remembers.
pub struct Service {
    config: Config,
    metrics: Arc<Mutex<Metrics>>,
    /// What the status page shows of the service's own knowledge.
    page: Arc<page::Shared>,
    watcher: poll::Watcher,
    reporter: Reporter,
    /// Deployments planned at least once since the service started.
    evaluated: BTreeSet<String>,
    /// Each deployment's VMs (versions and statuses) when it was last
    /// planned: planned again once someone else changed them (what waits
    /// for a person may be done).
    planned_at: HashMap<String, u64>,
    /// Deployments to plan again next round though nothing changed (the
    /// apply lock was held).
    retry: BTreeSet<String>,
    /// Deployments whose automatic work their policy holds, with the policy
    /// that held it: planned again when the policy changes or lets it run
    /// (the window opens).
    held: BTreeMap<String, Policy>,
    /// The blacklist as last read.
    blacklist_seen: Option<String>,
    /// The user agent as last asked: (locked, generation).
    agent_seen: Option<(bool, u64)>,
    /// Deployments where a killed service left an update begun.
    resume_pending: BTreeSet<String>,
    /// Rounds run.
    rounds: u64,
    /// Per deployment: the sensitive values the service obtained from its
    /// own source, and what was applied then ([`decide::Seen`]).
    seen: HashMap<String, decide::Seen>,
    /// When the service restarted each crashed appliance (Unix seconds),
    /// for the burst limit and back-off.
    restarts: HashMap<(String, ComponentPath), Vec<u64>>,
    /// Appliances whose restart by the service failed (they died again
    /// while booting): tried again, with back-off, until the limit.
    restart_failed: BTreeSet<(String, ComponentPath)>,
    /// When the survey the service last acted on asked.
    crashes_handled: SystemTime,
    /// Per deployment: when the first of its signed repositories' timestamps
    /// expires. Past it the deployment is planned again (which refuses the
    /// repository as frozen, and says so).
    expiries: HashMap<String, SystemTime>,
    /// Per deployment: the repositories its last plan refused (as the
    /// metrics name them).
    refused_by: HashMap<String, BTreeSet<String>>,
    /// Per appliance backed up by policy: its backups as the service knows
    /// them (read from the store the first time).
    backups: HashMap<(String, ComponentPath), decide::BackupRecord>,
    /// When the next backup by policy falls due (unix seconds).
    next_backup: Option<u64>,
    /// The hosts reported unreachable (until they answer again).
    unreachable: BTreeSet<String>,
    /// When the service last ran each silent host's fence command, or
    /// found it had none, and what came of it (the history hears of each
    /// new outcome once).
    fence_tried: HashMap<String, (Instant, String)>,
}

impl Service {
    fn round(&mut self) -> Result<()> {
        let started = Instant::now();
        let state = cvl_ops::state::open()?.load()?;
        let home = cvl_repo::settings::default_home();
        let blacklist = cvl_repo::blacklist::Blacklist::load(&home).map_err(anyhow::Error::msg)?;
        let blacklist_text = serde_json::to_string(&blacklist)?;
        let blacklist_changed = self.blacklist_seen.as_ref() != Some(&blacklist_text);
        self.blacklist_seen = Some(blacklist_text);
        // Values rotated in the user agent: every deployment is planned
        // again (the service's own source changed).
        let agent = cvl_ops::secrets::agent_generation();
        let agent_changed = self.rounds > 0 && agent != self.agent_seen;
        self.agent_seen = agent;

        // Updates a killed service began: looked for once, when it starts.
        if self.rounds == 0 {
            self.resume_pending = act::started_updates()?;
        }
        self.rounds += 1;
        // Every deployment's repositories, each asked once.
        let base = Settings::from_env().map_err(anyhow::Error::msg)?;
        let mut workspaces = HashMap::new();
        let mut repos_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut settings_of: BTreeMap<String, Settings> = BTreeMap::new();
        for (name, d) in &state.deployments {
            let Some(source) = &d.source else { continue };
            match poll::deployment_settings(&base, source, &mut workspaces).and_then(|s| {
                let repos = self.watcher.repositories(source, &s)?;
                Ok((s, repos))
            }) {
                Ok((settings, repos)) => {
                    settings_of.insert(name.clone(), settings);
                    repos_of.insert(name.clone(), repos);
                }
                Err(e) => {
                    self.problem(name, "unreadable", format!("{e:#}"));
                }
            }
        }
        let wanted: BTreeSet<&String> = repos_of.values().flatten().collect();
        let repositories = wanted.len();
        let changed = self.watcher.poll(
            &wanted,
            &settings_of,
            &repos_of,
            self.config.interval,
            &self.metrics,
        );
        let polled = started.elapsed();
        let minute = decide::minute_of_day(SystemTime::now());
        let mut planned = 0;
        self.watch_hosts()?;
        // A host fenced now (or by a person): its appliances are recovered.
        let state = if self.fence_silent_hosts(&state)? {
            cvl_ops::state::open()?.load()?
        } else {
            state
        };
        let crashed = self.crashed(&state)?;

        for (name, settings) in &settings_of {
            let repos = &repos_of[name];
            let policy = &state.deployments[name].policy;
            let first = !self.evaluated.contains(name);
            let records = records_digest(&state, name);
            let changed_by_others = self.planned_at.get(name).is_some_and(|&d| d != records);
            let released = self
                .held
                .get(name)
                .is_some_and(|then| then != policy || decide::held(policy, minute).is_none());
            let restart = crashed.get(name).cloned().unwrap_or_default();
            let expired = self
                .expiries
                .get(name)
                .is_some_and(|at| *at <= SystemTime::now());
            let due = first
                || expired
                || !restart.is_empty()
                || blacklist_changed
                || agent_changed
                || released
                || self.retry.contains(name)
                || self.resume_pending.contains(name)
                || repos.iter().any(|r| changed.contains(r))
                || changed_by_others
                || interrupted_apply(&state, name)
                || on_fenced_host(&state, name);
            if !due {
                continue;
            }
            if released {
                log(
                    "released",
                    serde_json::json!({ "deployment": name, "policy": policy.to_string() }),
                );
            }
            self.evaluated.insert(name.clone());
            // As planned from: the service's own changes make it plan once
            // more next round (finding nothing), others' are never missed.
            self.planned_at.insert(name.clone(), records);
            self.retry.remove(name);
            let resume = self.resume_pending.remove(name);
            planned += 1;
            // A deployment that cannot be planned is tried again when
            // something it depends on changes, not every round.
            if let Err(e) =
                self.keep_up_to_date(name, settings, &blacklist, &state, resume, &restart)
            {
                self.problem(name, "failed", format!("{e:#}"));
            }
        }

        // Appliances on barred versions that no update took away.
        let state = if planned > 0 {
            cvl_ops::state::open()?.load()?
        } else {
            state
        };
        self.violations(&state, &blacklist);
        // Backups by policy, after the round's updates.
        if let Err(e) = self.back_up_due(&state) {
            log(
                "backups_failed",
                serde_json::json!({ "error": format!("{e:#}") }),
            );
        }
        self.metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rounds += 1;
        let known: BTreeSet<&String> = state.deployments.keys().collect();
        self.held.retain(|d, _| known.contains(d));
        self.page.update(|live| {
            live.last_round = Some(cvl_ops::state::now());
            live.pending.retain(|d, _| known.contains(d));
            live.held.retain(|d, _| known.contains(d));
            live.problems.retain(|d, _| known.contains(d));
        });
        log(
            "round",
            serde_json::json!({
                "deployments": settings_of.len(), "repositories": repositories,
                "changed": changed.len(), "planned": planned,
                "poll_s": polled.as_secs_f64(), "seconds": started.elapsed().as_secs_f64(),
            }),
        );
        Ok(())
    }

    /// Between rounds, when a survey found a crash: restarts what crashed
    /// in each deployment (and nothing else it would not do anyway).
    /// Also fences silent hosts, and recovers what fenced hosts ran.
    fn restart_crashed(&mut self) -> Result<()> {
        let mut state = cvl_ops::state::open()?.load()?;
        if self.fence_silent_hosts(&state)? {
            state = cvl_ops::state::open()?.load()?;
        }
        let mut crashed = self.crashed(&state)?;
        for name in state.deployments.keys() {
            if on_fenced_host(&state, name) {
                crashed.entry(name.clone()).or_default();
            }
        }
        if crashed.is_empty() {
            return Ok(());
        }
        let blacklist = cvl_repo::blacklist::Blacklist::load(&cvl_repo::settings::default_home())
            .map_err(anyhow::Error::msg)?;
        let base = Settings::from_env().map_err(anyhow::Error::msg)?;
        let mut workspaces = HashMap::new();
        for (name, components) in crashed {
            let Some(source) = state.deployments.get(&name).and_then(|d| d.source.clone()) else {
                continue;
            };
            let settings = match poll::deployment_settings(&base, &source, &mut workspaces) {
                Ok(settings) => settings,
                Err(e) => {
                    self.problem(&name, "unreadable", format!("{e:#}"));
                    continue;
                }
            };
            self.planned_at
                .insert(name.clone(), records_digest(&state, &name));
            if let Err(e) =
                self.keep_up_to_date(&name, &settings, &blacklist, &state, false, &components)
            {
                self.problem(&name, "failed", format!("{e:#}"));
            }
        }
        Ok(())
    }

    /// What the last survey found crashed and the service restarts now,
    /// by deployment: not what it restarted since that survey asked, not
    /// what waits out its back-off; what crashed too often is recorded
    /// failed and left to a person.
    fn crashed(
        &mut self,
        state: &UtilityState,
    ) -> Result<BTreeMap<String, BTreeSet<ComponentPath>>> {
        let crashes = self.page.crashes();
        let Some(asked_at) = crashes.asked_at else {
            return Ok(BTreeMap::new());
        };
        self.crashes_handled = asked_at;
        let asked = unix(asked_at);
        let now = unix(SystemTime::now());
        let mut out: BTreeMap<String, BTreeSet<ComponentPath>> = BTreeMap::new();
        let status = |d: &str, c: &ComponentPath| {
            state
                .deployments
                .get(d)
                .and_then(|dep| dep.vms.get(c))
                .map(|vm| vm.status)
        };
        // What a restart failed to bring up stays the service's to retry
        // while it is recorded failed (a person who acts on it takes it).
        self.restart_failed
            .retain(|(d, c)| status(d, c) == Some(Status::Failed));
        let failed_again: Vec<(String, ComponentPath)> =
            self.restart_failed.iter().cloned().collect();
        for (deployment, component) in crashes.vms.into_iter().chain(failed_again) {
            let recorded = status(&deployment, &component);
            let key = (deployment.clone(), component.clone());
            let retry = self.restart_failed.contains(&key);
            let before = self.restarts.get(&key).cloned().unwrap_or_default();
            let still = recorded == Some(Status::Running) || retry;
            if !still || (!retry && before.iter().any(|&t| t >= asked)) {
                continue;
            }
            if !state.deployments[&deployment].policy.restart {
                let said = format!(
                    "waits for a person: {deployment}/{} {}",
                    component.0,
                    decide::Wait::RestartOff
                );
                if self.reporter.report(&deployment, "crashed", said.clone()) {
                    journal::history(journal::Entry {
                        deployment: &deployment,
                        component: &component.0,
                        action: "report",
                        from_version: None,
                        to_version: None,
                        outcome: "pending",
                        detail: &said,
                    })?;
                }
                continue;
            }
            match decide::restart(&before, now, self.config.restart_limit) {
                decide::Restart::Now => {
                    out.entry(deployment).or_default().insert(component);
                }
                decide::Restart::After(_) => {}
                decide::Restart::GiveUp => self.give_up(&deployment, &component)?,
            }
        }
        Ok(out)
    }

    /// An appliance that crashed too often: recorded failed, reported,
    /// left to a person.
    fn give_up(&mut self, deployment: &str, component: &ComponentPath) -> Result<()> {
        let said = format!(
            "{deployment}/{} crashed {} times within {} s: recorded failed, not restarted again; \
             it waits for a person (its console: cvl status, the status page; then cvl apply)",
            component.0,
            self.config.restart_limit.burst + 1,
            self.config.restart_limit.window
        );
        cvl_ops::state::open()?.commit(&[cvl_planner::Change::VmStatus {
            deployment: deployment.to_string(),
            path: component.clone(),
            status: Status::Failed,
        }])?;
        journal::history(journal::Entry {
            deployment,
            component: &component.0,
            action: "restart",
            from_version: None,
            to_version: None,
            outcome: "gave up",
            detail: &said,
        })?;
        self.metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .restarts_given_up += 1;
        self.problem(deployment, "restart_gave_up", said);
        let key = (deployment.to_string(), component.clone());
        self.restarts.remove(&key);
        self.restart_failed.remove(&key);
        Ok(())
    }

    /// Reports (or with `--enforce-blacklist`, stops) the appliances that
    /// run a barred version.
    fn violations(&mut self, state: &UtilityState, blacklist: &cvl_repo::blacklist::Blacklist) {
        let violations = decide::violations(state, blacklist);
        self.metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .violations = violations.len() as u64;
        for v in &violations {
            let what = format!(
                "{}/{} runs version {} of {}, which the blacklist bars{}, and no allowed version \
                 is published",
                v.deployment,
                v.component.0,
                v.version,
                v.url,
                v.reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
            if self.config.enforce_blacklist {
                if let Err(e) = self.enforce(&v.deployment, &v.component, &what) {
                    self.problem(&v.deployment, "enforce_failed", format!("{e:#}"));
                }
            } else {
                self.reporter.report(&v.deployment, "violation", what);
            }
        }
    }

    /// A problem with a deployment: logged once, and shown on its page.
    fn problem(&mut self, deployment: &str, kind: &'static str, what: String) {
        self.page.update(|live| {
            live.problems.insert(deployment.to_string(), what.clone());
        });
        self.reporter.report(deployment, kind, what);
    }

    fn walk_options(&self) -> cvl_executor::apply::Options {
        cvl_executor::apply::Options {
            parallelism: 1,
            stop_timeout_secs: self.config.stop_timeout,
            ready_timeout_secs: self.config.ready_timeout,
            keep_snapshots: self.config.keep_snapshots,
            ..Default::default()
        }
    }
}

/// Seconds since the Unix epoch.
fn unix(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A digest of a deployment's VMs as recorded: component, version,
/// program and status of each.
/// Whether `deployment` has an appliance (not stopped) recorded on a
/// fenced host: one to recover.
fn on_fenced_host(state: &UtilityState, deployment: &str) -> bool {
    state.deployments.get(deployment).is_some_and(|d| {
        d.vms.values().any(|vm| {
            vm.status != cvl_planner::model::Status::Stopped
                && state
                    .hosts
                    .iter()
                    .any(|h| h.name == vm.alloc.host && h.fenced.is_some())
        })
    })
}

fn records_digest(state: &UtilityState, deployment: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    if let Some(d) = state.deployments.get(deployment) {
        for (path, vm) in &d.vms {
            path.0.hash(&mut hasher);
            vm.spec.appliance.version.hash(&mut hasher);
            vm.spec.appliance.digest.hash(&mut hasher);
            vm.status.as_str().hash(&mut hasher);
            // A person's resend changes a fingerprint and nothing else.
            for value in vm.spec.params.values() {
                if let cvl_planner::model::ParamValue::Sensitive { fingerprint, .. } = value {
                    fingerprint.hash(&mut hasher);
                }
            }
        }
    }
    hasher.finish()
}

/// Whether an apply left the deployment half done (VMs recorded starting
/// or stopping: it was killed, or it runs now).
fn interrupted_apply(state: &UtilityState, deployment: &str) -> bool {
    state.deployments.get(deployment).is_some_and(|d| {
        d.vms
            .values()
            .any(|vm| matches!(vm.status, Status::Starting | Status::Stopping))
    })
}
