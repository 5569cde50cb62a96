//! A deployment's CVL, loaded with its imports, checked, and planned
//! against the state: lowering the deployed object, allocating, reading VM
//! descriptions where each appliance came from, supplying sensitive values,
//! and the planner's diff. What `cvl plan` and `cvl apply` show, what the
//! utility service acts on, and what the editor's preview draws.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cvl_analysis::{Analysis, AnalysisHost, CheckOptions, Def, Diagnostic, Severity, SourceFile};
use cvl_planner::lower::{self, ImportFacts, Program, Programs, SensitiveValues};
use cvl_planner::model::{ComponentPath, UtilityState};
use cvl_planner::plan::Plan;
use cvl_repo::loader::TrustReport;
use cvl_repo::{Fetcher, LoadOptions};

use crate::secrets::Ask;

/// What to plan: the deployment's file, its object (`None`: the file's
/// only one) and target, and how its imports load (a command line's
/// settings and lock mode, or those the state recorded).
pub struct Input<'a> {
    pub file: &'a Path,
    pub deploy: Option<&'a str>,
    pub target: Option<&'a str>,
    pub options: LoadOptions,
    /// Components recorded running whose QEMU is gone: started again
    /// (the service's restart of a crash; empty for people).
    pub crashed: BTreeSet<ComponentPath>,
    /// Components a person moves to a host of their choosing (`cvl move`;
    /// empty otherwise).
    pub pins: BTreeMap<ComponentPath, cvl_planner::Pin>,
}

/// The files a plan was made from, for rendering what is wrong with them.
pub struct Loaded {
    pub analysis: Analysis,
    /// Every file loaded (imports and the prelude included).
    pub files: Vec<SourceFile>,
}

/// What planning came to.
pub enum Planned {
    /// The file or an import has errors: nothing was planned.
    Errors {
        loaded: Loaded,
        errors: Vec<Diagnostic>,
        notices: Vec<String>,
        /// Repositories refused (an attack named) are among the errors.
        trust: TrustReport,
    },
    Plan {
        plan: Plan,
        /// The sensitive values the plan's parameters carry, memory only.
        sensitive: SensitiveValues,
        /// Newer versions the lock did not take, once each.
        notices: Vec<String>,
        /// Which repositories are signed (and until when), which are not.
        trust: TrustReport,
    },
}

impl Planned {
    /// What the repositories read are trusted as.
    pub fn trust(&self) -> &TrustReport {
        match self {
            Planned::Plan { trust, .. } | Planned::Errors { trust, .. } => trust,
        }
    }

    /// The plan, or the first error as the error (for callers that render
    /// nothing: the service).
    pub fn or_first_error(self, file: &Path) -> Result<(Plan, SensitiveValues)> {
        match self {
            Planned::Plan {
                plan, sensitive, ..
            } => Ok((plan, sensitive)),
            Planned::Errors { errors, .. } => bail!(
                "{} error(s) in {}, the first: {}: nothing was planned",
                errors.len(),
                file.display(),
                errors.first().map_or("", |e| e.message.as_str())
            ),
        }
    }
}

/// Loads, checks and plans `input` against the state as it is now.
pub fn plan(input: &Input, ask: &mut dyn Ask) -> Result<Planned> {
    let text = read(input.file)?;
    let mut host = AnalysisHost::batch();
    let report = cvl_repo::load(
        &mut host,
        &[(input.file.to_path_buf(), text)],
        &input.options,
    );
    let analysis = host.analysis();
    let mut files: Vec<SourceFile> = report.files.iter().map(|(f, _)| *f).collect();
    files.push(analysis.prelude());
    let Some(&root) = report.roots.first() else {
        bail!("{} could not be loaded", input.file.display());
    };
    let name = deployed(&analysis, root, input.file, input.deploy)?;
    let options = CheckOptions {
        deploy: vec![name.clone()],
    };
    let errors: Vec<Diagnostic> = analysis
        .diagnostics(root, &options)?
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    if !errors.is_empty() {
        return Ok(Planned::Errors {
            loaded: Loaded { analysis, files },
            errors,
            notices: report.notices,
            trust: report.trust,
        });
    }
    let mut store = crate::state::open()?;
    let state = store.load()?;
    let key = store.fingerprint_key()?;
    drop(store);
    let (plan, sensitive) = plan_analysis(
        &analysis,
        root,
        input.file,
        &name,
        &input.options.settings,
        &state,
        &key,
        ask,
        &cvl_planner::Options {
            target: input.target.map(|t| ComponentPath(t.to_string())),
            crashed: input.crashed.clone(),
            pins: input.pins.clone(),
        },
    )?;
    Ok(Planned::Plan {
        plan,
        sensitive,
        notices: report.notices,
        trust: report.trust,
    })
}

/// A file's text, which must be UTF-8.
fn read(file: &Path) -> Result<String> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: not UTF-8 (byte {} is invalid): save it as UTF-8",
            file.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// The plan of the object `name` of `root` (the file at `file`) as
/// `analysis` has it, against `state`: what [`plan`] does once the files
/// are loaded and the state read, and what the language server's preview
/// does on its own analysis and a read-only view of the state. The file
/// must have no errors. `options` say what to plan (a target, crashes,
/// pins).
#[allow(clippy::too_many_arguments)]
pub fn plan_analysis(
    analysis: &Analysis,
    root: SourceFile,
    file: &Path,
    name: &str,
    settings: &cvl_repo::Settings,
    state: &UtilityState,
    key: &[u8],
    ask: &mut dyn Ask,
    options: &cvl_planner::Options,
) -> Result<(Plan, SensitiveValues)> {
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
    let hosts = crate::hosts::hosts_or_local(&state.hosts);
    let alloc =
        cvl_planner::allocate_pinned(&lowered.topology, state, &hosts, &options.pinned_hosts())?;
    let supplied = crate::secrets::supply(&def.name, &lowered.sensitive_inputs, ask)?;
    let mut secrets: BTreeMap<String, String> = supplied
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().to_string()))
        .collect();
    drop(supplied);
    let (desired, sensitive) =
        analysis.with_db(|db| lower::desired(db, &lowered, &alloc, &secrets, key))?;
    secrets.values_mut().for_each(zeroize::Zeroize::zeroize);
    let mut plan = cvl_planner::plan(desired, alloc, state, options)?;
    plan.source = Some(cvl_planner::plan::PlanSource {
        file: std::path::absolute(file)?.display().to_string(),
        deploy: def.name.to_string(),
        target: options.target.as_ref().map(|t| t.0.clone()),
    });
    Ok((plan, sensitive))
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

/// The deployment a file names: its only object, or `deploy`'s.
pub fn deployment_of(path: &Path, deploy: Option<&str>) -> Result<String> {
    let text = read(path)?;
    let mut host = AnalysisHost::new();
    let file = host.add_file(path.display().to_string(), text);
    deployed(&host.analysis(), file, path, deploy)
}

/// The object of `file` to deploy: `deploy`, or the file's only object.
pub fn deployed(
    analysis: &Analysis,
    file: SourceFile,
    path: &Path,
    deploy: Option<&str>,
) -> Result<String> {
    let tree = analysis.item_tree(file)?;
    let names: Vec<&str> = tree
        .objects
        .iter()
        .map(|o| o.data.name.text.as_ref())
        .collect();
    match deploy {
        Some(name) if names.contains(&name) => Ok(name.to_string()),
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

/// The folder whose `cvl.lock` a root file uses.
pub fn lock_dir(file: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(file)?;
    Ok(absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/")))
}
