//! `cvl plan`, `cvl show`, `cvl stop` and `cvl graph`: the deployed object
//! through the planner (lower, allocate, desired, diff) against the
//! utility's state, rendered for people or as JSON. The planner is pure;
//! this module does its I/O: loading CVL, reading VM descriptions,
//! sensitive values from the environment, the state store, plan files.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use codespan_reporting::term::termcolor::ColorChoice;
use cvl_analysis::{Analysis, CheckOptions, Def, Severity, SourceFile};
use cvl_planner::lower::{self, ImportFacts, Program, Programs};
use cvl_planner::model::{ComponentPath, ParamValue};
use cvl_planner::plan::{ActionKind, Plan};
use cvl_repo::{Fetcher, LockMode};

use crate::render;
use crate::utility;
use crate::workspace::{self, LoadArgs};

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
    #[command(flatten)]
    pub load: LoadArgs,
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
    pub exec: crate::apply::ExecArgs,
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

/// Reads VM descriptions where each appliance came from.
struct RepoPrograms<'a> {
    analysis: &'a Analysis,
    fetcher: Fetcher,
}

impl Programs for RepoPrograms<'_> {
    fn program(
        &mut self,
        file: SourceFile,
        vm: &str,
        import: Option<&ImportFacts>,
        data_devices: &[String],
    ) -> Result<Program, String> {
        let facts = match import {
            Some(ImportFacts {
                url,
                version: Some(version),
                repository: Some(repository),
                ..
            }) => cvl_repo::program::from_repository(&self.fetcher, repository, url, *version, vm)?,
            _ => {
                let name = self.analysis.file_name(file);
                let dir = Path::new(name).parent().unwrap_or(Path::new("."));
                cvl_repo::program::from_folder(dir, vm, data_devices)?
            }
        };
        Ok(Program {
            source: facts.source,
            digest: facts.digest,
            memory_mib: facts.memory_mib,
            agent: facts.agent,
        })
    }
}

/// The object to deploy: `--deploy`, or the file's only object.
/// The deployment a file names: its only object, or `--deploy`'s.
pub(crate) fn deployment_of(path: &Path, deploy: &Option<String>) -> Result<String> {
    let source = crate::files::read(path)?;
    let mut host = cvl_analysis::AnalysisHost::new();
    let file = host.add_file(source.name.clone(), source.text.clone());
    deployed(&host.analysis(), file, path, deploy)
}

pub(crate) fn deployed(
    analysis: &Analysis,
    file: SourceFile,
    path: &Path,
    deploy: &Option<String>,
) -> Result<String> {
    let tree = analysis.item_tree(file)?;
    let names: Vec<&str> = tree
        .objects
        .iter()
        .map(|o| o.data.name.text.as_ref())
        .collect();
    match deploy {
        Some(name) if names.contains(&name.as_str()) => Ok(name.clone()),
        Some(name) => bail!(
            "no object named `{name}` in {} (it declares: {})",
            path.display(),
            names.join(", ")
        ),
        None if names.len() == 1 => Ok(names[0].to_string()),
        None => bail!(
            "{} declares {} objects ({}): name the one to deploy with --deploy",
            path.display(),
            names.len(),
            names.join(", ")
        ),
    }
}

/// A plan of the file's deployment against the state, with the sensitive
/// values it carries (memory only), or the reason there is none (already
/// printed when it is the file's errors).
pub(crate) fn make_plan(
    file: &Path,
    deploy: &Option<String>,
    target: &Option<String>,
    load: &LoadArgs,
    color: ColorChoice,
) -> Result<Option<(Plan, lower::SensitiveValues)>> {
    plan_with(
        &PlanInput {
            file,
            deploy,
            target,
            options: load.options(LockMode::Use, file)?,
        },
        Some(color),
    )
}

/// What to plan, however the command came to it: the deployment's file,
/// its object and target, and how its imports load (the command line's
/// settings and lock mode, or those the state recorded).
pub(crate) struct PlanInput<'a> {
    pub file: &'a Path,
    pub deploy: &'a Option<String>,
    pub target: &'a Option<String>,
    pub options: cvl_repo::LoadOptions,
}

/// [`make_plan`] from a [`PlanInput`]. With `render`, the file's errors are
/// printed for people; without (the service), the first one is the error.
pub(crate) fn plan_with(
    input: &PlanInput,
    render: Option<ColorChoice>,
) -> Result<Option<(Plan, lower::SensitiveValues)>> {
    let PlanInput {
        file,
        deploy,
        target,
        ..
    } = *input;
    let ws = workspace::load_with(std::slice::from_ref(&file.to_path_buf()), &input.options)?;
    let Some(&root) = ws.roots.first() else {
        match render {
            Some(color) => {
                render::print(render::Format::Human, color, &ws.sources, &ws.unreadable)?
            }
            None => bail!("{} cannot be read as UTF-8", file.display()),
        }
        return Ok(None);
    };
    let name = deployed(&ws.analysis, root, file, deploy)?;
    let options = CheckOptions {
        deploy: vec![name.clone()],
    };
    let errors: Vec<_> = ws
        .analysis
        .diagnostics(root, &options)?
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    if !errors.is_empty() {
        let Some(color) = render else {
            bail!(
                "{} error(s) in {}, the first: {}: nothing was planned",
                errors.len(),
                file.display(),
                errors[0].message
            );
        };
        render::print(render::Format::Human, color, &ws.sources, &errors)?;
        bail!(
            "{} error(s) in {} (shown above): nothing was planned",
            errors.len(),
            file.display()
        );
    }
    let mut store = utility::open_state()?;
    let state = store.load()?;
    let key = store.fingerprint_key()?;
    let plan = plan_analysis(
        &ws.analysis,
        root,
        file,
        &name,
        target,
        &input.options.settings,
        &state,
        &key,
    )?;
    Ok(Some(plan))
}

/// The plan of the object `name` of `root` (the file at `file`) as
/// `analysis` has it, against `state`: what `cvl plan` does once the files
/// are loaded and the state read, and what the language server's preview
/// does on its own analysis and a read-only view of the state. The file must
/// have no errors.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan_analysis(
    analysis: &Analysis,
    root: SourceFile,
    file: &Path,
    name: &str,
    target: &Option<String>,
    settings: &cvl_repo::Settings,
    state: &cvl_planner::model::UtilityState,
    key: &[u8],
) -> Result<(Plan, lower::SensitiveValues)> {
    let def = Def {
        file: root,
        name: name.into(),
    };
    let mut programs = RepoPrograms {
        analysis,
        fetcher: Fetcher::new(settings.clone()),
    };
    let lowered = analysis
        .with_db(|db| lower::topology(db, &def, &mut programs))?
        .map_err(anyhow::Error::msg)?;
    let hosts = utility::hosts_or_local(&state.hosts);
    let alloc = cvl_planner::allocate(&lowered.topology, state, &hosts)?;
    let supplied = crate::secrets::supply(&def.name, &lowered.sensitive_inputs)?;
    let mut secrets: BTreeMap<String, String> = supplied
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().to_string()))
        .collect();
    drop(supplied);
    let (desired, sensitive) =
        analysis.with_db(|db| lower::desired(db, &lowered, &alloc, &secrets, key))?;
    secrets.values_mut().for_each(zeroize::Zeroize::zeroize);
    let options = cvl_planner::Options {
        target: target.clone().map(ComponentPath),
    };
    let mut plan = cvl_planner::plan(desired, alloc, state, &options)?;
    plan.source = Some(cvl_planner::plan::PlanSource {
        file: std::path::absolute(file)?.display().to_string(),
        deploy: def.name.to_string(),
        target: target.clone(),
    });
    Ok((plan, sensitive))
}

pub fn plan(args: PlanArgs, color: ColorChoice) -> Result<ExitCode> {
    let plan = match make_plan(&args.file, &args.deploy, &args.target, &args.load, color) {
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
    let Some((plan, _)) = make_plan(&args.file, &args.deploy, &None, &args.load, color)? else {
        return Ok(ExitCode::from(1));
    };
    print!("{}", dot(&plan));
    Ok(ExitCode::SUCCESS)
}

/// A plan's deployment as a Graphviz graph: a box per component, an arrow
/// from each provider to what requires it.
pub(crate) fn dot(plan: &Plan) -> String {
    let mut out = String::from("digraph deployment {\n  rankdir=LR;\n  node [shape=box];\n");
    let mut providers: BTreeMap<&str, Vec<&ComponentPath>> = BTreeMap::new();
    for (path, vm) in &plan.desired {
        for s in &vm.provides {
            providers.entry(s).or_default().push(path);
        }
    }
    for (path, vm) in &plan.desired {
        out.push_str(&format!(
            "  {:?} [label={:?}];\n",
            path.0,
            format!("{}\\n{}", path.0, vm.appliance.name)
        ));
    }
    for (path, vm) in &plan.desired {
        for s in &vm.requires {
            for p in providers.get(s.as_str()).into_iter().flatten() {
                if *p != path {
                    out.push_str(&format!("  {:?} -> {:?} [label={:?}];\n", p.0, path.0, s));
                }
            }
        }
    }
    out.push_str("}\n");
    out
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
            human(&mut w, plan)?;
            if let Some(path) = out {
                writeln!(w, "\nSaved to {}.", path.display())?;
            }
        }
    }
    Ok(())
}

/// The plan for people: a summary line per action in the order they can
/// run, then each component's details.
pub(crate) fn human(w: &mut dyn Write, plan: &Plan) -> std::io::Result<()> {
    if !plan.has_changes() {
        writeln!(
            w,
            "No changes: {} is as its CVL says ({} VM appliances).",
            plan.deployment,
            plan.desired.len()
        )?;
    } else {
        let counts: Vec<String> = plan
            .counts()
            .iter()
            .map(|(k, n)| format!("{n} to {}", k.as_str()))
            .collect();
        writeln!(w, "Plan for {}: {}.\n", plan.deployment, counts.join(", "))?;
        let width = plan
            .actions
            .iter()
            .map(|a| a.component.0.len())
            .max()
            .unwrap_or(0);
        for a in &plan.actions {
            let after = if a.after.is_empty() {
                String::new()
            } else {
                let names: Vec<&str> = a.after.iter().map(|p| p.0.as_str()).collect();
                format!("  (after {})", names.join(", "))
            };
            writeln!(
                w,
                "  {:<6} {:<width$}  {}{after}",
                a.action.as_str(),
                a.component.0,
                a.reason
            )?;
        }
    }
    let changed: Vec<_> = plan
        .actions
        .iter()
        .filter(|a| !matches!(a.action, ActionKind::Stop))
        .collect();
    if !changed.is_empty() {
        writeln!(w, "\nDetails:")?;
    }
    for a in changed {
        let path = &a.component;
        let Some(vm) = plan.desired.get(path) else {
            writeln!(
                w,
                "  {}: its folder moves to the attic; its data disks are kept there",
                path.0
            )?;
            continue;
        };
        let app = &vm.appliance;
        let version = app
            .version
            .map_or(String::new(), |v| format!(" version {v}"));
        let host = plan.allocations.get(path).map_or("-", |a| a.host.as_str());
        writeln!(
            w,
            "  {} ({}{version} from {}) on {host}, {} MiB",
            path.0, app.name, app.source, vm.memory_mib
        )?;
        if let Some(alloc) = plan.allocations.get(path) {
            for (name, iface) in &alloc.interfaces {
                let place = match iface.network {
                    Some(n) => match plan.vans.iter().find(|(_, m)| **m == n).map(|(v, _)| v) {
                        Some(v) if v.is_root() => format!("the deployment's VAN (network {n})"),
                        Some(v) => format!("VAN {} (network {n})", v.0),
                        None => format!("network {n}"),
                    },
                    None if iface.ip.is_some() => "public".to_string(),
                    None => "not attached".to_string(),
                };
                writeln!(
                    w,
                    "      {name:<10} {}  {:<15} {place}",
                    iface.mac,
                    iface.ip.as_deref().unwrap_or("-")
                )?;
            }
        }
        for d in &vm.data_disks {
            writeln!(
                w,
                "      data disk {} ({}), kept across updates",
                d.device, d.size
            )?;
        }
        for c in &a.changes {
            writeln!(w, "      {c}")?;
        }
        if a.action == ActionKind::Start && a.changes.is_empty() {
            let sensitive = vm
                .params
                .values()
                .filter(|v| matches!(v, ParamValue::Sensitive { .. }))
                .count();
            writeln!(
                w,
                "      {} parameters ({} sensitive, as fingerprints only)",
                vm.params.len(),
                sensitive
            )?;
        }
    }
    if !plan.missing_secrets.is_empty() {
        writeln!(w, "\nSensitive values not supplied (applying needs them):")?;
        for m in &plan.missing_secrets {
            let names: Vec<&str> = m.components.iter().map(|p| p.0.as_str()).collect();
            writeln!(
                w,
                "  {} (for {}): `cvl secrets set {}` (with `cvl agent` running), or set {} \
                 (or {}_FD to a file descriptor to read it from)",
                m.param,
                names.join(", "),
                cvl_secrets::key(&plan.deployment, &m.param),
                m.supply,
                m.supply
            )?;
        }
    }
    Ok(())
}
