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

use anyhow::{bail, Result};
use codespan_reporting::term::termcolor::ColorChoice;
use cvl_executor::apply::{self as walk, Event, Outcome};
use cvl_planner::lower::SensitiveValues;
use cvl_planner::model::ComponentPath;
use cvl_planner::plan::Plan;

use crate::deploy::{self, PlanFormat};
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
    /// How many snapshots of its data from before an update each data disk
    /// keeps (the newest; an update takes one, a qcow2 snapshot, no copy).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_snapshots: u32,
}

impl ExecArgs {
    pub(crate) fn walk_options(&self) -> walk::Options {
        walk::Options {
            parallelism: self.parallelism,
            stop_timeout_secs: self.stop_timeout,
            ready_timeout_secs: self.ready_timeout,
            keep_snapshots: self.keep_snapshots,
            ..walk::Options::default()
        }
    }
}

/// One apply at a time on the state: held from planning to the end.
pub(crate) fn lock_state(what: &str, exec: &ExecArgs) -> Result<cvl_state::ApplyLock> {
    let store = cvl_ops::state::open()?;
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
    /// Plan against the state as recorded, without asking the hosts what
    /// runs (an appliance whose QEMU is gone is then not started again).
    #[arg(long)]
    pub no_refresh: bool,
    /// Recover this component of a fenced host with empty data disks when
    /// it has no usable backup (its data is then gone; repeatable).
    #[arg(long, value_name = "PATH")]
    pub accept_empty: Vec<String>,
    #[command(flatten)]
    pub live: crate::moves::LiveArgs,
    #[command(flatten)]
    pub exec: ExecArgs,
    #[command(flatten)]
    pub load: LoadArgs,
}

impl ApplyArgs {
    fn walk_options(&self) -> walk::Options {
        self.live.apply_to(walk::Options {
            accept_empty: self
                .accept_empty
                .iter()
                .map(|p| cvl_planner::ComponentPath(p.clone()))
                .collect(),
            ..self.exec.walk_options()
        })
    }
}

#[derive(clap::Args)]
pub struct StopArgs {
    /// The CVL file of the deployment.
    pub file: PathBuf,
    /// A component to stop, with everything that requires it (default: all).
    pub path: Option<String>,
    /// The object to deploy (default: the file's only object).
    #[arg(long, value_name = "OBJ")]
    pub deploy: Option<String>,
    /// Save the stop plan here too.
    #[arg(long, value_name = "PLAN")]
    pub out: Option<PathBuf>,
    /// `json`: print the plan only, change nothing.
    #[arg(long, value_enum, default_value_t = PlanFormat::Human)]
    pub format: PlanFormat,
    #[command(flatten)]
    pub exec: ExecArgs,
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
    let planned = match deploy::make_plan(
        &args.file,
        &args.deploy,
        &args.target,
        &args.load,
        !args.no_refresh,
        color,
    ) {
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
    execute_with(
        &plan,
        &sensitive,
        &settings,
        &args.exec,
        &args.walk_options(),
        "cvl apply",
    )
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
        !args.no_refresh,
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
    execute_with(
        &saved,
        &sensitive,
        &settings,
        &args.exec,
        &args.walk_options(),
        "cvl apply",
    )
}

/// `cvl stop FILE [PATH]`: plans the stop and carries it out.
pub fn stop(args: StopArgs) -> Result<ExitCode> {
    let source = crate::files::read(&args.file)?;
    let mut host = cvl_analysis::AnalysisHost::new();
    let file = host.add_file(source.name.clone(), source.text.clone());
    let name = cvl_ops::plan::deployed(&host.analysis(), file, &args.file, args.deploy.as_deref())?;
    let _lock = lock_state(&format!("cvl stop {}", args.file.display()), &args.exec)?;
    let mut store = cvl_ops::state::open()?;
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
    execute_with(
        plan,
        sensitive,
        settings,
        exec,
        &exec.walk_options(),
        command,
    )
}

/// [`execute`] with walk options of the caller's (a rollback's data).
pub(crate) fn execute_with(
    plan: &Plan,
    sensitive: &SensitiveValues,
    settings: &cvl_repo::Settings,
    exec: &ExecArgs,
    options: &walk::Options,
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
    let summary = cvl_ops::run::run_plan(
        plan,
        sensitive,
        settings,
        options,
        &cvl_ops::run::person(command),
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
        for (component, failure) in &summary.failed {
            eprintln!("  failed  {}: {failure}", component.0);
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
                    ..
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
                    ..
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
        Outcome::Failed(failure) => format!("{action:<7} {}: FAILED: {failure}", component.0),
        Outcome::Skipped(because) => format!(
            "{action:<7} {}: skipped ({} failed)",
            component.0, because.0
        ),
    }
}

pub fn status(args: StatusArgs) -> Result<ExitCode> {
    let mut store = cvl_ops::state::open()?;
    let state = store.load()?;
    let only = match &args.file {
        Some(path) => Some(cvl_ops::plan::deployment_of(path, args.deploy.as_deref())?),
        None => None,
    };
    let rows = cvl_ops::survey::rows(&state, only.as_deref())?;
    let drift = rows
        .iter()
        .any(|r| !r["drift"].as_str().unwrap_or("").is_empty());
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
                for (disk, names) in r["snapshots"].as_object().into_iter().flatten() {
                    if let Some(newest) = names.as_array().and_then(|n| n.last()) {
                        if !notes.is_empty() {
                            notes.push_str("; ");
                        }
                        notes
                            .push_str(&format!("{disk} kept as {}", newest.as_str().unwrap_or("")));
                    }
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
