//! `cvl backup` and `cvl restore`: a deployment's data disks copied into a
//! backup store on their host (live, incrementally; `cvl_ops::backup`), and
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
pub struct BackupArgs {
    /// The CVL file of the deployment.
    pub file: PathBuf,
    /// Only this component (default: every appliance with data disks).
    pub path: Option<String>,
    /// The backup store: a folder on the appliances' host (absolute).
    #[arg(long, value_name = "DIR")]
    pub to: String,
    /// A full copy, even where an incremental one could follow the last.
    #[arg(long)]
    pub full: bool,
    /// List the store's restore points instead of making one.
    #[arg(long)]
    pub list: bool,
    /// The deployed object of FILE, when it declares several.
    #[arg(long, value_name = "OBJ")]
    pub deploy: Option<String>,
    /// Output: for people, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
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
    #[arg(long, value_name = "DIR")]
    pub from: String,
    /// The restore point (`cvl backup --list`; default: each disk's newest).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// The deployed object of FILE, when it declares several.
    #[arg(long, value_name = "OBJ")]
    pub deploy: Option<String>,
    #[command(flatten)]
    pub exec: ExecArgs,
    #[command(flatten)]
    pub fetch: FetchArgs,
}

/// `cvl backup`: one appliance at a time, a line each as it ends.
pub fn backup(args: BackupArgs) -> Result<ExitCode> {
    let name = cvl_ops::plan::deployment_of(&args.file, args.deploy.as_deref())?;
    let state = cvl_ops::state::open()?.load()?;
    let only = args.path.as_deref();
    if args.list {
        let listed = cvl_ops::backup::list(&state, &name, only, &args.to)?;
        if args.format == Format::Json {
            let json: serde_json::Map<_, _> = listed
                .iter()
                .map(|(c, b)| (c.0.clone(), serde_json::json!(b)))
                .collect();
            println!("{}", serde_json::to_string_pretty(&json)?);
            return Ok(ExitCode::SUCCESS);
        }
        for (component, backups) in &listed {
            println!("{name}/{}:", component.0);
            if backups.is_empty() {
                println!("  (no restore points in {})", args.to);
            }
            for b in backups {
                println!(
                    "  {:<5} {:<5} {:<12} {:>10}  {}  {}",
                    b.device,
                    b.id,
                    b.kind,
                    human_size(b.size),
                    b.at,
                    b.consistency
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let human = args.format == Format::Human;
    let outcomes = cvl_ops::backup::backup(&state, &name, only, &args.to, args.full, &mut |o| {
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
                        human_size(b.size),
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
    if !human {
        let json: Vec<_> = outcomes
            .iter()
            .map(|o| match &o.result {
                Ok(b) => {
                    serde_json::json!({"component": o.component.0, "host": o.host, "backups": b})
                }
                Err(e) => {
                    serde_json::json!({"component": o.component.0, "host": o.host, "error": e})
                }
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
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
    // Which restore point, checked before anything stops.
    let listed = cvl_ops::backup::list(&state, &name, Some(&args.path), &args.from)?;
    let points: Vec<_> = listed.iter().flat_map(|(_, b)| b).collect();
    match &args.id {
        Some(id) if !points.iter().any(|b| &b.id == id) => bail!(
            "{name}/{} has no restore point {id} in {} (it has: {})",
            args.path,
            args.from,
            points
                .iter()
                .map(|b| b.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None if points.is_empty() => {
            bail!(
                "{name}/{} has no restore points in {}",
                args.path,
                args.from
            )
        }
        _ => {}
    }
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
        cvl_ops::backup::restore(&state, &name, &args.path, &args.from, args.id.as_deref())?
    {
        let kept = match kept.as_str() {
            "" => String::new(),
            k => format!("; the data it had is kept as {k}"),
        };
        println!(
            "{name}/{} {device}: put back to restore point {id}{kept}",
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

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
