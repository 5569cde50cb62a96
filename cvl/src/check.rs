//! `cvl check`: every diagnostic of the given files, rendered for people,
//! scripts or CI.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use codespan_reporting::term::termcolor::ColorChoice;
use cvl_analysis::{Code, Diagnostic, Severity, Span};
use cvl_syntax::{TextRange, TextSize};

use crate::files::{self, Source};
use crate::render::{self, Format, Sources};

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Files or directories to check (directories: every .cvl file below).
    /// Default: the current directory.
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// The syntax diagnostics of one source, including a non-UTF-8 file.
pub fn syntax_diagnostics(source: &Source) -> Vec<Diagnostic> {
    if let Some(bad) = source.invalid_utf8 {
        let start = TextSize::from(bad.byte_offset as u32);
        let range = TextRange::at(
            start,
            TextSize::from(3).min(TextSize::of(&source.text[bad.byte_offset..])),
        );
        return vec![Diagnostic::error(
            Code::SyntaxError,
            bad.to_string(),
            Span {
                file: source.name.clone(),
                range,
            },
        )];
    }
    let parsed = cvl_syntax::parse(&source.text);
    Diagnostic::from_syntax_errors(&source.name, parsed.errors())
}

pub fn run(args: CheckArgs, color: ColorChoice) -> Result<ExitCode> {
    let paths = files::collect(&args.files)?;
    let mut sources = Sources::default();
    let mut diagnostics = Vec::new();
    for path in &paths {
        let source = files::read(path)?;
        sources.add(&source.name, &source.text);
        diagnostics.extend(syntax_diagnostics(&source));
    }
    render::print(args.format, color, &sources, &diagnostics)?;
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    if args.format == Format::Human {
        eprintln!("{}", summary(paths.len(), errors, warnings));
    }
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn summary(files: usize, errors: usize, warnings: usize) -> String {
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    if errors == 0 && warnings == 0 {
        format!("ok: {} checked, no problems", plural(files, "file"))
    } else {
        format!(
            "{}: {}, {} in {}",
            if errors > 0 { "failed" } else { "ok" },
            plural(errors, "error"),
            plural(warnings, "warning"),
            plural(files, "file")
        )
    }
}
