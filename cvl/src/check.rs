//! `cvl check`: every diagnostic of the given files (syntax, names, kinds,
//! evaluation, required and sensitive parameters, dependencies), rendered for
//! people, scripts or CI. Test parameters files (`*.params`, what `cvl test
//! --params` reads) are checked against their appliance.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use codespan_reporting::term::termcolor::ColorChoice;
use cvl_analysis::params_file;
use cvl_analysis::{AnalysisHost, CheckOptions, Code, Diagnostic, Severity, Span};
use cvl_repo::LockMode;

use crate::render::{self, Format};
use crate::workspace::{self, LoadArgs};

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Files or directories to check (directories: every .cvl and .params
    /// file below). Default: the current directory. A `.params` file (`cvl
    /// test --params`) is checked against its appliance: the one .cvl file
    /// beside it, or the one its first lines name (`# appliance: ../DNS.cvl`).
    pub files: Vec<PathBuf>,
    /// Check OBJECT as deployed: its required parameters (at every depth)
    /// and its services' dependencies must be satisfied. Without it, objects
    /// are checked as libraries, and what their users must set is a hint.
    #[arg(long, value_name = "OBJECT")]
    pub deploy: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    #[command(flatten)]
    pub load: LoadArgs,
}

pub fn run(args: CheckArgs, color: ColorChoice) -> Result<ExitCode> {
    let params = crate::files::collect_params(&args.files)?;
    // The CVL files: all but the parameters files, and no folder that holds
    // only those.
    let cvl: Vec<PathBuf> = args
        .files
        .iter()
        .filter(|p| !is_params(p))
        .filter(|p| !p.is_dir() || params.is_empty() || crate::files::holds_cvl(p))
        .cloned()
        .collect();
    let only_params = !params.is_empty() && cvl.is_empty();
    let mut ws = if only_params {
        None
    } else {
        Some(workspace::load(&cvl, &args.load, LockMode::Use)?)
    };
    let mut diagnostics = Vec::new();
    let mut sources = ws
        .as_mut()
        .map(|w| std::mem::take(&mut w.sources))
        .unwrap_or_default();
    let mut file_count = 0;
    if let Some(ws) = &ws {
        diagnostics = check_cvl(ws, &args)?;
        file_count += ws.file_count;
    }
    for path in &params {
        diagnostics.extend(check_params(path, &args.load, &mut sources)?);
        file_count += 1;
    }
    render::print(args.format, color, &sources, &diagnostics)?;
    let lock_errors = ws
        .as_ref()
        .map(|w| w.lock_errors.clone())
        .unwrap_or_default();
    for error in &lock_errors {
        eprintln!("error: {error}");
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count()
        + lock_errors.len();
    let warnings = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    if args.format == Format::Human {
        for lock in ws.iter().flat_map(|w| &w.locks_written) {
            eprintln!("wrote {}", lock.display());
        }
        let hints = diagnostics.len() - errors - warnings;
        eprintln!("{}", summary(file_count, errors, warnings, hints));
    }
    // The process ends here: freeing the analysis database piece by piece
    // took a sixth of a large check (measured with perf); the OS takes it
    // back at once.
    std::mem::forget(ws);
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn is_params(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "params")
}

/// The diagnostics of the CVL files loaded.
fn check_cvl(ws: &workspace::Workspace, args: &CheckArgs) -> Result<Vec<Diagnostic>> {
    let options = CheckOptions {
        deploy: args.deploy.clone(),
    };
    for name in &args.deploy {
        let found = ws.roots.iter().any(|f| {
            ws.analysis
                .item_tree(*f)
                .is_ok_and(|tree| tree.object(name).is_some())
        });
        if !found {
            bail!("--deploy {name}: no object named `{name}` in the checked files");
        }
    }
    let mut diagnostics = ws.unreadable.clone();
    for (&file, path) in ws.roots.iter().zip(&ws.root_paths) {
        diagnostics.extend(ws.analysis.diagnostics(file, &options)?);
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        diagnostics.extend(cvl_repo::appliance::check(&ws.analysis, file, dir)?);
        // Keep each file's diagnostics in order of position.
        let name = ws.analysis.file_name(file);
        let own = |d: &Diagnostic| d.span.file == *name;
        let start = diagnostics
            .iter()
            .position(&own)
            .unwrap_or(diagnostics.len());
        diagnostics[start..].sort_by_key(|d| (!own(d), d.span.range.start()));
    }
    Ok(diagnostics)
}

/// A test parameters file's diagnostics: its lines, and the deployment
/// `cvl test` would make of its appliance with them, analysed.
fn check_params(
    path: &Path,
    load: &workspace::LoadArgs,
    sources: &mut render::Sources,
) -> Result<Vec<Diagnostic>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the parameters file {}", path.display()))?;
    let name = path.display().to_string();
    sources.add(&name, &text);
    let at_start = |message: String| {
        vec![Diagnostic::error(
            Code::UnresolvedName,
            message,
            Span {
                file: name.clone(),
                range: Default::default(),
            },
        )]
    };
    let appliance = match cvl_repo::appliance::of_params(path, &text) {
        Ok(p) => p,
        Err(e) => return Ok(at_start(e)),
    };
    let appliance_text = std::fs::read_to_string(&appliance)
        .with_context(|| format!("cannot read the appliance {}", appliance.display()))?;
    let stem = appliance
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some(object) = params_file::exported_object(&appliance_text, &stem) else {
        return Ok(at_start(format!(
            "{} exports no appliance (no object named `{stem}`, and not one object)",
            appliance.display()
        )));
    };
    let file = params_file::parse(&text);
    let deployment = params_file::deployment(&appliance_text, &object, "ethernet0", &file);
    let mut host = AnalysisHost::batch();
    // Read-only: checking a parameters file writes no cvl.lock.
    let options = load.options(LockMode::ReadOnly, &appliance)?;
    let report = cvl_repo::load(
        &mut host,
        &[(appliance.clone(), deployment.text.clone())],
        &options,
    );
    let analysis = host.analysis();
    let Some(&root) = report.roots.first() else {
        bail!(
            "{}: its appliance {} did not load",
            name,
            appliance.display()
        );
    };
    let said = analysis.diagnostics(
        root,
        &CheckOptions {
            deploy: vec![deployment.deployment.clone()],
        },
    )?;
    Ok(deployment.diagnostics(&file, &name, &text, analysis.file_name(root), &said))
}

/// The closing line: errors and warnings decide it; hints are counted
/// (they are shown, so "no problems" alone would contradict the output).
pub fn summary(files: usize, errors: usize, warnings: usize, hints: usize) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let hints = if hints > 0 {
        format!(" ({} shown above)", plural(hints, "hint"))
    } else {
        String::new()
    };
    if errors == 0 && warnings == 0 {
        format!(
            "ok: {} checked, no errors or warnings{hints}",
            plural(files, "file")
        )
    } else {
        format!(
            "{}: {}, {} in {}{hints}",
            if errors > 0 { "failed" } else { "ok" },
            plural(errors, "error"),
            plural(warnings, "warning"),
            plural(files, "file")
        )
    }
}
