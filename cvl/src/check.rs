//! `cvl check`: every diagnostic of the given files (syntax, names, kinds,
//! evaluation, required and sensitive parameters, dependencies), rendered for
//! people, scripts or CI.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use codespan_reporting::term::termcolor::ColorChoice;
use cvl_analysis::{CheckOptions, Diagnostic, Severity};
use cvl_repo::LockMode;

use crate::render::{self, Format};
use crate::workspace::{self, LoadArgs};

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Files or directories to check (directories: every .cvl file below).
    /// Default: the current directory.
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
    let ws = workspace::load(&args.files, &args.load, LockMode::Use)?;
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
    render::print(args.format, color, &ws.sources, &diagnostics)?;
    for error in &ws.lock_errors {
        eprintln!("error: {error}");
    }
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count()
        + ws.lock_errors.len();
    let warnings = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    if args.format == Format::Human {
        for lock in &ws.locks_written {
            eprintln!("wrote {}", lock.display());
        }
        let hints = diagnostics.len() - errors - warnings;
        eprintln!("{}", summary(ws.file_count, errors, warnings, hints));
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
