//! `cvl apply`, `cvl stop` (carried out), `cvl status` and `cvl host serve`:
//! the executor on this machine. Plans as `cvl plan` does, shows the plan,
//! asks (or `--auto-approve`), then walks it through the host agent,
//! writing the state after every step and drawing progress (a line per
//! appliance on a terminal, plain lines in CI logs).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use codespan_reporting::term::termcolor::ColorChoice;
use cvl_executor::apply::{self as walk, Event, Outcome, Prepared};
use cvl_executor::protocol::Fabric;
use cvl_executor::protocol::{ProgramSource, Request, Response, VmId, VmStatus};
use cvl_executor::staging::{Staging, WebFallback};
use cvl_executor::transport::ssh::{SshConnector, SshHost};
use cvl_executor::transport::{Hosts, Links, LocalConnector};
use cvl_planner::lower::SensitiveValues;
use cvl_planner::model::{ComponentPath, ParamValue, Status};
use cvl_planner::plan::Plan;
use cvl_planner::record;
use std::sync::Arc;

use crate::deploy::{self, PlanFormat};
use crate::utility;
use crate::workspace::LoadArgs;

#[derive(clap::Args, Clone)]
pub struct ExecArgs {
    /// Apply without asking (for CI and scripts).
    #[arg(long)]
    pub auto_approve: bool,
    /// How many actions may run at once.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub parallelism: usize,
    /// Seconds a guest has to power off before QEMU is told to quit.
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    pub stop_timeout: u64,
    /// Seconds a guest has to be ready after booting: its guest agent answers
    /// (the guest kit), or cloud-init says so at the end of its final stage
    /// (a cloud image: minutes under TCG).
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub ready_timeout: u64,
    /// How long to wait for another `cvl apply` or `cvl stop` on the same
    /// state to finish (`30s`, `5m`); without it, fail at once naming it.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub lock_timeout: std::time::Duration,
}

impl ExecArgs {
    pub(crate) fn walk_options(&self) -> walk::Options {
        walk::Options {
            parallelism: self.parallelism,
            stop_timeout_secs: self.stop_timeout,
            ready_timeout_secs: self.ready_timeout,
        }
    }
}

/// One apply at a time on the state: held from planning to the end.
pub(crate) fn lock_state(what: &str, exec: &ExecArgs) -> Result<cvl_state::ApplyLock> {
    let store = utility::open_state()?;
    match store.lock_apply(what, std::time::Duration::ZERO) {
        Err(cvl_state::StateError::Locked { holder, .. }) if !exec.lock_timeout.is_zero() => {
            eprintln!(
                "Waiting up to {} for the state's apply lock, held by {holder} ...",
                humantime::format_duration(exec.lock_timeout)
            );
            Ok(store.lock_apply(what, exec.lock_timeout)?)
        }
        other => Ok(other?),
    }
}

#[derive(clap::Args)]
pub struct ApplyArgs {
    /// The CVL file of the deployment, or a plan saved by `cvl plan --out`
    /// (applied only while nothing it was made from has changed).
    pub file: PathBuf,
    /// The object to deploy (default: the file's only object).
    #[arg(long, value_name = "OBJ")]
    pub deploy: Option<String>,
    /// Only this component and what its actions wait for.
    #[arg(long, value_name = "PATH")]
    pub target: Option<String>,
    #[command(flatten)]
    pub exec: ExecArgs,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Only this file's deployment (default: every deployment).
    pub file: Option<PathBuf>,
    /// Only this deployed object of FILE (default: the file's only object).
    #[arg(long, value_name = "OBJ")]
    pub deploy: Option<String>,
    /// Output: for people, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = StatusFormat::Human)]
    pub format: StatusFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    /// A table, a line per VM (host, recorded state, PID, QMP, guest agent,
    /// drift), then each deployment's policy.
    Human,
    /// An array of objects, one per VM: deployment, component, host,
    /// version, recorded, pid, qmp, agent, expects_agent, blacklisted, drift.
    Json,
}

/// Where this machine's host agent keeps VMs: `$CVL_HOST_ROOT`, else
/// `$CVL_HOME/host`.
pub fn host_root() -> PathBuf {
    std::env::var_os("CVL_HOST_ROOT")
        .filter(|r| !r.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| cvl_repo::settings::default_home().join("host"))
}

/// This machine, and the registered hosts over SSH. With two hosts or
/// more, each learns the others' addresses: VANs span them over VXLAN.
pub(crate) fn connector(state: &cvl_planner::model::UtilityState) -> Result<Hosts> {
    let exe = std::env::current_exe().context("cannot find the cvl executable")?;
    let resolve = |h: &cvl_planner::model::Host| -> Option<String> {
        let address = h.address.as_deref()?;
        use std::net::ToSocketAddrs;
        (address, h.port)
            .to_socket_addrs()
            .ok()?
            .next()
            .map(|a| a.ip().to_string())
    };
    let addresses: BTreeMap<&str, Option<String>> = state
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), resolve(h)))
        .collect();
    let hosts = state
        .hosts
        .iter()
        .filter_map(|h| {
            let address = h.address.clone()?;
            let fabric = addresses[h.name.as_str()].clone().and_then(|local| {
                let peers: Vec<String> = addresses
                    .iter()
                    .filter(|(n, _)| **n != h.name)
                    .filter_map(|(_, a)| a.clone())
                    .collect();
                // Peers for VXLAN; an uplink for public addresses.
                (!peers.is_empty() || h.uplink.is_some()).then(|| Fabric {
                    local,
                    peers,
                    uplink: h.uplink.clone(),
                })
            });
            Some((
                h.name.clone(),
                SshHost {
                    name: h.name.clone(),
                    address,
                    port: h.port,
                    user: h.user.clone().unwrap_or_else(|| "root".to_string()),
                    identity: h.identity.clone().map(PathBuf::from),
                    host_key: h.host_key.clone(),
                    root: h
                        .root
                        .clone()
                        .unwrap_or_else(|| utility::DEFAULT_HOST_ROOT.to_string()),
                    fabric,
                },
            ))
        })
        .collect();
    Ok(Hosts {
        local: LocalConnector {
            exe: exe.clone(),
            root: std::path::absolute(host_root())?,
            name: utility::LOCAL_HOST.to_string(),
        },
        ssh: SshConnector::new(hosts, exe)
            .remember_digest_in(cvl_repo::settings::default_home().join("cache/agent-digest")),
    })
}

/// A saved plan, if `path` holds one.
fn saved_plan(path: &Path) -> Option<Plan> {
    let bytes = std::fs::read(path).ok()?;
    if !bytes.trim_ascii_start().starts_with(b"{") {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

pub fn apply(args: ApplyArgs, color: ColorChoice) -> Result<ExitCode> {
    let _lock = lock_state(&format!("cvl apply {}", args.file.display()), &args.exec)?;
    if let Some(saved) = saved_plan(&args.file) {
        return apply_saved(saved, &args, color);
    }
    let planned = match deploy::make_plan(&args.file, &args.deploy, &args.target, &args.load, color)
    {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(ExitCode::from(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    let (plan, sensitive) = planned;
    if !plan.missing_secrets.is_empty() {
        deploy::output(&plan, PlanFormat::Human, None)?;
        let names: Vec<String> = plan
            .missing_secrets
            .iter()
            .map(|m| format!("{} ({})", m.param, m.supply))
            .collect();
        eprintln!(
            "error: sensitive values are missing: {}; supply them as listed above (`cvl \
             secrets set`, or the environment); nothing was applied",
            names.join(", ")
        );
        return Ok(ExitCode::from(1));
    }
    let settings = args
        .load
        .options(cvl_repo::LockMode::Use, &args.file)?
        .settings;
    execute(&plan, &sensitive, &settings, &args.exec, "cvl apply")
}

/// `cvl apply PLAN`: the saved plan, if it is still what `cvl plan` would
/// make now (same state serial and lineage, same inputs and secrets).
fn apply_saved(saved: Plan, args: &ApplyArgs, color: ColorChoice) -> Result<ExitCode> {
    let Some(source) = saved.source.clone() else {
        bail!(
            "{} does not say what it was made from: make it with `cvl plan --out`",
            args.file.display()
        );
    };
    let now = match deploy::make_plan(
        Path::new(&source.file),
        &Some(source.deploy.clone()),
        &source.target,
        &args.load,
        color,
    ) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(ExitCode::from(1)),
        Err(e) => {
            eprintln!(
                "error: cannot check the saved plan against {}: {e:#}",
                source.file
            );
            return Ok(ExitCode::from(1));
        }
    };
    let (current, sensitive) = now;
    if let Err(stale) = saved.check_fresh(&current.basis) {
        eprintln!("error: {}: {stale}", args.file.display());
        return Ok(ExitCode::from(1));
    }
    if !saved.missing_secrets.is_empty() {
        eprintln!("error: the saved plan lacks sensitive values: plan again with them supplied");
        return Ok(ExitCode::from(1));
    }
    let settings = args
        .load
        .options(cvl_repo::LockMode::Use, &args.file)?
        .settings;
    execute(&saved, &sensitive, &settings, &args.exec, "cvl apply")
}

/// `cvl stop FILE [PATH]`: plans the stop and carries it out.
pub fn stop(args: deploy::StopArgs) -> Result<ExitCode> {
    let source = crate::files::read(&args.file)?;
    let mut host = cvl_analysis::AnalysisHost::new();
    let file = host.add_file(source.name.clone(), source.text.clone());
    let name = deploy::deployed(&host.analysis(), file, &args.file, &args.deploy)?;
    let _lock = lock_state(&format!("cvl stop {}", args.file.display()), &args.exec)?;
    let mut store = utility::open_state()?;
    let state = store.load()?;
    let target = args.path.clone().map(ComponentPath);
    let plan = cvl_planner::plan_stop(&state, &name, target.as_ref())?;
    if args.out.is_some() || args.format == PlanFormat::Json {
        deploy::output(&plan, args.format, args.out.as_deref())?;
        if args.format == PlanFormat::Json {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let settings = cvl_repo::Settings::from_env().map_err(anyhow::Error::msg)?;
    execute(
        &plan,
        &SensitiveValues::default(),
        &settings,
        &args.exec,
        "cvl stop",
    )
}

/// Shows the plan, asks (unless --auto-approve), carries it out drawing
/// progress, and says how it went. `command` names who runs it in the
/// history.
pub(crate) fn execute(
    plan: &Plan,
    sensitive: &SensitiveValues,
    settings: &cvl_repo::Settings,
    exec: &ExecArgs,
    command: &str,
) -> Result<ExitCode> {
    deploy::output(plan, PlanFormat::Human, None)?;
    if !plan.has_changes() {
        return Ok(ExitCode::SUCCESS);
    }
    if !exec.auto_approve {
        if !std::io::stdin().is_terminal() {
            bail!("no terminal to ask for approval: review the plan, then pass --auto-approve");
        }
        print!("\nApply this plan? Only `yes` applies it: ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            eprintln!("Nothing was applied.");
            return Ok(ExitCode::from(1));
        }
    }
    let started = Instant::now();
    let mut progress = Progress::new(plan.actions.len());
    let summary = run_plan(
        plan,
        sensitive,
        settings,
        &exec.walk_options(),
        &person(command),
        true,
        &mut |event| progress.event(event, started),
    )?;
    progress.finish();
    let elapsed = started.elapsed().as_secs_f64();
    if summary.ok() {
        println!(
            "\nApplied {} action(s) to {} in {elapsed:.1} s.",
            summary.done.len(),
            plan.deployment
        );
        if !summary.timings.is_empty() {
            let n = summary.timings.len() as u64;
            let sum = |f: fn(&cvl_executor::apply::StartTiming) -> u64| -> u64 {
                summary.timings.values().map(f).sum()
            };
            let (fetch, prepare, launch) = (
                sum(|t| t.fetch_ms),
                sum(|t| t.prepare_ms),
                sum(|t| t.launch_ms),
            );
            println!(
                "Host work per VM started, on average: {} ms preparing it (disks, network, \
                 parameters), {} ms for QEMU to start; {} ms in all making programs local \
                 (fetched or copied into the hosts' caches and verified).",
                prepare / n,
                launch / n,
                fetch
            );
        }
        if summary.sent.0 > 0 {
            println!(
                "Sent {} program file(s) ({:.1} MiB) to hosts that lacked them.",
                summary.sent.0,
                summary.sent.1 as f64 / (1 << 20) as f64
            );
        }
        if plan.actions.iter().any(|a| !a.action.is_stopping()) {
            println!("See what runs with `cvl status`; stop it all with `cvl stop FILE`.");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("\nThe apply did not finish ({elapsed:.1} s):");
        for (component, message) in &summary.failed {
            eprintln!("  failed  {}: {message}", component.0);
        }
        for component in &summary.skipped {
            eprintln!("  skipped {}: it waits for a failed action", component.0);
        }
        eprintln!(
            "The state records what ran. Fix the cause, then `cvl plan` and `cvl apply` again: \
             they finish the job."
        );
        Ok(ExitCode::from(1))
    }
}

/// Who runs a command, for the history: `cvl apply (alice)`.
pub(crate) fn person(command: &str) -> String {
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
pub(crate) fn run_plan(
    plan: &Plan,
    sensitive: &SensitiveValues,
    settings: &cvl_repo::Settings,
    options: &walk::Options,
    actor: &str,
    whole: bool,
    events: &mut dyn FnMut(&Event),
) -> Result<walk::Summary> {
    let prepared = prepare(plan, sensitive, settings)?;
    let store = std::cell::RefCell::new(utility::open_state()?);
    // The state must still be the one planned against.
    let now = store.borrow_mut().load()?;
    if now.lineage != plan.basis.lineage || now.serial != plan.basis.serial {
        bail!(
            "the state changed since the plan was made (serial {} then, {} now): plan again",
            plan.basis.serial,
            now.serial
        );
    }
    let connector = connector(&now)?;
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
            ..
        } = event
        {
            if let Some(entry) = history_entry(plan, component, *action, outcome, actor) {
                // The log is a record, not the state: it must not stop the apply.
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
        Outcome::Done(detail) => ("done", format!("{}: {detail}", planned.reason)),
        Outcome::Failed(message) => ("failed", format!("{}: {message}", planned.reason)),
        Outcome::Skipped(because) => ("skipped", format!("{} failed first", because.0)),
    };
    Some(cvl_planner::model::HistoryEntry {
        at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        deployment: plan.deployment.clone(),
        component: component.0.clone(),
        actor: actor.to_string(),
        action: action.as_str().to_string(),
        from_version,
        to_version,
        outcome: outcome.to_string(),
        detail,
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
            .is_some_and(|a| a.host != utility::LOCAL_HOST);
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

/// Progress: a spinner line per running appliance on a terminal (indicatif),
/// plain lines otherwise.
struct Progress {
    bars: Option<(
        indicatif::MultiProgress,
        BTreeMap<ComponentPath, indicatif::ProgressBar>,
    )>,
}

impl Progress {
    fn new(_actions: usize) -> Progress {
        let bars = std::io::stdout()
            .is_terminal()
            .then(|| (indicatif::MultiProgress::new(), BTreeMap::new()));
        Progress { bars }
    }

    fn event(&mut self, event: &Event, started: Instant) {
        let at = started.elapsed().as_secs_f64();
        match (&mut self.bars, event) {
            (Some((multi, bars)), Event::Began { component, action }) => {
                let bar = multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "  {spinner} {prefix:<7} {msg} [{elapsed}]",
                    )
                    .expect("a valid template"),
                );
                bar.set_prefix(action.as_str());
                bar.set_message(component.0.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                bars.insert(component.clone(), bar);
            }
            (
                Some((multi, bars)),
                Event::Finished {
                    component,
                    action,
                    outcome,
                    elapsed,
                },
            ) => {
                // The spinner goes; its outcome is printed above the others
                // as the plain output prints it (the spinner's template
                // would show the action twice and wrap).
                if let Some(bar) = bars.remove(component) {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
                let line = finished_line(component, action.as_str(), outcome, *elapsed);
                let _ = multi.println(format!("[{at:6.1}s] {line}"));
            }
            (None, Event::Began { component, action }) => {
                println!("[{at:6.1}s] {:<7} {} ...", action.as_str(), component.0);
            }
            (
                None,
                Event::Finished {
                    component,
                    action,
                    outcome,
                    elapsed,
                },
            ) => {
                println!(
                    "[{at:6.1}s] {}",
                    finished_line(component, action.as_str(), outcome, *elapsed)
                );
            }
        }
    }

    fn finish(&mut self) {
        if let Some((multi, _)) = &self.bars {
            let _ = multi.clear();
        }
    }
}

fn finished_line(
    component: &ComponentPath,
    action: &str,
    outcome: &Outcome,
    elapsed: Duration,
) -> String {
    match outcome {
        Outcome::Done(detail) => format!(
            "{action:<7} {}: {detail} ({:.1} s)",
            component.0,
            elapsed.as_secs_f64()
        ),
        Outcome::Failed(message) => format!("{action:<7} {}: FAILED: {message}", component.0),
        Outcome::Skipped(because) => format!(
            "{action:<7} {}: skipped ({} failed)",
            component.0, because.0
        ),
    }
}

pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let mut store = utility::open_state()?;
    let state = store.load()?;
    let only = match &args.file {
        Some(path) => Some(deploy::deployment_of(path, &args.deploy)?),
        None => None,
    };
    let (seen, _) = survey(&state, only.as_deref())?;
    let mut rows: Vec<serde_json::Value> = seen
        .iter()
        .map(|s| {
            let vm = s.vm.as_ref();
            serde_json::json!({
                "deployment": s.deployment, "component": s.component, "host": s.host,
                "recorded": s.recorded, "pid": vm.and_then(|v| v.pid),
                "qmp": vm.and_then(|v| v.qmp.clone()), "agent": vm.is_some_and(|v| v.agent),
                "expects_agent": vm.is_none_or(|v| v.expects_agent), "drift": s.drift,
            })
        })
        .collect();
    let drift = rows
        .iter()
        .any(|r| !r["drift"].as_str().unwrap_or("").is_empty());
    // The recorded version, and whether the blacklist bars it.
    let blacklist = cvl_repo::blacklist::Blacklist::load(&cvl_repo::settings::default_home())
        .map_err(anyhow::Error::msg)?;
    let violations = cvl_utility::decide::violations(&state, &blacklist);
    for r in &mut rows {
        let (d, p) = (
            r["deployment"].as_str().unwrap_or("").to_string(),
            r["component"].as_str().unwrap_or("").to_string(),
        );
        let version = state
            .deployments
            .get(&d)
            .and_then(|dep| dep.vms.get(&ComponentPath(p.clone())))
            .and_then(|vm| vm.spec.appliance.version);
        r["version"] = serde_json::json!(version);
        let barred = violations
            .iter()
            .find(|v| v.deployment == d && v.component.0 == p);
        r["blacklisted"] = match barred {
            Some(v) => serde_json::json!(format!(
                "version {} of {} is barred{}",
                v.version,
                v.url,
                v.reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )),
            None => serde_json::Value::Null,
        };
    }
    match args.format {
        StatusFormat::Json => crate::render::print_json(&serde_json::Value::Array(rows))?,
        StatusFormat::Human => {
            if rows.is_empty() {
                println!(
                    "The utility runs nothing{}.",
                    only.as_ref()
                        .map(|o| format!(" for {o}"))
                        .unwrap_or_default()
                );
            } else {
                println!(
                    "{:<14} {:<10} {:<8} {:<9} {:>8} {:<8} {:<6} notes",
                    "DEPLOYMENT", "COMPONENT", "HOST", "RECORDED", "PID", "QMP", "AGENT"
                );
            }
            for r in &rows {
                let mut notes = r["drift"].as_str().unwrap_or("").to_string();
                if let Some(barred) = r["blacklisted"].as_str() {
                    if !notes.is_empty() {
                        notes.push_str("; ");
                    }
                    notes.push_str(&format!("BLACKLISTED: {barred}"));
                }
                println!(
                    "{:<14} {:<10} {:<8} {:<9} {:>8} {:<8} {:<6} {}",
                    r["deployment"].as_str().unwrap_or(""),
                    r["component"].as_str().unwrap_or(""),
                    r["host"].as_str().unwrap_or(""),
                    r["recorded"].as_str().unwrap_or(""),
                    r["pid"].as_u64().map_or("-".to_string(), |p| p.to_string()),
                    r["qmp"].as_str().unwrap_or("-"),
                    match (&r["agent"], &r["expects_agent"]) {
                        (serde_json::Value::Bool(true), _) => "yes",
                        (_, serde_json::Value::Bool(false)) => "none",
                        _ => "no",
                    },
                    notes
                );
            }
            // What the utility service may do to each, and what it will not
            // take again.
            for (name, d) in &state.deployments {
                if only.as_ref().is_some_and(|o| o != name) {
                    continue;
                }
                println!("\n{name}: policy {}", d.policy);
                for f in &d.failed {
                    println!(
                        "  version {} of {} failed in {} at {}: {} (not taken again)",
                        f.version, f.url, f.component.0, f.at, f.reason
                    );
                }
            }
        }
    }
    Ok(if drift {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Per host: whether it answered the survey, or why not.
pub(crate) type Answered = BTreeMap<String, Result<(), String>>;

/// One VM as its host sees it, beside what the state records.
pub(crate) struct Seen {
    pub deployment: String,
    pub component: String,
    pub host: String,
    /// The recorded status, `-` for a VM the state does not know.
    pub recorded: String,
    /// What the host said, `None` when it did not answer.
    pub vm: Option<VmStatus>,
    /// What differs (empty: nothing).
    pub drift: String,
}

/// Asks every host at once (one request each) about every VM the state
/// places there (of one deployment, with `only`) and the VMs it runs that
/// the state does not know. Also, per host, whether it answered.
pub(crate) fn survey(
    state: &cvl_planner::model::UtilityState,
    only: Option<&str>,
) -> Result<(Vec<Seen>, Answered)> {
    let mut rows = Vec::new();
    let mut answered = BTreeMap::new();
    let connector = connector(state)?;
    let mut by_host: BTreeMap<String, Vec<(String, ComponentPath, Status)>> = BTreeMap::new();
    for host in utility::hosts_or_local(&state.hosts) {
        by_host.entry(host.name).or_default();
    }
    for (deployment, d) in &state.deployments {
        if only.is_some_and(|o| o != deployment) {
            continue;
        }
        for (path, record) in &d.vms {
            by_host.entry(record.alloc.host.clone()).or_default().push((
                deployment.clone(),
                path.clone(),
                record.status,
            ));
        }
    }
    let links = Links::new(&connector);
    let answers: Vec<Result<Response, String>> = std::thread::scope(|scope| {
        let asks: Vec<_> = by_host
            .iter()
            .map(|(host, vms)| {
                let ids: Vec<VmId> = vms
                    .iter()
                    .map(|(d, p, _)| VmId {
                        deployment: d.clone(),
                        path: p.0.clone(),
                    })
                    .collect();
                let links = &links;
                scope.spawn(move || {
                    links.call(
                        host,
                        &Request::Status {
                            vms: ids,
                            all: true,
                        },
                    )
                })
            })
            .collect();
        asks.into_iter()
            .map(|a| {
                a.join()
                    .unwrap_or_else(|_| Err("the status request panicked".into()))
            })
            .collect()
    });
    for ((host, vms), answer) in by_host.iter().zip(answers) {
        let row = |d: &str, p: &str, recorded: &str, vm: Option<&VmStatus>, drift: String| Seen {
            deployment: d.to_string(),
            component: p.to_string(),
            host: host.clone(),
            recorded: recorded.to_string(),
            vm: vm.cloned(),
            drift,
        };
        match answer {
            Ok(Response::Status { vms: seen, unknown }) => {
                answered.insert(host.clone(), Ok(()));
                for ((deployment, path, recorded), seen) in vms.iter().zip(&seen) {
                    let drift = match (recorded, seen.pid.is_some()) {
                        (Status::Running, false) => "DRIFT: recorded running, but no process",
                        (Status::Stopped, true) => "DRIFT: recorded stopped, but it runs",
                        (Status::Running, true) if seen.expects_agent && !seen.agent => {
                            "guest agent not answering"
                        }
                        (Status::Starting | Status::Stopping | Status::Failed, _) => {
                            "an apply did not finish: run cvl plan"
                        }
                        _ => "",
                    };
                    rows.push(row(
                        deployment,
                        &path.0,
                        recorded.as_str(),
                        Some(seen),
                        drift.into(),
                    ));
                }
                for vm in &unknown {
                    if only.is_some_and(|o| o != vm.vm.deployment) {
                        continue;
                    }
                    let drift = "DRIFT: runs, but the state does not know it".to_string();
                    rows.push(row(&vm.vm.deployment, &vm.vm.path, "-", Some(vm), drift));
                }
            }
            Ok(other) => {
                answered.insert(host.clone(), Err(format!("answered {other:?}")));
            }
            Err(e) => {
                if vms.is_empty() {
                    rows.push(row(
                        "-",
                        "-",
                        "-",
                        None,
                        format!("DRIFT: host does not answer: {e}"),
                    ));
                }
                for (deployment, path, recorded) in vms {
                    let drift = format!("DRIFT: host does not answer: {e}");
                    rows.push(row(deployment, &path.0, recorded.as_str(), None, drift));
                }
                answered.insert(host.clone(), Err(e));
            }
        }
    }
    Ok((rows, answered))
}

/// `cvl host serve --root ROOT`: the host agent on stdin/stdout.
pub fn serve(root: &Path) -> Result<ExitCode> {
    // The executor may vanish (killed, or its SSH connection cut): an answer
    // that cannot be written is dropped, and the operations under way
    // finish (each removes its parameters file), rather than the agent
    // dying of SIGPIPE in the middle of them.
    // SAFETY: setting a signal's disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    cvl_executor::agent::serve(root, stdin.lock(), stdout)?;
    Ok(ExitCode::SUCCESS)
}
