//! `cvl move FILE PATH --to HOST`: one appliance to a host a person names,
//! live by default (`--offline`: stopped, copied, started), and the flags
//! that bound every live move (`cvl apply` of a host drained live takes
//! them too). The planner decides how the move goes and says why; this
//! plans with the component pinned to the host, shows the plan, asks, and
//! carries it out as `cvl apply` does.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use codespan_reporting::term::termcolor::ColorChoice;
use cvl_executor::apply as walk;
use cvl_planner::model::ComponentPath;
use cvl_planner::plan::ActionKind;
use cvl_repo::LockMode;

use crate::apply::{self, ExecArgs};
use crate::deploy::{self, PlanFormat};
use crate::workspace::FetchArgs;

/// How a live move is bounded, and what happens when it cannot finish.
#[derive(clap::Args, Clone)]
pub struct LiveArgs {
    /// The longest a live move may pause its guest at the end (`300ms`,
    /// libvirt's default): memory is sent until what is left fits.
    #[arg(long, value_name = "DURATION", default_value = "300ms", value_parser = humantime::parse_duration)]
    pub max_downtime: Duration,
    /// How long a live move may take in all (`10m`, `90s`); past it the
    /// move is cancelled and the appliance runs where it was.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub move_timeout: Duration,
    /// A live move that does not finish within --move-timeout is done
    /// offline instead (stopped, copied, started), and the history says so.
    #[arg(long)]
    pub offline_fallback: bool,
}

impl LiveArgs {
    /// `options` with these bounds.
    pub(crate) fn apply_to(&self, options: walk::Options) -> walk::Options {
        walk::Options {
            live: cvl_executor::transport::LiveLimits {
                max_downtime_ms: u64::try_from(self.max_downtime.as_millis()).unwrap_or(u64::MAX),
                timeout: self.move_timeout,
            },
            offline_fallback: self.offline_fallback,
            ..options
        }
    }
}

#[derive(clap::Args)]
pub struct MoveArgs {
    /// The CVL file of the deployment.
    pub file: PathBuf,
    /// The VM appliance to move (`p`, `office.mail`).
    pub path: String,
    /// The host to move it to (`cvl host list`).
    #[arg(long, value_name = "HOST")]
    pub to: String,
    /// Stop it, copy its disks and start it on HOST (an outage of a boot)
    /// rather than move it running.
    #[arg(long, conflicts_with = "offline_fallback")]
    pub offline: bool,
    /// The object to deploy (default: the file's only object).
    #[arg(long, value_name = "OBJ")]
    pub deploy: Option<String>,
    /// `json`: print the plan only, change nothing.
    #[arg(long, value_enum, default_value_t = PlanFormat::Human)]
    pub format: PlanFormat,
    #[command(flatten)]
    pub live: LiveArgs,
    #[command(flatten)]
    pub exec: ExecArgs,
}

pub fn run(args: MoveArgs, color: ColorChoice) -> Result<ExitCode> {
    let _lock = apply::lock_state(
        &format!("cvl move {} {}", args.file.display(), args.path),
        &args.exec,
    )?;
    let path = ComponentPath(args.path.clone());
    // The versions in cvl.lock, as they are: a move takes no new one (and
    // `--offline` here is the move's, not the download cache's).
    let load = FetchArgs::default().options(LockMode::Locked, &args.file)?;
    let settings = load.settings.clone();
    let input = cvl_ops::plan::Input {
        file: &args.file,
        deploy: args.deploy.as_deref(),
        // The move, and only what it waits for.
        target: Some(&args.path),
        options: load,
        crashed: Default::default(),
        pins: [(
            path.clone(),
            cvl_planner::Pin {
                host: args.to.clone(),
                offline: args.offline,
            },
        )]
        .into(),
    };
    let (plan, sensitive) = match deploy::planned(&input, color) {
        Ok(Some(planned)) => planned,
        Ok(None) => return Ok(ExitCode::from(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    if args.format == PlanFormat::Json {
        deploy::output(&plan, PlanFormat::Json, None)?;
        return Ok(ExitCode::SUCCESS);
    }
    let moves = plan
        .actions
        .iter()
        .any(|a| a.component == path && a.action == ActionKind::Move);
    if !moves {
        let there = plan.allocations.get(&path).map(|a| a.host.as_str());
        if there == Some(args.to.as_str()) {
            println!("{path} is on {} already: nothing to move.", args.to);
            if plan.has_changes() {
                println!("(Other changes of {path} wait for `cvl apply`.)");
            }
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "error: the plan does not move {path} to {} (it is on {}); the plan for it:",
            args.to,
            there.unwrap_or("no host")
        );
        deploy::output(&plan, PlanFormat::Human, None)?;
        return Ok(ExitCode::from(1));
    }
    if !plan.missing_secrets.is_empty() {
        deploy::output(&plan, PlanFormat::Human, None)?;
        eprintln!(
            "error: sensitive values are missing (listed above): supply them as `cvl apply` \
             says; nothing was moved"
        );
        return Ok(ExitCode::from(1));
    }
    apply::execute_with(
        &plan,
        &sensitive,
        &settings,
        &args.exec,
        &args.live.apply_to(args.exec.walk_options()),
        "cvl move",
    )
}
