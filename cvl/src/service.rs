//! `cvl utility run`: the utility service, which keeps deployed appliances
//! up to date by itself (paper §5: updates "automatic, reliable, and even
//! mandatory"). Every `--interval` it asks the repositories every
//! deployment imports whether they changed (a conditional request each),
//! and for a deployment whose repositories did:
//!
//! 1. plans it from the newest allowed versions (the blacklist, and the
//!    versions that failed here before, barred) against the state;
//! 2. carries out the updates and resends only ([`cvl_utility::decide`]:
//!    starts, stops, removals and moves wait for a person and are reported),
//!    under the deployment's policy, one appliance at a time in dependency
//!    order, holding the state's apply lock for each;
//! 3. holds each update to its health gate: an appliance that does not
//!    become ready gets its previous version's program disks back (its data
//!    disks untouched), and the version is recorded as failed and never
//!    taken again (a newer one is).
//!
//! It also reports appliances running a barred version with no allowed one
//! to go to (and stops them with `--enforce-blacklist`), finishes updates a
//! killed service left half done, logs one JSON line per event to stderr,
//! records every action in the state's history, and serves Prometheus
//! metrics when asked. The decisions are `cvl-utility`'s pure functions;
//! this module wires them to the planner, the executor and the state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use cvl_planner::model::{ComponentPath, DeploymentSource, FailedVersion, HistoryEntry, Status};
use cvl_planner::plan::{ActionKind, Plan, Reason};
use cvl_planner::Change;
use cvl_repo::fetch::{Polled, Validators};
use cvl_repo::{Location, LockMode, Settings};
use cvl_utility::decide;
use cvl_utility::metrics::Metrics;

use crate::apply;
use crate::deploy::{self, PlanInput};
use crate::utility;

#[derive(clap::Subcommand)]
pub enum UtilityCommand {
    /// Run the utility service in the foreground (for systemd; see
    /// docs/utility.md).
    #[command(
        after_help = "Every --interval it asks each deployment's repositories whether they \
        changed (HTTP If-None-Match / If-Modified-Since; a folder's index by its time), plans \
        the deployments whose repositories did from the newest allowed versions, and carries \
        out their updates and resends, one appliance at a time, each held to its health gate \
        (not ready in --ready-timeout: its previous version goes back, data disks untouched, \
        and that version is never taken again). Starts, stops and removals wait for a person \
        and are reported. What it may do to a deployment: `cvl policy set`. What it did: `cvl \
        history`. One JSON line per event on stderr.\n\n\
        Sensitive values come from the environment (CVL_SECRET_...) or the user agent's \
        socket; a deployment whose values cannot be had is reported and skipped.\n\n\
        Exit codes: 0 after --once, 2 when it cannot start (another service on the state).\n\n\
        The status page (--http) shows every deployment and appliance with its state (running, \
        stopped, drift, blacklisted, update pending, rolled back), each deployment's VANs as a \
        picture, the hosts' load, and the same as JSON under /api/ (format_version 1); an open \
        page follows changes by itself. Off loopback it needs --http-token-file.\n\n\
        Examples:\n  cvl utility run --interval 5m --metrics 127.0.0.1:9464\n  \
        cvl utility run --http 127.0.0.1:8080\n  \
        cvl utility run --http 0.0.0.0:8443 --http-token-file /etc/cvl/status-token\n  \
        cvl utility run --once   (one round, from cron)"
    )]
    Run(ServiceArgs),
}

#[derive(clap::Args)]
pub struct ServiceArgs {
    /// How often to ask the repositories (`30s`, `5m`; a bare number is
    /// seconds).
    #[arg(long, default_value = "30s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Serve Prometheus text metrics at http://ADDR/metrics (a loopback
    /// address: 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Serve the status page (deployments, their VANs as pictures, hosts,
    /// and the same as JSON under /api/) at http://ADDR/ (127.0.0.1:8080;
    /// port 0 picks one, logged at start). Read-only.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// The token the status page asks of every request (`Authorization:
    /// Bearer TOKEN`, or the password of the browser's login), from a file
    /// only you can read; needed when --http is not a loopback address.
    #[arg(long, value_name = "FILE", requires = "http")]
    pub http_token_file: Option<PathBuf>,
    /// How often the status page's hosts are asked about their VMs (drift,
    /// last contact).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub survey_interval: Duration,
    /// Stop appliances that run a barred version when no allowed version is
    /// published (without it they are only reported).
    #[arg(long)]
    pub enforce_blacklist: bool,
    /// One round, then exit.
    #[arg(long)]
    pub once: bool,
    /// Seconds an updated guest has to become ready (its health gate).
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub ready_timeout: u64,
    /// Seconds a guest has to power off before QEMU is told to quit.
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    pub stop_timeout: u64,
    /// How long an automatic change waits for the state's apply lock (a
    /// person's `cvl apply`) before it tries again next round.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub lock_timeout: Duration,
}

/// `30s`, `5m`, or a bare number of seconds.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = match text.trim().parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("`{text}` is not a duration like 30s or 5m: {e}"))?,
    };
    if interval < Duration::from_secs(1) {
        return Err("the interval must be at least a second".to_string());
    }
    Ok(interval)
}

pub fn run(command: UtilityCommand) -> Result<ExitCode> {
    let UtilityCommand::Run(args) = command;
    if let Some(addr) = args.metrics {
        if !addr.ip().is_loopback() {
            bail!("--metrics {addr}: serve metrics on a loopback address (127.0.0.1:PORT), behind a proxy that guards them elsewhere");
        }
    }
    let token = match (&args.http, &args.http_token_file) {
        (_, Some(file)) => Some(crate::status_page::read_token(file)?),
        (Some(addr), None) if !addr.ip().is_loopback() => {
            eprintln!(
                "error: --http {addr}: a status page off loopback needs a token: \
                 --http-token-file FILE (a line of at least 16 bytes, mode 600), or use \
                 --http 127.0.0.1:{}",
                addr.port()
            );
            return Ok(ExitCode::from(2));
        }
        _ => None,
    };
    let store = utility::open_state()?;
    let _service = match store.lock_service("cvl utility run") {
        Ok(lock) => lock,
        Err(e @ cvl_state::StateError::ServiceRunning { .. }) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    drop(store);
    let metrics = Arc::new(Mutex::new(Metrics::default()));
    if let Some(addr) = args.metrics {
        serve_metrics(addr, metrics.clone())?;
    }
    let page = Arc::new(crate::status_page::Shared::default());
    let http = match args.http {
        Some(addr) => Some(crate::status_page::start(
            addr,
            token,
            page.clone(),
            args.survey_interval,
        )?),
        None => None,
    };
    log(
        "started",
        serde_json::json!({
            "interval_s": args.interval.as_secs(),
            "metrics": args.metrics.map(|a| a.to_string()),
            "http": http.map(|a| a.to_string()),
            "enforce_blacklist": args.enforce_blacklist,
        }),
    );
    let mut service = Service {
        args,
        metrics,
        page,
        repos: HashMap::new(),
        reported: HashMap::new(),
        evaluated: BTreeSet::new(),
        planned_at: HashMap::new(),
        retry: BTreeSet::new(),
        blacklist_seen: None,
        resume_pending: BTreeSet::new(),
        rounds: 0,
        fetchers: HashMap::new(),
        lock_repos: HashMap::new(),
    };
    loop {
        let started = Instant::now();
        if let Err(e) = service.round() {
            log(
                "round_failed",
                serde_json::json!({ "error": format!("{e:#}") }),
            );
        }
        if service.args.once {
            return Ok(ExitCode::SUCCESS);
        }
        // Idle until the next round: what the round freed goes back to the
        // system (mimalloc keeps it otherwise).
        // SAFETY: mi_collect only frees memory mimalloc no longer uses;
        // malloc_trim the same for the C allocator (SQLite's).
        unsafe {
            mi_collect(true);
            libc::malloc_trim(0);
        }
        // The next round after the interval, give or take a tenth.
        let wait = decide::backoff(service.args.interval, 0, jitter());
        std::thread::sleep(wait.saturating_sub(started.elapsed()));
    }
}

/// How many repositories are asked at once.
const POLL_WORKERS: usize = 8;

extern "C" {
    /// mimalloc's (the allocator `cvl` runs on, see main.rs): returns the
    /// memory it holds free to the system.
    fn mi_collect(force: bool);
}

/// A file's size and modification time (seconds, nanoseconds), to tell
/// whether it changed.
type FileSeen = (u64, i64, i64);

/// A repository as the service watches it.
#[derive(Default)]
struct Repo {
    validators: Validators,
    failures: u32,
    /// Not asked again before this.
    next: Option<Instant>,
}

struct Service {
    args: ServiceArgs,
    metrics: Arc<Mutex<Metrics>>,
    /// What the status page shows of the service's own knowledge.
    page: Arc<crate::status_page::Shared>,
    /// By location URL (after mirrors).
    repos: HashMap<String, Repo>,
    /// What was last reported per deployment and kind (not said again
    /// while it stays the same).
    reported: HashMap<(String, &'static str), String>,
    /// Deployments planned at least once since the service started.
    evaluated: BTreeSet<String>,
    /// Each deployment's VMs (versions and statuses) when it was last
    /// planned: planned again once someone else changed them (what waits
    /// for a person may be done).
    planned_at: HashMap<String, u64>,
    /// Deployments to plan again next round though nothing changed (the
    /// apply lock was held).
    retry: BTreeSet<String>,
    /// The blacklist as last read.
    blacklist_seen: Option<String>,
    /// Deployments where a killed service left an update begun.
    resume_pending: BTreeSet<String>,
    /// Rounds run.
    rounds: u64,
    /// One fetcher per request timeout, kept across rounds (its HTTP
    /// connections are reused).
    fetchers: HashMap<u64, Arc<cvl_repo::Fetcher>>,
    /// Each deployment's repositories, by its `cvl.lock` as last read
    /// (path, size, modification time), read again only when it changes.
    lock_repos: HashMap<PathBuf, (FileSeen, Vec<String>)>,
}

impl Service {
    fn round(&mut self) -> Result<()> {
        let started = Instant::now();
        let state = utility::open_state()?.load()?;
        let home = cvl_repo::settings::default_home();
        let blacklist = cvl_repo::blacklist::Blacklist::load(&home).map_err(anyhow::Error::msg)?;
        let blacklist_text = serde_json::to_string(&blacklist)?;
        let blacklist_changed = self.blacklist_seen.as_ref() != Some(&blacklist_text);
        self.blacklist_seen = Some(blacklist_text);

        // Updates a killed service began: looked for once, when it starts.
        if self.rounds == 0 {
            self.resume_pending = started_updates()?;
        }
        self.rounds += 1;
        // Every deployment's repositories, each asked once.
        let base = Settings::from_env().map_err(anyhow::Error::msg)?;
        let mut workspaces = HashMap::new();
        let mut repos_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut settings_of: BTreeMap<String, Settings> = BTreeMap::new();
        for (name, d) in &state.deployments {
            let Some(source) = &d.source else { continue };
            match deployment_settings(&base, source, &mut workspaces).and_then(|s| {
                let repos = self.repositories(source, &s)?;
                Ok((s, repos))
            }) {
                Ok((settings, repos)) => {
                    settings_of.insert(name.clone(), settings);
                    repos_of.insert(name.clone(), repos);
                }
                Err(e) => {
                    self.report(name, "unreadable", format!("{e:#}"));
                }
            }
        }
        let wanted: BTreeSet<&String> = repos_of.values().flatten().collect();
        let repositories = wanted.len();
        let changed = self.poll(&wanted, &settings_of, &repos_of);
        let polled = started.elapsed();
        let mut planned = 0;

        for (name, settings) in &settings_of {
            let repos = &repos_of[name];
            let first = !self.evaluated.contains(name);
            let records = records_digest(&state, name);
            let changed_by_others = self.planned_at.get(name).is_some_and(|&d| d != records);
            let due = first
                || blacklist_changed
                || self.retry.contains(name)
                || self.resume_pending.contains(name)
                || repos.iter().any(|r| changed.contains(r))
                || changed_by_others
                || interrupted_apply(&state, name);
            if !due {
                continue;
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
            if let Err(e) = self.keep_up_to_date(name, settings, &blacklist, &state, resume) {
                self.report(name, "failed", format!("{e:#}"));
            }
        }

        // Appliances on barred versions that no update took away.
        let state = if planned > 0 {
            utility::open_state()?.load()?
        } else {
            state
        };

        let violations = decide::violations(&state, &blacklist);
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
            if self.args.enforce_blacklist {
                if let Err(e) = self.enforce(&v.deployment, &v.component, &what) {
                    self.report(&v.deployment, "enforce_failed", format!("{e:#}"));
                }
            } else {
                self.report(&v.deployment, "violation", what);
            }
        }
        self.metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .rounds += 1;
        let known: BTreeSet<&String> = state.deployments.keys().collect();
        self.page.update(|live| {
            live.last_round = Some(now());
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

    /// Asks every repository not backing off whether it changed, eight
    /// at a time; the ones that did.
    fn poll(
        &mut self,
        wanted: &BTreeSet<&String>,
        settings_of: &BTreeMap<String, Settings>,
        repos_of: &BTreeMap<String, Vec<String>>,
    ) -> BTreeSet<String> {
        let now = Instant::now();
        // Each repository with the fetcher of a deployment that imports it.
        let mut asks: Vec<(String, Arc<cvl_repo::Fetcher>, Validators)> = Vec::new();
        for repo in wanted {
            let watched = self.repos.entry((*repo).clone()).or_default();
            if watched.next.is_some_and(|n| n > now) {
                continue;
            }
            let Some(settings) = repos_of
                .iter()
                .find(|(_, r)| r.contains(repo))
                .and_then(|(d, _)| settings_of.get(d))
            else {
                continue;
            };
            let fetcher = self
                .fetchers
                .entry(settings.timeout.as_secs())
                .or_insert_with(|| Arc::new(cvl_repo::Fetcher::new(settings.clone())))
                .clone();
            asks.push(((*repo).clone(), fetcher, watched.validators.clone()));
        }
        let answers: Vec<(String, Result<Polled, String>)> = std::thread::scope(|scope| {
            let mut out = Vec::new();
            // POLL_WORKERS workers, each asking its share in turn.
            let workers: Vec<_> = asks
                .chunks(asks.len().div_ceil(POLL_WORKERS).max(1))
                .map(|chunk| {
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|(repo, fetcher, known)| {
                                let answer = Location::parse(repo, None)
                                    .and_then(|l| fetcher.poll_index(&l, known));
                                (repo.clone(), answer)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for worker in workers {
                out.extend(worker.join().unwrap_or_default());
            }
            out
        });
        let mut changed = BTreeSet::new();
        let unix = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for (repo, answer) in answers {
            let watched = self.repos.entry(repo.clone()).or_default();
            let mut metrics = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
            match answer {
                Ok(Polled::Unchanged) => {
                    watched.failures = 0;
                    watched.next = None;
                    metrics.last_poll.insert(repo.clone(), unix);
                    metrics.poll_failures.remove(&repo);
                }
                Ok(Polled::Changed(_, validators)) => {
                    let first = watched.validators == Validators::default();
                    watched.validators = validators;
                    watched.failures = 0;
                    watched.next = None;
                    metrics.last_poll.insert(repo.clone(), unix);
                    metrics.poll_failures.remove(&repo);
                    if !first {
                        log("published", serde_json::json!({ "repository": repo }));
                    }
                    changed.insert(repo);
                }
                Err(error) => {
                    watched.failures += 1;
                    let wait = decide::backoff(self.args.interval, watched.failures, jitter());
                    watched.next = Some(Instant::now() + wait);
                    metrics.poll_failures.insert(repo.clone(), watched.failures);
                    drop(metrics);
                    log(
                        "repository_failed",
                        serde_json::json!({
                            "repository": repo, "error": error,
                            "failures": watched.failures, "next_try_s": wait.as_secs(),
                        }),
                    );
                }
            }
        }
        changed
    }

    /// Plans `name` from the newest allowed versions and carries out its
    /// updates and resends, one appliance at a time, each held to its
    /// health gate.
    /// `state` is the round's (read at its start); `may_resume`: a killed
    /// service may have left an update begun here.
    fn keep_up_to_date(
        &mut self,
        name: &str,
        settings: &Settings,
        blacklist: &cvl_repo::blacklist::Blacklist,
        state: &cvl_planner::model::UtilityState,
        may_resume: bool,
    ) -> Result<()> {
        let Some(d) = state.deployments.get(name) else {
            return Ok(());
        };
        let Some(source) = d.source.clone() else {
            return Ok(());
        };
        let policy = d.policy;
        let mut resume = if may_resume {
            resuming(name)?
        } else {
            BTreeMap::new()
        };
        let mut settings = settings.clone();
        settings.blacklist = decide::barred_for(blacklist, state, name);
        // What an update would do, the lock left as it is.
        let Some((preview, _)) = plan(&source, &settings, LockMode::Preview, None)? else {
            return Ok(());
        };
        if !preview.missing_secrets.is_empty() {
            let names: Vec<&str> = preview
                .missing_secrets
                .iter()
                .map(|m| m.supply.as_str())
                .collect();
            self.report(
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
        let decision = decide::decide(&preview, &policy, decide::minute_of_day(SystemTime::now()));
        // What waits, for the status page: for a person, or for the policy.
        let waiting: BTreeMap<ComponentPath, cvl_utility::web::Pending> = decision
            .pending
            .iter()
            .chain(
                decision
                    .held
                    .as_ref()
                    .map_or(&[][..], |_| &decision.act[..]),
            )
            .map(|&i| &preview.actions[i])
            .map(|a| {
                let from = d
                    .vms
                    .get(&a.component)
                    .and_then(|vm| vm.spec.appliance.version);
                let what = format!("{} {}: {}", a.action.as_str(), a.component.0, a.reason);
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
        let pending: Vec<String> = decision
            .pending
            .iter()
            .map(|&i| &preview.actions[i])
            .filter(|a| !resume.contains_key(&a.component) && !interrupted(a))
            .map(|a| format!("{} {} ({})", a.action.as_str(), a.component.0, a.reason))
            .collect();
        if pending.is_empty() {
            self.reported.remove(&(name.to_string(), "pending"));
        } else {
            let said = format!("waits for a person: {}", pending.join(", "));
            if self.report(name, "pending", said.clone()) {
                self.history(name, "", "report", None, None, "pending", &said)?;
            }
        }
        let work = !decision.act.is_empty()
            || preview
                .actions
                .iter()
                .any(|a| resume.contains_key(&a.component) || interrupted(a));
        if !work {
            self.reported.remove(&(name.to_string(), "held"));
            return Ok(());
        }
        if let Some(why) = &decision.held {
            self.report(name, "held", format!("updates wait: {why}"));
            return Ok(());
        }
        self.reported.remove(&(name.to_string(), "held"));
        let store = utility::open_state()?;
        let _lock = match store.lock_apply(
            &format!("cvl utility run: updating {name}"),
            self.args.lock_timeout,
        ) {
            Ok(lock) => lock,
            Err(cvl_state::StateError::Locked { holder, .. }) => {
                self.retry.insert(name.to_string());
                self.report(
                    name,
                    "lock_held",
                    format!("waits: the state's apply lock is held by {holder}"),
                );
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        drop(store);
        self.reported.remove(&(name.to_string(), "lock_held"));
        // The newest allowed versions into cvl.lock, as `cvl update` does;
        // then one appliance at a time, planned again after each.
        let mut mode = LockMode::Update;
        let mut attempted = BTreeSet::new();
        loop {
            let state = utility::open_state()?.load()?;
            settings.blacklist = decide::barred_for(blacklist, &state, name);
            let Some((planned, sensitive)) = plan(&source, &settings, mode, None)? else {
                return Ok(());
            };
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
                self.history(
                    name,
                    &component.0,
                    "update",
                    from,
                    to,
                    "done",
                    "found finished when the service started again",
                )?;
            }
            let next = planned.actions.iter().find(|a| {
                !attempted.contains(&a.component)
                    && (decide::automatic(a.action)
                        || resume.contains_key(&a.component)
                        || interrupted(a))
            });
            let Some(action) = next.cloned() else {
                return Ok(());
            };
            attempted.insert(action.component.clone());
            let part = only(&planned, &action.component);
            // Marked as begun first: a service killed from here on finds
            // it again and finishes it (or rolls it back).
            if let Reason::VersionChanged { from, to, .. } = &action.why {
                self.history(
                    name,
                    &action.component.0,
                    "update",
                    *from,
                    *to,
                    "started",
                    &action.reason,
                )?;
            }
            let summary = apply::run_plan(
                &part,
                &sensitive,
                &settings,
                &self.walk_options(),
                "service",
                false,
                &mut |event| log_event(name, event),
            )?;
            let failure = summary.failed.first().map(|(_, m)| m.clone());
            let mut metrics = self.metrics.lock().unwrap_or_else(|e| e.into_inner());
            match (action.action, failure) {
                (ActionKind::Resend, None) => metrics.resends_applied += 1,
                (_, None) => metrics.updates_applied += 1,
                (_, Some(message)) if is_health_gate(&message) => {
                    drop(metrics);
                    // Back to the version it ran before, if one is known.
                    let from = match &action.why {
                        Reason::VersionChanged { from, .. } => *from,
                        _ => None,
                    }
                    .or(resume.get(&action.component).copied().flatten());
                    self.roll_back(name, &source, &settings, &planned, &action, from, &message)?;
                }
                (_, Some(_)) => metrics.updates_failed += 1,
            }
        }
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
        utility::open_state()?.commit(&[Change::VersionFailed {
            deployment: name.to_string(),
            failed: FailedVersion {
                url: url.clone(),
                version: to,
                component: action.component.clone(),
                at: now(),
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
            self.history(
                name,
                &action.component.0,
                "rollback",
                None,
                Some(to),
                "failed",
                &said,
            )?;
            return Ok(());
        };
        let dir = Path::new(&source.file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        cvl_repo::loader::pin(settings, &dir, &url, from).map_err(anyhow::Error::msg)?;
        self.history(
            name,
            &action.component.0,
            "rollback",
            Some(to),
            Some(from),
            "started",
            &format!("version {to} failed its health gate: {reason}"),
        )?;
        let state = utility::open_state()?.load()?;
        let mut settings = settings.clone();
        settings.blacklist = decide::barred_for(&settings.blacklist, &state, name);
        let Some((back, sensitive)) = plan(source, &settings, LockMode::Use, None)? else {
            return Ok(());
        };
        let part = only(&back, &action.component);
        let summary = apply::run_plan(
            &part,
            &sensitive,
            &settings,
            &self.walk_options(),
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
        self.history(
            name,
            &action.component.0,
            "rollback",
            Some(to),
            Some(from),
            if ok { "rolled back" } else { "failed" },
            &format!(
                "version {to} failed its health gate ({reason}); version {from} {}",
                if ok {
                    "runs again, its data disks untouched; version {to} is not taken again"
                } else {
                    "did not start either: a person must look (cvl status)"
                }
            ),
        )?;
        Ok(())
    }

    /// Stops an appliance whose version is barred (`--enforce-blacklist`).
    fn enforce(&mut self, deployment: &str, component: &ComponentPath, why: &str) -> Result<()> {
        let store = utility::open_state()?;
        let _lock = match store.lock_apply(
            &format!("cvl utility run: enforcing the blacklist on {deployment}"),
            self.args.lock_timeout,
        ) {
            Ok(lock) => lock,
            Err(cvl_state::StateError::Locked { holder, .. }) => {
                self.report(
                    deployment,
                    "lock_held",
                    format!("waits: the state's apply lock is held by {holder}"),
                );
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let state = utility::open_state()?.load()?;
        let plan = cvl_planner::plan_stop(&state, deployment, Some(component))?;
        if !plan.has_changes() {
            return Ok(());
        }
        log(
            "enforce_blacklist",
            serde_json::json!({ "deployment": deployment, "component": component.0, "why": why }),
        );
        let settings = Settings::from_env().map_err(anyhow::Error::msg)?;
        apply::run_plan(
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

    fn walk_options(&self) -> cvl_executor::apply::Options {
        cvl_executor::apply::Options {
            parallelism: 1,
            stop_timeout_secs: self.args.stop_timeout,
            ready_timeout_secs: self.args.ready_timeout,
        }
    }

    /// Logs `what` about a deployment, unless it said the same last time;
    /// whether it was said.
    fn report(&mut self, deployment: &str, kind: &'static str, what: String) -> bool {
        if matches!(
            kind,
            "failed" | "unreadable" | "secrets_missing" | "enforce_failed"
        ) {
            self.page.update(|live| {
                live.problems.insert(deployment.to_string(), what.clone());
            });
        }
        let key = (deployment.to_string(), kind);
        if self.reported.get(&key) == Some(&what) {
            return false;
        }
        log(
            kind,
            serde_json::json!({ "deployment": deployment, "message": what }),
        );
        self.reported.insert(key, what);
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn history(
        &self,
        deployment: &str,
        component: &str,
        action: &str,
        from_version: Option<u32>,
        to_version: Option<u32>,
        outcome: &str,
        detail: &str,
    ) -> Result<()> {
        utility::open_state()?.commit(&[Change::Logged(HistoryEntry {
            at: now(),
            deployment: deployment.to_string(),
            component: component.to_string(),
            actor: "service".to_string(),
            action: action.to_string(),
            from_version,
            to_version,
            outcome: outcome.to_string(),
            detail: detail.to_string(),
        })])?;
        Ok(())
    }
}

/// A digest of a deployment's VMs as recorded: component, version,
/// program and status of each.
fn records_digest(state: &cvl_planner::model::UtilityState, deployment: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    if let Some(d) = state.deployments.get(deployment) {
        for (path, vm) in &d.vms {
            path.0.hash(&mut hasher);
            vm.spec.appliance.version.hash(&mut hasher);
            vm.spec.appliance.digest.hash(&mut hasher);
            vm.status.as_str().hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// A plan restricted to one component's action (what it waits for is
/// already done, or is not the service's to do).
fn only(plan: &Plan, component: &ComponentPath) -> Plan {
    let mut part = plan.clone();
    part.actions.retain(|a| a.component == *component);
    part
}

/// A start that finishes what an interrupted apply left (recorded as
/// starting or stopping: killed mid-way), which the service may do.
fn interrupted(action: &cvl_planner::plan::Action) -> bool {
    matches!(
        action.why,
        Reason::NotRunning {
            status: Status::Starting | Status::Stopping
        }
    )
}

/// Whether an apply left the deployment half done (VMs recorded starting
/// or stopping: it was killed, or it runs now).
fn interrupted_apply(state: &cvl_planner::model::UtilityState, deployment: &str) -> bool {
    state.deployments.get(deployment).is_some_and(|d| {
        d.vms
            .values()
            .any(|vm| matches!(vm.status, Status::Starting | Status::Stopping))
    })
}

/// The deployments where the history says the service began an update or
/// rollback it did not finish (it was killed): one look at the log.
fn started_updates() -> Result<BTreeSet<String>> {
    let entries = utility::open_state()?.history(None, 10_000)?;
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
    let entries = utility::open_state()?.history(Some(deployment), 200)?;
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

/// Whether an action failed its health gate (the guest did not become
/// ready), as opposed to failing to start at all.
fn is_health_gate(message: &str) -> bool {
    message.contains("did not become ready")
}

/// A plan of the deployment as recorded, quietly (errors are the result).
fn plan(
    source: &DeploymentSource,
    settings: &Settings,
    lock: LockMode,
    target: Option<String>,
) -> Result<Option<(Plan, cvl_planner::lower::SensitiveValues)>> {
    let file = PathBuf::from(&source.file);
    if !file.is_file() {
        bail!(
            "{} is gone: the deployment was applied from it (apply it from where it is now)",
            file.display()
        );
    }
    deploy::plan_with(
        &PlanInput {
            file: &file,
            deploy: &Some(source.deploy.clone()),
            target: &target,
            options: cvl_repo::LoadOptions {
                settings: settings.clone(),
                lock,
            },
        },
        None,
    )
}

/// The settings a deployment was applied with: its recorded mirrors, this
/// service's `$CVL_MIRRORS` (in `base`), the `cvl.toml` beside its file
/// (looked for once a round per folder, in `workspaces`).
fn deployment_settings(
    base: &Settings,
    source: &DeploymentSource,
    workspaces: &mut HashMap<PathBuf, Option<cvl_repo::settings::WorkspaceSettings>>,
) -> Result<Settings> {
    let mut settings = base.clone();
    let dir = Path::new(&source.file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let found = match workspaces.get(&dir) {
        Some(found) => found.clone(),
        None => {
            let found =
                cvl_repo::settings::find_workspace_settings(&dir).map_err(anyhow::Error::msg)?;
            workspaces.insert(dir, found.clone());
            found
        }
    };
    if let Some(ws) = found {
        settings.mirrors.extend(ws.mirrors);
        settings.workspace_file = Some(ws.path);
    }
    let recorded = source
        .mirrors
        .iter()
        .map(|m| cvl_repo::Mirror::parse(m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    settings.mirrors.splice(0..0, recorded);
    settings.timeout = Duration::from_secs(source.timeout_secs.max(1));
    Ok(settings)
}

impl Service {
    /// The repositories (location URLs, after mirrors) the deployment's
    /// `cvl.lock` names; read again only when the lock file changed.
    fn repositories(
        &mut self,
        source: &DeploymentSource,
        settings: &Settings,
    ) -> Result<Vec<String>> {
        use std::os::unix::fs::MetadataExt;
        let dir = Path::new(&source.file)
            .parent()
            .context("the deployment's file has no folder")?;
        let path = cvl_repo::lock::LockFile::path_in(dir);
        let seen =
            std::fs::metadata(&path).map_or((0, 0, 0), |m| (m.len(), m.mtime(), m.mtime_nsec()));
        if let Some((known, repos)) = self.lock_repos.get(&path) {
            if *known == seen {
                return Ok(repos.clone());
            }
        }
        let lock = cvl_repo::lock::LockFile::read(dir).map_err(anyhow::Error::msg)?;
        let base = Location::Dir(dir.to_path_buf());
        let mut repos: Vec<String> = lock
            .imports
            .iter()
            .filter_map(|e| Location::parse(&settings.map_url(&e.url), Some(&base)).ok())
            .map(|l| l.url())
            .collect();
        repos.sort();
        repos.dedup();
        self.lock_repos.insert(path, (seen, repos.clone()));
        Ok(repos)
    }
}

pub(crate) fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Up to 1, from the clock: enough to keep many services apart.
fn jitter() -> f64 {
    f64::from(
        SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    ) / 1e9
}

/// One JSON line on stderr.
pub(crate) fn log(event: &str, fields: serde_json::Value) {
    let mut line = serde_json::json!({ "time": now(), "event": event });
    if let (Some(line), serde_json::Value::Object(fields)) = (line.as_object_mut(), fields) {
        line.extend(fields);
    }
    eprintln!("{line}");
}

fn log_event(deployment: &str, event: &cvl_executor::apply::Event) {
    use cvl_executor::apply::{Event, Outcome};
    match event {
        Event::Began { component, action } => log(
            "action_began",
            serde_json::json!({
                "deployment": deployment, "component": component.0, "action": action.as_str(),
            }),
        ),
        Event::Finished {
            component,
            action,
            outcome,
            elapsed,
        } => {
            let (outcome, detail) = match outcome {
                Outcome::Done(d) => ("done", d.clone()),
                Outcome::Failed(m) => ("failed", m.clone()),
                Outcome::Skipped(c) => ("skipped", format!("{} failed first", c.0)),
            };
            log(
                "action_finished",
                serde_json::json!({
                    "deployment": deployment, "component": component.0,
                    "action": action.as_str(), "outcome": outcome, "detail": detail,
                    "seconds": elapsed.as_secs_f64(),
                }),
            );
        }
    }
}

/// Prometheus text at http://ADDR/metrics, from a thread of its own: one
/// short HTTP/1.0 answer per connection, the state read for each.
fn serve_metrics(addr: SocketAddr, metrics: Arc<Mutex<Metrics>>) -> Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} for --metrics"))?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut reader = BufReader::new((&stream).take(8192));
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // The rest of the head, unread, is dropped with the connection.
            let mut parts = request.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (status, body) = match (method, path) {
                ("GET", "/metrics") => {
                    let state = utility::open_state()
                        .and_then(|mut s| Ok(s.load()?))
                        .unwrap_or_default();
                    let text = metrics
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .render(&state);
                    ("200 OK", text)
                }
                ("GET", _) => ("404 Not Found", "only /metrics is here\n".to_string()),
                _ => ("405 Method Not Allowed", "GET only\n".to_string()),
            };
            let mut stream = &stream;
            let _ = write!(
                stream,
                "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(())
}
