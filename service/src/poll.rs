//! Watching repositories: which repositories each deployment imports (its
//! `cvl.lock`, read again only when it changes), and whether each changed
//! since it was last asked (a conditional request each, eight at a time),
//! with back-off for those that fail. A repository refused (an attack) or
//! answering again after failures counts as changed: the deployments that
//! import it are planned, and say what they met.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use cvl_planner::model::DeploymentSource;
use cvl_repo::fetch::{Polled, Validators};
use cvl_repo::{Location, Settings};
use cvl_utility::decide;
use cvl_utility::metrics::Metrics;

use crate::journal::log;

/// How many repositories are asked at once.
const POLL_WORKERS: usize = 8;

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

#[derive(Default)]
pub struct Watcher {
    /// By location URL (after mirrors).
    repos: HashMap<String, Repo>,
    /// One fetcher per request timeout, kept across rounds (its HTTP
    /// connections are reused).
    fetchers: HashMap<u64, Arc<cvl_repo::Fetcher>>,
    /// Each deployment's repositories, by its `cvl.lock` as last read
    /// (path, size, modification time), read again only when it changes.
    lock_repos: HashMap<PathBuf, (FileSeen, Vec<String>)>,
}

impl Watcher {
    /// The repositories (location URLs, after mirrors) the deployment's
    /// `cvl.lock` names; read again only when the lock file changed.
    pub fn repositories(
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

    /// Asks every repository of `wanted` not backing off whether it
    /// changed, eight at a time; the ones that did. `interval` is the
    /// service's, the base of the back-off.
    pub fn poll(
        &mut self,
        wanted: &BTreeSet<&String>,
        settings_of: &BTreeMap<String, Settings>,
        repos_of: &BTreeMap<String, Vec<String>>,
        interval: Duration,
        metrics: &Mutex<Metrics>,
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
        // Each answer, and whether a failure was a refusal (an attack).
        type Answer = (String, Result<Polled, String>, bool);
        let answers: Vec<Answer> = std::thread::scope(|scope| {
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
                                let refused = answer.is_err()
                                    && fetcher.settings().trust.refused(repo).is_some_and(|e| {
                                        e.attack != cvl_repo::trust::Attack::Unavailable
                                    });
                                (repo.clone(), answer, refused)
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
        for (repo, answer, refused) in answers {
            let watched = self.repos.entry(repo.clone()).or_default();
            let mut metrics = metrics.lock().unwrap_or_else(|e| e.into_inner());
            match answer {
                Ok(Polled::Unchanged) => {
                    watched.failures = 0;
                    watched.next = None;
                    metrics.last_poll.insert(repo.clone(), unix);
                    metrics.poll_failures.remove(&repo);
                }
                Ok(Polled::Changed(_, validators)) => {
                    // Its first answer, or its first after failures (what
                    // the deployments made of it then is planned again).
                    let first = watched.validators == Validators::default() || watched.failures > 0;
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
                    // Whatever it serves once it answers again is news:
                    // the deployments that met the failure (a refusal, on
                    // their status page) are planned again then.
                    watched.validators = Validators::default();
                    watched.failures += 1;
                    let wait = decide::backoff(interval, watched.failures, jitter());
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
                    // Refused: the deployments that import it are planned,
                    // which reports the attack for each (and keeps what
                    // they run).
                    if refused {
                        changed.insert(repo);
                    }
                }
            }
        }
        changed
    }
}

/// Up to 1, from the clock: enough to keep many services apart.
pub fn jitter() -> f64 {
    f64::from(
        SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    ) / 1e9
}

/// The settings a deployment was applied with: its recorded mirrors, this
/// service's `$CVL_MIRRORS` (in `base`), the `cvl.toml` beside its file
/// (looked for once a round per folder, in `workspaces`).
pub fn deployment_settings(
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
