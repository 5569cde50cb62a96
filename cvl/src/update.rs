//! `cvl update` and `cvl rollback`: a person changing the versions a
//! deployment runs (the paper's `cui update`). Update takes the newest
//! allowed versions of the deployment's imports (or of one component's)
//! into `cvl.lock`, then plans and applies as `cvl apply` does. Rollback
//! pins a component's appliance back to an earlier version, records the
//! one it leaves as failed (the utility service never takes it again by
//! itself), and applies: the program disks go back, the data disks stay.
//! The utility service does both by itself (service.rs).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use codespan_reporting::term::termcolor::ColorChoice;
use cvl_planner::model::{ComponentPath, FailedVersion};
use cvl_repo::LockMode;

use crate::apply::{self, ExecArgs};
use crate::deploy::{self, PlanFormat};
use crate::workspace::FetchArgs;

#[derive(clap::Args)]
pub struct UpdateArgs {
    /// The CVL file of the deployment.
    pub file: PathBuf,
    /// Only this component's appliance: its import alone goes to its newest
    /// allowed version, and only its update (and what it waits for) runs.
    pub path: Option<String>,
    /// The deployed object of FILE, when it declares several.
    #[arg(long, value_name = "OBJ")]
    pub deploy: Option<String>,
    #[command(flatten)]
    pub exec: ExecArgs,
    #[command(flatten)]
    pub fetch: FetchArgs,
}

#[derive(clap::Args)]
pub struct RollbackArgs {
    /// The CVL file of the deployment.
    pub file: PathBuf,
    /// The component whose appliance goes back.
    pub path: String,
    /// The version to go back to (default: the newest allowed one before
    /// the version it runs).
    #[arg(long, value_name = "N")]
    pub to: Option<u32>,
    /// The deployed object of FILE, when it declares several.
    #[arg(long, value_name = "OBJ")]
    pub deploy: Option<String>,
    /// Its data disks: as they were before the update to the version it
    /// leaves (that update's snapshot), or as they are now. Needed when it
    /// has data disks.
    #[arg(long, value_enum, value_name = "WHICH")]
    pub data: Option<Data>,
    #[command(flatten)]
    pub exec: ExecArgs,
    #[command(flatten)]
    pub fetch: FetchArgs,
}

/// Which data a rollback starts the older version on.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Data {
    /// As it was before the update (its snapshot); what was written since
    /// is lost.
    BeforeUpdate,
    /// As it is (the newer version may have migrated it).
    Current,
}

pub fn update(args: UpdateArgs, color: ColorChoice) -> Result<ExitCode> {
    let _lock = apply::lock_state(&format!("cvl update {}", args.file.display()), &args.exec)?;
    let name = cvl_ops::plan::deployment_of(&args.file, args.deploy.as_deref())?;
    let mut store = cvl_ops::state::open()?;
    let state = store.load()?;
    let mut options = args.fetch.options(LockMode::Update, &args.file)?;
    // Versions that failed their health gate here are not taken again.
    options.settings.blacklist =
        cvl_utility::decide::barred_for(&options.settings.blacklist, &state, &name);
    // What to put back when the component's import cannot be resolved.
    let mut restore = None;
    if let Some(path) = &args.path {
        // Only this component's import: its lock entries go, and a plain
        // load resolves them afresh.
        let url = component_url(&state, &name, path, &args, &options)?;
        let dir = cvl_ops::plan::lock_dir(&args.file)?;
        let mut lock = cvl_repo::lock::LockFile::read(&dir).map_err(anyhow::Error::msg)?;
        restore = Some((dir.clone(), lock.clone()));
        lock.imports
            .retain(|e| !(e.url == url && e.requested.is_none()));
        lock.write(&dir).map_err(anyhow::Error::msg)?;
        options.lock = LockMode::Use;
    }
    let planned = deploy::planned(
        &cvl_ops::plan::Input {
            file: &args.file,
            deploy: args.deploy.as_deref(),
            target: args.path.as_deref(),
            options: cvl_repo::LoadOptions {
                settings: options.settings.clone(),
                lock: options.lock,
            },
            crashed: Default::default(),
            pins: Default::default(),
        },
        color,
    );
    let (plan, sensitive) = match planned {
        Ok(Some(p)) => p,
        failed => {
            if let Err(e) = failed {
                eprintln!("error: {e:#}");
            }
            // Nothing planned: the versions cvl.lock pinned stay pinned.
            if let Some((dir, lock)) = restore {
                lock.write(&dir).map_err(anyhow::Error::msg)?;
            }
            return Ok(ExitCode::from(1));
        }
    };
    if !plan.missing_secrets.is_empty() {
        deploy::output(&plan, PlanFormat::Human, None)?;
        bail!("sensitive values are missing (listed above): nothing was applied");
    }
    apply::execute(
        &plan,
        &sensitive,
        &options.settings,
        &args.exec,
        "cvl update",
    )
}

/// The repository URL (as the import writes it) of the appliance a
/// component runs, from the state, else from a plan of the file.
fn component_url(
    state: &cvl_planner::model::UtilityState,
    deployment: &str,
    path: &str,
    args: &UpdateArgs,
    options: &cvl_repo::LoadOptions,
) -> Result<String> {
    if let Some(vm) = state
        .deployments
        .get(deployment)
        .and_then(|d| d.vms.get(&ComponentPath(path.to_string())))
    {
        return Ok(vm.spec.appliance.source.clone());
    }
    let input = cvl_ops::plan::Input {
        file: &args.file,
        deploy: args.deploy.as_deref(),
        target: None,
        options: cvl_repo::LoadOptions {
            settings: options.settings.clone(),
            lock: LockMode::ReadOnly,
        },
        crashed: Default::default(),
        pins: Default::default(),
    };
    let planned =
        cvl_ops::plan::plan(&input, &mut crate::secrets::Terminal)?.or_first_error(&args.file)?;
    planned
        .0
        .desired
        .get(&ComponentPath(path.to_string()))
        .map(|d| d.appliance.source.clone())
        .with_context(|| {
            format!(
                "{deployment} has no VM appliance `{path}` (it has: {})",
                planned
                    .0
                    .desired
                    .keys()
                    .map(|p| p.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

pub fn rollback(args: RollbackArgs, color: ColorChoice) -> Result<ExitCode> {
    let _lock = apply::lock_state(
        &format!("cvl rollback {} {}", args.file.display(), args.path),
        &args.exec,
    )?;
    let name = cvl_ops::plan::deployment_of(&args.file, args.deploy.as_deref())?;
    let mut store = cvl_ops::state::open()?;
    let state = store.load()?;
    let component = ComponentPath(args.path.clone());
    let Some(vm) = state
        .deployments
        .get(&name)
        .and_then(|d| d.vms.get(&component))
    else {
        bail!(
            "{name} runs no VM appliance `{}`: only a deployed component can go back",
            args.path
        );
    };
    let url = vm.spec.appliance.source.clone();
    let disks: Vec<&str> = vm
        .spec
        .data_disks
        .iter()
        .map(|d| d.device.as_str())
        .collect();
    if !disks.is_empty() && args.data.is_none() {
        bail!(
            "{name}/{} has data disks ({}): say which data the older version starts on. \
             --data before-update puts them back as they were before the update to the version \
             it runs (what was written since is lost); --data current keeps them as they are \
             (the newer version may have changed them in ways the older cannot read)",
            args.path,
            disks.join(", ")
        );
    }
    let Some(current) = vm.spec.appliance.version else {
        bail!(
            "{name}/{} runs an unpublished appliance (from {url}): it has no versions to go back to",
            args.path
        );
    };
    let options = args.fetch.options(LockMode::Use, &args.file)?;
    let to = match args.to {
        Some(n) if n == current => bail!("{name}/{} already runs version {n}", args.path),
        Some(n) => n,
        None => previous_allowed(&options.settings, &state, &name, &url, current, &args.file)?,
    };
    let dir = cvl_ops::plan::lock_dir(&args.file)?;
    cvl_repo::loader::pin(&options.settings, &dir, &url, to).map_err(anyhow::Error::msg)?;
    eprintln!(
        "cvl.lock now pins {url} to version {to}; version {current} is recorded as failed in {name}"
    );
    let who = cvl_ops::run::person("cvl rollback");
    store.commit(&[cvl_planner::Change::VersionFailed {
        deployment: name.clone(),
        failed: FailedVersion {
            url,
            version: current,
            component: component.clone(),
            at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            reason: format!("rolled back by {who}"),
        },
    }])?;
    drop(store);
    let planned = deploy::planned(
        &cvl_ops::plan::Input {
            file: &args.file,
            deploy: args.deploy.as_deref(),
            target: Some(&args.path),
            options,
            crashed: Default::default(),
            pins: Default::default(),
        },
        color,
    );
    let (plan, sensitive) = match planned {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(ExitCode::from(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    let settings = args.fetch.options(LockMode::Use, &args.file)?.settings;
    let mut options = args.exec.walk_options();
    if args.data == Some(Data::BeforeUpdate) {
        options
            .restore_data
            .insert(component, cvl_executor::protocol::snapshot_of_version(to));
    }
    apply::execute_with(
        &plan,
        &sensitive,
        &settings,
        &args.exec,
        &options,
        "cvl rollback",
    )
}

/// The newest version before `current` that neither the blacklist nor a
/// failed health gate bars.
fn previous_allowed(
    settings: &cvl_repo::Settings,
    state: &cvl_planner::model::UtilityState,
    deployment: &str,
    url: &str,
    current: u32,
    file: &Path,
) -> Result<u32> {
    let barred = cvl_utility::decide::barred_for(&settings.blacklist, state, deployment);
    let fetcher = cvl_repo::Fetcher::new(settings.clone());
    let location = cvl_repo::Location::parse(
        &settings.map_url(url),
        Some(&cvl_repo::Location::Dir(cvl_ops::plan::lock_dir(file)?)),
    )
    .map_err(anyhow::Error::msg)?;
    let index = fetcher
        .index(&location)
        .map_err(anyhow::Error::msg)?
        .with_context(|| format!("{} is not a repository", location.display()))?;
    index
        .versions
        .iter()
        .rev()
        .map(|v| v.version)
        .find(|&v| v < current && barred.bars(url, v).is_none())
        .with_context(|| {
            format!("{url} has no allowed version before {current}: name one with --to")
        })
}
