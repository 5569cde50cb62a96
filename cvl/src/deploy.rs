//! `cvl plan`, `cvl show`, `cvl stop` and `cvl graph`: the deployed object
//! through the planner (lower, allocate, desired, diff) against the
//! utility's state (`cvl_ops::plan`), rendered for people or as JSON, and
//! plan files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use codespan_reporting::term::termcolor::ColorChoice;
use cvl_ops::plan::Planned;
use cvl_planner::lower::SensitiveValues;
use cvl_planner::plan::Plan;
use cvl_repo::LockMode;

use crate::render;
use crate::workspace::LoadArgs;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// A summary line per action, then the details.
    Human,
    /// The plan itself (docs/plans.md), as `--out` saves it.
    Json,
}

#[derive(clap::Args)]
pub struct PlanArgs {
    /// The CVL file of the deployment.
    pub file: PathBuf,
    /// The object to deploy (default: the file's only object).
    #[arg(long, value_name = "OBJ")]
    pub deploy: Option<String>,
    /// Only this component (a dotted path such as `d` or `s.x`) and what its
    /// actions wait for.
    #[arg(long, value_name = "PATH")]
    pub target: Option<String>,
    /// Save the plan here (JSON), for `cvl show` and, later, `cvl apply`.
    #[arg(long, value_name = "PLAN")]
    pub out: Option<PathBuf>,
    /// Output: for people, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = PlanFormat::Human)]
    pub format: PlanFormat,
    /// Exit 2 when the plan has changes, 0 when it has none (1 on errors).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Plan against the state as recorded, without asking the hosts what
    /// runs (an appliance whose QEMU is gone is then not started again).
    #[arg(long)]
    pub no_refresh: bool,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// A plan saved by `cvl plan --out`.
    pub plan: PathBuf,
    /// Output: for people, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = PlanFormat::Human)]
    pub format: PlanFormat,
}

#[derive(clap::Args)]
pub struct GraphArgs {
    /// The CVL file of the deployment.
    pub file: PathBuf,
    /// The object to deploy (default: the file's only object).
    #[arg(long, value_name = "OBJ")]
    pub deploy: Option<String>,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// A plan of the file's deployment against the state, with the sensitive
/// values it carries (memory only), or the reason there is none (already
/// printed when it is the file's errors).
pub(crate) fn make_plan(
    file: &Path,
    deploy: &Option<String>,
    target: &Option<String>,
    load: &LoadArgs,
    refresh: bool,
    color: ColorChoice,
) -> Result<Option<(Plan, SensitiveValues)>> {
    let crashed = if refresh {
        cvl_ops::plan::deployment_of(file, deploy.as_deref())
            .and_then(|name| Ok(cvl_ops::survey::crashed(&cvl_ops::state::read()?, &name)))
            .unwrap_or_default()
    } else {
        Default::default()
    };
    planned(
        &cvl_ops::plan::Input {
            file,
            deploy: deploy.as_deref(),
            target: target.as_deref(),
            options: load.options(LockMode::Use, file)?,
            // Recorded running and gone: started again, as a person who
            // applies expects of a deployment that drifted.
            crashed,
            pins: Default::default(),
        },
        color,
    )
}

/// `cvl_ops::plan::plan` for a person at a terminal (asked for what is
/// missing): newer versions noted, the file's errors rendered.
pub(crate) fn planned(
    input: &cvl_ops::plan::Input,
    color: ColorChoice,
) -> Result<Option<(Plan, SensitiveValues)>> {
    match cvl_ops::plan::plan(input, &mut crate::secrets::Terminal)? {
        Planned::Plan {
            plan,
            sensitive,
            notices,
            ..
        } => {
            for notice in notices {
                eprintln!("note: {notice}");
            }
            Ok(Some((plan, sensitive)))
        }
        Planned::Errors {
            loaded,
            errors,
            notices,
            ..
        } => {
            for notice in notices {
                eprintln!("note: {notice}");
            }
            let mut sources = render::Sources::default();
            for file in &loaded.files {
                sources.add(
                    loaded.analysis.file_name(*file),
                    loaded.analysis.file_text(*file),
                );
            }
            render::print(render::Format::Human, color, &sources, &errors)?;
            bail!(
                "{} error(s) in {} (shown above): nothing was planned",
                errors.len(),
                input.file.display()
            );
        }
    }
}

pub fn plan(args: PlanArgs, color: ColorChoice) -> Result<ExitCode> {
    let plan = match make_plan(
        &args.file,
        &args.deploy,
        &args.target,
        &args.load,
        !args.no_refresh,
        color,
    ) {
        Ok(Some((plan, _))) => plan,
        Ok(None) => return Ok(ExitCode::from(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    output(&plan, args.format, args.out.as_deref())?;
    Ok(if args.detailed_exitcode && plan.has_changes() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn show(args: ShowArgs) -> Result<ExitCode> {
    let bytes = std::fs::read(&args.plan)
        .with_context(|| format!("cannot read {}", args.plan.display()))?;
    let plan: Plan = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not a plan saved by `cvl plan --out` (or of another format)",
            args.plan.display()
        )
    })?;
    output(&plan, args.format, None)?;
    Ok(ExitCode::SUCCESS)
}

pub fn graph(args: GraphArgs, color: ColorChoice) -> Result<ExitCode> {
    let Some((plan, _)) = make_plan(&args.file, &args.deploy, &None, &args.load, false, color)?
    else {
        return Ok(ExitCode::from(1));
    };
    print!("{}", cvl_planner::show::dot(&plan));
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn output(plan: &Plan, format: PlanFormat, out: Option<&Path>) -> Result<()> {
    if let Some(path) = out {
        let mut text = serde_json::to_string_pretty(plan)?;
        text.push('\n');
        cvl_repo::write_atomic(path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    match format {
        PlanFormat::Json => render::print_json(&serde_json::to_value(plan)?)?,
        PlanFormat::Human => {
            let stdout = std::io::stdout();
            let mut w = stdout.lock();
            cvl_planner::show::human(&mut w, plan)?;
            if let Some(path) = out {
                writeln!(w, "\nSaved to {}.", path.display())?;
            }
        }
    }
    Ok(())
}
