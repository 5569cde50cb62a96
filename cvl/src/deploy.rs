//! `cvl plan`, `cvl show`, `cvl stop` and `cvl graph`: the deployed object
//! through the planner (lower, allocate, desired, diff) against the
//! utility's state (`cvl_ops::plan`), rendered for people or as JSON, and
//! plan files.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use codespan_reporting::term::termcolor::ColorChoice;
use cvl_ops::plan::Planned;
use cvl_planner::lower::SensitiveValues;
use cvl_planner::model::{ComponentPath, ParamValue};
use cvl_planner::plan::{ActionKind, Plan};
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
    color: ColorChoice,
) -> Result<Option<(Plan, SensitiveValues)>> {
    planned(
        &cvl_ops::plan::Input {
            file,
            deploy: deploy.as_deref(),
            target: target.as_deref(),
            options: load.options(LockMode::Use, file)?,
            crashed: Default::default(),
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
