//! `cvl fmt`: formats files in place (crash-safely), or with `--check` shows
//! what would change and fails.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use codespan_reporting::term::termcolor::ColorChoice;
use cvl_syntax::format::{format_parse, FormatOptions};

use crate::files;
use crate::render::{self, Format, Sources};

#[derive(clap::Args)]
pub struct FmtArgs {
    /// Files or directories to format (`-` for standard input to standard
    /// output). Default: the current directory.
    pub files: Vec<PathBuf>,
    /// Change nothing; show a diff and exit 1 when a file is not formatted.
    #[arg(long)]
    pub check: bool,
}

pub fn run(args: FmtArgs, color: ColorChoice) -> Result<ExitCode> {
    let paths = files::collect(&args.files)?;
    let mut failed = false;
    let mut changed = 0;
    // Trees are freed on another thread: freeing a large file's tree cost
    // a fifth of formatting it, and nothing needs to wait for it (the
    // process may exit first).
    let (free, trees) = std::sync::mpsc::channel::<cvl_syntax::Parse>();
    std::thread::spawn(move || trees.into_iter().for_each(drop));
    for path in &paths {
        let source = files::read(path)?;
        // Parsed once: for its errors, then formatted.
        let parsed = source
            .invalid_utf8
            .is_none()
            .then(|| cvl_syntax::parse(&source.text));
        let diagnostics = match &parsed {
            Some(parsed) => {
                cvl_analysis::Diagnostic::from_syntax_errors(&source.name, parsed.errors())
            }
            None => source.syntax_diagnostics(),
        };
        if !diagnostics.is_empty() {
            let mut sources = Sources::default();
            sources.add(&source.name, &source.text);
            render::print(Format::Human, color, &sources, &diagnostics)?;
            eprintln!(
                "error: not formatting `{}`: fix its syntax errors first",
                source.name
            );
            failed = true;
            continue;
        }
        let Some(parsed) = parsed else {
            unreachable!("a file that is not UTF-8 has a syntax error")
        };
        let formatted = format_parse(&parsed, FormatOptions::default())
            .expect("a file without syntax errors formats");
        // A closed channel (no thread) frees it here instead.
        let _ = free.send(parsed);
        if source.path.is_none() {
            print!("{formatted}");
            continue;
        }
        if formatted == source.text {
            continue;
        }
        changed += 1;
        if args.check {
            print_diff(&source.name, &source.text, &formatted);
            failed = true;
        } else if let Some(path) = &source.path {
            // Through a symbolic link, the file it points to is what gets
            // formatted; the link stays a link.
            let target = std::fs::canonicalize(path)
                .with_context(|| format!("cannot resolve `{}`", source.name))?;
            cvl_repo::write_atomic(&target, formatted.as_bytes())
                .with_context(|| format!("cannot write `{}`", source.name))?;
            eprintln!("formatted {}", source.name);
        }
    }
    if args.check && changed > 0 {
        eprintln!("{changed} file(s) would be reformatted; run `cvl fmt` to fix");
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_diff(name: &str, old: &str, new: &str) {
    let diff = similar::TextDiff::from_lines(old, new);
    print!(
        "{}",
        diff.unified_diff().context_radius(2).header(
            &format!("{name} (original)"),
            &format!("{name} (formatted)")
        )
    );
}
