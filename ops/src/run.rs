//! Carrying a plan out: each component's program source and wire
//! parameters prepared, the executor's walk over the hosts, every step a
//! state transaction and every finished action an entry of the history.
//! The caller draws progress from the walk's events; nothing here asks.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Result};
use cvl_executor::apply::{self as walk, Event, Outcome, Prepared};
use cvl_executor::protocol::ProgramSource;
use cvl_executor::staging::{Staging, WebFallback};
use cvl_planner::lower::SensitiveValues;
use cvl_planner::model::{ComponentPath, ParamValue};
use cvl_planner::plan::Plan;
use cvl_planner::record;

use crate::hosts::LOCAL_HOST;

/// Who carries a plan out, for the history: `cvl apply (alice)`.
pub fn person(command: &str) -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        // SAFETY: getuid has no preconditions.
        .unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() }));
    format!("{command} ({user})")
}

/// Carries `plan` out, asking nothing and drawing nothing (`events` says
/// what happens): each step a state transaction, each finished action an
/// entry of the deployment's history by `actor`. `whole`: the plan is all
/// that `cvl plan` made, so its end is recorded (the deployment's VANs,
/// and how it was applied, for the utility service); a part of one (the
/// service acts one appliance at a time) records neither.
pub fn run_plan(
    plan: &Plan,
    sensitive: &SensitiveValues,
    settings: &cvl_repo::Settings,
    options: &walk::Options,
    actor: &str,
    whole: bool,
    events: &mut dyn FnMut(&Event),
) -> Result<walk::Summary> {
    let mut prepared = prepare(plan, sensitive, settings)?;
    let store = std::cell::RefCell::new(crate::state::open()?);
    // The state must still be the one planned against.
    let now = store.borrow_mut().load()?;
    if now.lineage != plan.basis.lineage || now.serial != plan.basis.serial {
        bail!(
            "the state changed since the plan was made (serial {} then, {} now): plan again",
            plan.basis.serial,
            now.serial
        );
    }
    let connector = crate::hosts::connector(&now)?;
    // A fenced host's appliances: their data on their new hosts first.
    for action in &plan.actions {
        if let cvl_planner::plan::Reason::Recovered { from, to } = &action.why {
            let restored =
                crate::backup::recover(&now, &plan.deployment, &action.component, from, to)
                    .or_else(|why| {
                        if options.accept_empty.contains(&action.component) {
                            Ok(format!(
                                "started with empty data disks, as a person accepted \
                                 (--accept-empty): {why}"
                            ))
                        } else {
                            Err(why)
                        }
                    });
            if let Some(p) = prepared.get_mut(&action.component) {
                p.recovered = Some(restored);
            }
        }
    }
    let mut record_changes = |changes: &[cvl_planner::Change]| -> Result<(), String> {
        store
            .borrow_mut()
            .commit(changes)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let mut logged = |event: &Event| {
        if let Event::Finished {
            component,
            action,
            outcome,
            moved,
            ..
        } = event
        {
            if let Some(mut entry) = history_entry(plan, component, *action, outcome, actor) {
                entry.moved = moved.clone();
                // The log is a record, not the state: it must not stop the
                // apply. A failure to write it is said in the event stream.
                if let Err(e) = store
                    .borrow_mut()
                    .commit(&[cvl_planner::Change::Logged(entry)])
                {
                    eprintln!("warning: the history entry was not written: {e}");
                }
            }
        }
        events(event);
    };
    let summary = walk::apply(
        plan,
        &prepared,
        &connector,
        &mut record_changes,
        &mut logged,
        options,
    )
    .map_err(anyhow::Error::msg)?;
    let mut store = store.into_inner();
    if summary.ok() && whole {
        let current = store.load()?;
        let mut changes = record::finished(plan, current.deployments.get(&plan.deployment));
        if let Some(source) = &plan.source {
            changes.push(cvl_planner::Change::SourceSet {
                deployment: plan.deployment.clone(),
                source: deployment_source(source, settings),
            });
        }
        store.commit(&changes)?;
    }
    Ok(summary)
}

/// How a deployment was applied, as the state keeps it: the file and
/// object, and the mirrors that did not come from the `cvl.toml` beside
/// the file (that one is read again).
fn deployment_source(
    source: &cvl_planner::plan::PlanSource,
    settings: &cvl_repo::Settings,
) -> cvl_planner::model::DeploymentSource {
    let workspace = cvl_repo::settings::find_workspace_settings(Path::new(&source.file))
        .ok()
        .flatten()
        .map(|w| w.mirrors)
        .unwrap_or_default();
    cvl_planner::model::DeploymentSource {
        file: source.file.clone(),
        deploy: source.deploy.clone(),
        mirrors: settings
            .mirrors
            .iter()
            .filter(|m| !workspace.contains(m))
            .map(|m| format!("{}={}", m.from, m.to))
            .collect(),
        timeout_secs: settings.timeout.as_secs(),
    }
}

/// The history entry of a finished action.
fn history_entry(
    plan: &Plan,
    component: &ComponentPath,
    action: cvl_planner::ActionKind,
    outcome: &Outcome,
    actor: &str,
) -> Option<cvl_planner::model::HistoryEntry> {
    let planned = plan.actions.iter().find(|a| a.component == *component)?;
    let (from_version, to_version) = match &planned.why {
        cvl_planner::plan::Reason::VersionChanged { from, to, .. } => (*from, *to),
        _ if action.is_stopping() => (None, None),
        _ => (
            None,
            plan.desired
                .get(component)
                .and_then(|d| d.appliance.version),
        ),
    };
    let (outcome, detail) = match outcome {
        Outcome::Done(detail) => match &planned.why {
            // From the host's fencing to the appliance ready again.
            cvl_planner::plan::Reason::Recovered { from, .. } => (
                "done",
                format!(
                    "{}: {detail}; RTO {}",
                    planned.reason,
                    crate::fence::since_fenced(from)
                        .map_or("unknown".to_string(), |s| format!("{s} s"))
                ),
            ),
            _ => ("done", format!("{}: {detail}", planned.reason)),
        },
        Outcome::Failed(failure) => ("failed", format!("{}: {failure}", planned.reason)),
        Outcome::Skipped(because) => ("skipped", format!("{} failed first", because.0)),
    };
    Some(cvl_planner::model::HistoryEntry {
        at: crate::state::now(),
        deployment: plan.deployment.clone(),
        component: component.0.clone(),
        actor: actor.to_string(),
        action: action.as_str().to_string(),
        from_version,
        to_version,
        outcome: outcome.to_string(),
        detail,
        moved: None,
    })
}
/// Each component's program source and wire parameters.
fn prepare(
    plan: &Plan,
    sensitive: &SensitiveValues,
    settings: &cvl_repo::Settings,
) -> Result<BTreeMap<ComponentPath, Prepared>> {
    let mut out = BTreeMap::new();
    let empty = BTreeMap::new();
    // A program here (a file:// repository, a folder) reaches other hosts
    // only by being sent: list its files once, for all who need it.
    let mut stagings: BTreeMap<String, Arc<Staging>> = BTreeMap::new();
    // A web repository's program is fetched by each host; one a host cannot
    // reach is downloaded here once and sent.
    let mut fallbacks: BTreeMap<String, Arc<WebFallback>> = BTreeMap::new();
    // Only what boots or receives parameters needs them.
    let needed = plan.actions.iter().filter(|a| {
        matches!(
            a.action,
            cvl_planner::ActionKind::Start
                | cvl_planner::ActionKind::Update
                | cvl_planner::ActionKind::Resend
                | cvl_planner::ActionKind::Move
        )
    });
    for path in needed.map(|a| &a.component) {
        let Some(vm) = plan.desired.get(path) else {
            continue;
        };
        let description = match vm.params.get("vm") {
            Some(ParamValue::Plain { values }) if !values.is_empty() => values[0].clone(),
            _ => bail!("{path} has no `vm`"),
        };
        let app = &vm.appliance;
        let program = match app.version {
            Some(version) => {
                let mapped = settings.map_url(&app.source);
                let location =
                    cvl_repo::Location::parse(&mapped, None).map_err(anyhow::Error::msg)?;
                ProgramSource::Repository {
                    url: location.url(),
                    version,
                }
            }
            None => {
                let desc = std::path::absolute(&app.source)?;
                ProgramSource::Folder {
                    dir: desc
                        .parent()
                        .unwrap_or(Path::new("/"))
                        .display()
                        .to_string(),
                }
            }
        };
        let remote = plan
            .allocations
            .get(path)
            .is_some_and(|a| a.host != LOCAL_HOST);
        // How the program reaches a remote host: sent from here (a local
        // repository, a folder), or fetched by the host, this machine
        // sending it only if the host cannot reach the web repository.
        let (staging, web_fallback) = match &program {
            _ if !remote => (None, None),
            ProgramSource::Repository { url, version } => {
                let key = format!("{url}@{version}");
                match cvl_repo::Location::parse(url, None) {
                    Ok(cvl_repo::Location::Dir(dir)) => (
                        Some(staged(&mut stagings, &key, || {
                            Staging::repository(url, &dir, *version)
                        })?),
                        None,
                    ),
                    Ok(cvl_repo::Location::Http(_)) => {
                        let fallback = fallbacks.entry(key).or_insert_with(|| {
                            Arc::new(WebFallback::new(url.clone(), *version, settings.clone()))
                        });
                        (None, Some(fallback.clone()))
                    }
                    Err(_) => (None, None),
                }
            }
            ProgramSource::Folder { dir } => (
                Some(staged(&mut stagings, dir, || {
                    Staging::folder(Path::new(dir))
                })?),
                None,
            ),
            ProgramSource::Staged { .. } => (None, None),
        };
        let params = walk::wire_params(&vm.params, sensitive.0.get(path).unwrap_or(&empty))
            .map_err(anyhow::Error::msg)?;
        out.insert(
            path.clone(),
            Prepared {
                program,
                description,
                params,
                staging,
                web_fallback,
                recovered: None,
            },
        );
    }
    Ok(out)
}

/// The staging of `key` (a repository version or a folder), listed once.
fn staged(
    stagings: &mut BTreeMap<String, Arc<Staging>>,
    key: &str,
    list: impl FnOnce() -> Result<Staging, String>,
) -> Result<Arc<Staging>> {
    if let Some(s) = stagings.get(key) {
        return Ok(s.clone());
    }
    let staging = Arc::new(list().map_err(anyhow::Error::msg)?);
    stagings.insert(key.to_string(), staging.clone());
    Ok(staging)
}
