//! `cvl backup` and `cvl restore`: a deployment's data disks copied into a
//! backup store on their host or another (live, incrementally;
//! `cvl_ops::backup`), and
//! a component put back to a restore point (stopped, restored, started).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use codespan_reporting::term::termcolor::ColorChoice;
use cvl_planner::model::{ComponentPath, Status};

use crate::apply::{self, ExecArgs};
use crate::deploy;
use crate::workspace::FetchArgs;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    #[command(flatten)]
    pub at: Option<Where>,
    /// A full copy, even where an incremental one could follow the last.
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub keep: KeepArgs,
}

#[derive(clap::Subcommand)]
pub enum BackupCommand {
    /// List the store's restore points of a deployment's data disks.
    #[command(
        after_help = "Examples:\n  cvl backup list AcmeSuite.cvl --to /srv/backups\n  \
        cvl backup list AcmeSuite l --to ssh://backup1/srv/backups --format json"
    )]
    List(Where),
    /// Check every restore point in the store: each file whole (size and
    /// SHA-256 as its manifest recorded), a sound qcow2, its parent present.
    #[command(
        after_help = "Exit codes: 0 every restore point is whole, 1 one is not (each is \
        named, with what is wrong), 2 an error (no such deployment, no host to ask).\n\n\
        Examples:\n  cvl backup verify AcmeSuite.cvl --to /srv/backups\n  \
        cvl backup verify AcmeSuite.cvl l --to /srv/backups --format json"
    )]
    Verify(Where),
    /// Drop the restore points a retention policy does not keep; the kept
    /// ones still restore exactly as before.
    #[command(
        after_help = "--keep-last N keeps the newest N, --keep-daily N the newest of each \
        of the N newest days (UTC) that have one; what either keeps is kept, and the newest \
        always. A kept restore point whose parent is dropped is rebased onto the kept one \
        before it (qemu-img rebase, on a copy), or made full; the manifest names the new \
        files before the old ones go, so a prune cut short loses nothing. A store with a \
        damaged file is not pruned.\n\n\
        Examples:\n  cvl backup prune AcmeSuite.cvl --to /srv/backups --keep-last 24\n  \
        cvl backup prune AcmeSuite.cvl --to /srv/backups --keep-last 4 --keep-daily 7"
    )]
    Prune(PruneArgs),
}

/// Which deployment, which component, which store.
#[derive(clap::Args)]
pub struct Where {
    /// The CVL file of the deployment, or the deployment's name (as `cvl
    /// status` shows it).
    #[arg(value_name = "FILE|DEPLOYMENT")]
    pub file: PathBuf,
    /// Only this component (default: every appliance with data disks).
    pub path: Option<String>,
    /// The backup store: a folder on each appliance's own host
    /// (`/srv/cvl-backups`, `file:///srv/cvl-backups`), or on a registered
    /// host reached over SSH, its key pinned (`ssh://HOST/srv/cvl-backups`).
    #[arg(long, value_name = "DIR|URL")]
    pub to: String,
    /// The deployed object of FILE, when it declares several.
    #[arg(long, value_name = "OBJ")]
    pub deploy: Option<String>,
    /// Output: for people, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

#[derive(clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub at: Where,
    #[command(flatten)]
    pub keep: KeepArgs,
}

#[derive(clap::Args, Clone, Copy)]
pub struct KeepArgs {
    /// Then keep only the newest N restore points (and what
    /// --keep-daily keeps).
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Then keep only the newest restore point of each of the newest N
    /// days (and what --keep-last keeps).
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
}

impl KeepArgs {
    fn keep(self) -> Option<cvl_ops::backup::Keep> {
        (self.keep_last.is_some() || self.keep_daily.is_some()).then_some(cvl_ops::backup::Keep {
            last: self.keep_last,
            daily: self.keep_daily,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The CVL file of the deployment.
    pub file: PathBuf,
    /// The component whose data disks go back.
    pub path: String,
    /// The backup store the restore point is in (as `cvl backup --to`).
    #[arg(long, value_name = "DIR|URL")]
    pub from: String,
    /// The restore point (`cvl backup list`; default: each disk's newest).
    #[arg(long, value_name = "ID", conflicts_with = "at")]
    pub id: Option<String>,
    /// Restore another appliance's data: its restore points in the store
    /// (DEPLOYMENT/PATH; a copy of production data for a test deployment).
    /// Its data disks' devices must be this component's.
    #[arg(long, value_name = "DEPLOYMENT/PATH")]
    pub of: Option<String>,
    /// The restore point that was each disk's newest at TIME (UTC:
    /// `2026-12-06T14:00:00Z` or `"2026-12-06 14:00:00"`).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// The deployed object of FILE, when it declares several.
    #[arg(long, value_name = "OBJ")]
    pub deploy: Option<String>,
    #[command(flatten)]
    pub exec: ExecArgs,
    #[command(flatten)]
    pub fetch: FetchArgs,
}

/// `cvl backup` and its subcommands.
pub fn backup(args: BackupArgs) -> Result<ExitCode> {
    match (args.command, &args.at) {
        (Some(BackupCommand::List(at)), _) => list(&at),
        (Some(BackupCommand::Verify(at)), _) => verify(&at),
        (Some(BackupCommand::Prune(p)), _) => {
            let Some(keep) = p.keep.keep() else {
                bail!("cvl backup prune needs --keep-last N or --keep-daily N (or both): without either it would keep everything");
            };
            prune(&p.at, keep)
        }
        (None, Some(at)) => take_backup(at, args.full, args.keep),
        (None, None) => bail!(
            "cvl backup needs a deployment and a store: cvl backup FILE [PATH] --to DIR \
             (or cvl backup list|verify|prune; see cvl backup --help)"
        ),
    }
}

/// The deployment FILE names (or FILE is the name of, when no such file
/// exists: the store outlives the CVL), and the state.
fn opened(at: &Where) -> Result<(String, cvl_planner::model::UtilityState)> {
    let state = cvl_ops::state::open()?.load()?;
    let named = at
        .file
        .to_str()
        .filter(|n| state.deployments.contains_key(*n));
    let name = match named {
        Some(name) if !at.file.exists() => name.to_string(),
        _ => cvl_ops::plan::deployment_of(&at.file, at.deploy.as_deref())?,
    };
    Ok((name, state))
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn list(at: &Where) -> Result<ExitCode> {
    let (name, state) = opened(at)?;
    let listed = cvl_ops::backup::list(&state, &name, at.path.as_deref(), &at.to)?;
    if at.format == Format::Json {
        let json: serde_json::Map<_, _> = listed
            .iter()
            .map(|(c, b)| (c.0.clone(), serde_json::json!(b)))
            .collect();
        print_json(&json)?;
        return Ok(ExitCode::SUCCESS);
    }
    for (component, backups) in &listed {
        println!("{name}/{}:", component.0);
        if backups.is_empty() {
            println!("  (no restore points in {})", at.to);
        }
        for b in backups {
            println!("  {}", point_line(b));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn point_line(b: &cvl_executor::protocol::Backup) -> String {
    let on = b
        .parent
        .as_ref()
        .map_or(String::new(), |p| format!(" on {p}"));
    format!(
        "{:<7} {:<5} {:<12} {:>10}  {}  {}{on}",
        b.device,
        b.id,
        b.kind,
        cvl_utility::web::view::bytes(b.size),
        b.at,
        b.consistency
    )
}

fn verify(at: &Where) -> Result<ExitCode> {
    let (name, state) = opened(at)?;
    let checked = cvl_ops::backup::verify(&state, &name, at.path.as_deref(), &at.to)?;
    let bad = checked
        .iter()
        .flat_map(|(_, c)| c)
        .filter(|c| c.problem.is_some())
        .count();
    let total: usize = checked.iter().map(|(_, c)| c.len()).sum();
    if at.format == Format::Json {
        let json: serde_json::Map<_, _> = checked
            .iter()
            .map(|(c, checks)| (c.0.clone(), serde_json::json!(checks)))
            .collect();
        print_json(&json)?;
    } else {
        for (component, checks) in &checked {
            for c in checks {
                match &c.problem {
                    None => println!("{name}/{} {} {}: whole", component.0, c.device, c.point),
                    Some(p) => println!(
                        "{name}/{} {} {}: DAMAGED: {p}",
                        component.0, c.device, c.point
                    ),
                }
            }
        }
        match (total, bad) {
            (0, _) => println!("no restore points in {}", at.to),
            (n, 0) => println!("all {n} restore points are whole"),
            (n, b) => println!("{b} of {n} restore points are damaged: restore from another, and take a --full backup"),
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn prune(at: &Where, keep: cvl_ops::backup::Keep) -> Result<ExitCode> {
    let (name, state) = opened(at)?;
    let pruned = cvl_ops::backup::prune(&state, &name, at.path.as_deref(), &at.to, keep)?;
    if at.format == Format::Json {
        let json: serde_json::Map<_, _> = pruned
            .iter()
            .map(|p| {
                let json = serde_json::json!({"dropped": p.dropped, "kept": p.kept});
                (p.component.0.clone(), json)
            })
            .collect();
        print_json(&json)?;
        return Ok(ExitCode::SUCCESS);
    }
    print_pruned(&name, &pruned);
    Ok(ExitCode::SUCCESS)
}

fn print_pruned(name: &str, pruned: &[cvl_ops::backup::Pruned]) {
    for cvl_ops::backup::Pruned {
        component,
        dropped,
        kept,
    } in pruned
    {
        let ids = |b: &[cvl_executor::protocol::Backup]| {
            b.iter()
                .map(|b| b.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        if dropped.is_empty() {
            println!(
                "{name}/{}: nothing to drop ({} kept)",
                component.0,
                kept.len()
            );
        } else {
            println!(
                "{name}/{}: dropped {}; kept {}",
                component.0,
                ids(dropped),
                ids(kept)
            );
        }
    }
}

/// `cvl backup FILE`: one appliance at a time, a line each as it ends;
/// then the retention asked for, if any.
fn take_backup(at: &Where, full: bool, keep: KeepArgs) -> Result<ExitCode> {
    let (name, state) = opened(at)?;
    let only = at.path.as_deref();
    let human = at.format == Format::Human;
    let outcomes = cvl_ops::backup::backup(&state, &name, only, &at.to, full, &mut |o| {
        if !human {
            return;
        }
        match &o.result {
            Ok(made) => {
                for b in made {
                    println!(
                        "{name}/{} {}: restore point {} ({}, {} copied, {})",
                        o.component.0,
                        b.device,
                        b.id,
                        b.kind,
                        cvl_utility::web::view::bytes(b.size),
                        b.consistency
                    );
                }
            }
            Err(e) => eprintln!("{name}/{} on {}: backup failed: {e}", o.component.0, o.host),
        }
    })?;
    if outcomes.is_empty() {
        eprintln!("{name} has no data disks: there is nothing to back up");
    }
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    // Retention only after a backup that worked: a failing store keeps
    // what it has.
    let pruned = match keep.keep() {
        Some(keep) if failed == 0 && !outcomes.is_empty() => {
            cvl_ops::backup::prune(&state, &name, only, &at.to, keep)?
        }
        _ => Vec::new(),
    };
    if human {
        print_pruned(&name, &pruned);
    } else {
        let json: Vec<_> = outcomes
            .iter()
            .map(|o| {
                let mut j = match &o.result {
                    Ok(b) => serde_json::json!({"component": o.component.0, "host": o.host, "backups": b}),
                    Err(e) => serde_json::json!({"component": o.component.0, "host": o.host, "error": e}),
                };
                if let Some(p) = pruned.iter().find(|p| p.component == o.component) {
                    j["dropped"] = serde_json::json!(p.dropped);
                }
                j
            })
            .collect();
        print_json(&json)?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `cvl restore`: stops the component (and what requires it) as `cvl stop`
/// does, puts its data disks back, and starts it as `cvl apply` would.
pub fn restore(args: RestoreArgs, color: ColorChoice) -> Result<ExitCode> {
    let what = format!("cvl restore {} {}", args.file.display(), args.path);
    let _lock = apply::lock_state(&what, &args.exec)?;
    let name = cvl_ops::plan::deployment_of(&args.file, args.deploy.as_deref())?;
    let component = ComponentPath(args.path.clone());
    let state = cvl_ops::state::open()?.load()?;
    // Whose restore points, and which, checked before anything stops.
    let (of, chosen) = cvl_ops::backup::choose(
        &state,
        &name,
        &args.path,
        &args.from,
        args.of.as_deref(),
        args.id.as_deref(),
        args.at.as_deref(),
    )?;
    let settings = args
        .fetch
        .options(cvl_repo::LockMode::Use, &args.file)?
        .settings;
    let running = state.deployments[&name].vms[&component].status != Status::Stopped;
    if running {
        let plan = cvl_planner::plan_stop(&state, &name, Some(&component))?;
        let stopped = apply::execute(
            &plan,
            &Default::default(),
            &settings,
            &args.exec,
            "cvl restore (stop)",
        )?;
        if stopped != ExitCode::SUCCESS {
            eprintln!("{name}/{} did not stop: nothing was restored", args.path);
            return Ok(stopped);
        }
    }
    let state = cvl_ops::state::open()?.load()?;
    for (device, id, kept) in
        cvl_ops::backup::restore(&state, &name, &args.path, &args.from, &chosen, of.as_ref())?
    {
        let kept = match kept.as_str() {
            "" => String::new(),
            k => format!("; the data it had is kept as {k}"),
        };
        let of = match &args.of {
            Some(of) => format!(" of {of}"),
            None => String::new(),
        };
        println!(
            "{name}/{} {device}: put back to restore point {id}{of}{kept}",
            args.path
        );
    }
    let planned = deploy::planned(
        &cvl_ops::plan::Input {
            file: &args.file,
            deploy: args.deploy.as_deref(),
            target: Some(&args.path),
            options: args.fetch.options(cvl_repo::LockMode::Use, &args.file)?,
            crashed: Default::default(),
            pins: Default::default(),
        },
        color,
    )?;
    let Some((plan, sensitive)) = planned else {
        return Ok(ExitCode::from(1));
    };
    // The person approved the restore with the stop: starting it again is
    // part of it.
    let exec = ExecArgs {
        auto_approve: args.exec.auto_approve || running,
        ..args.exec.clone()
    };
    apply::execute(&plan, &sensitive, &settings, &exec, "cvl restore")
}
