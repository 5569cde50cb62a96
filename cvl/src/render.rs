//! Draws diagnostics for people (codespan-reporting source excerpts), and
//! for machines and CI systems through `cvl_ops::report` (JSON, SARIF
//! 2.1.0). Positions are 1-based lines and columns, in characters.

use std::collections::HashMap;
use std::io::Write;

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{self, termcolor::WriteColor};
use cvl_analysis::{Code, Diagnostic, Severity, Span};
use cvl_ops::report;
use serde_json::Value;

/// The texts diagnostics point into, by display name.
#[derive(Default)]
pub struct Sources {
    files: SimpleFiles<String, String>,
    ids: HashMap<String, usize>,
}

impl Sources {
    pub fn add(&mut self, name: &str, text: &str) {
        if !self.ids.contains_key(name) {
            let id = self.files.add(name.to_string(), text.to_string());
            self.ids.insert(name.to_string(), id);
        }
    }

    fn text(&self, name: &str) -> Option<&str> {
        let id = *self.ids.get(name)?;
        self.files.get(id).ok().map(|f| f.source().as_str())
    }

    /// A copy in which every literal that `diagnostics` report as a
    /// sensitive value written in a file is masked (`"*******"`, quotes and
    /// line breaks kept, so every position stays where it was): excerpts end
    /// up in CI logs, which are often public.
    fn masked(&self, diagnostics: &[Diagnostic]) -> Sources {
        let mut out = Sources::default();
        let mut names: Vec<(&String, &usize)> = self.ids.iter().collect();
        names.sort_by_key(|(_, id)| **id);
        for (name, _) in names {
            let mut text = self.text(name).unwrap_or("").as_bytes().to_vec();
            for d in diagnostics {
                if d.code != Code::SensitiveLiteral || d.span.file != *name {
                    continue;
                }
                let (start, end) = (
                    usize::from(d.span.range.start()),
                    usize::from(d.span.range.end()),
                );
                for b in text.iter_mut().take(end).skip(start) {
                    if !matches!(*b, b'"' | b'\n' | b'\r') {
                        *b = b'*';
                    }
                }
            }
            out.add(name, &String::from_utf8_lossy(&text));
        }
        out
    }

    /// 1-based (line, column) of the start and end of `span`.
    pub fn position(&self, span: &Span) -> (usize, usize, usize, usize) {
        let text = self.text(&span.file).unwrap_or("");
        let (l1, c1) = cvl_syntax::line_col(text, span.range.start());
        let (l2, c2) = cvl_syntax::line_col(text, span.range.end());
        (l1, c1, l2, c2)
    }
}

/// How diagnostics are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Source excerpts with labels, for people.
    Human,
    /// A JSON array of objects, for scripts.
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards in CI.
    Sarif,
}

pub fn human(
    out: &mut dyn WriteColor,
    sources: &Sources,
    diagnostics: &[Diagnostic],
) -> std::io::Result<()> {
    let config = term::Config::default();
    let sources = &sources.masked(diagnostics);
    for diagnostic in diagnostics {
        let severity = match diagnostic.severity {
            Severity::Error => cs::Severity::Error,
            Severity::Warning => cs::Severity::Warning,
            Severity::Hint => cs::Severity::Help,
        };
        let mut labels = Vec::new();
        if let Some(&id) = sources.ids.get(&diagnostic.span.file) {
            labels.push(cs::Label::primary(id, diagnostic.span.range));
        }
        for label in &diagnostic.labels {
            if let Some(&id) = sources.ids.get(&label.span.file) {
                labels
                    .push(cs::Label::secondary(id, label.span.range).with_message(&label.message));
            }
        }
        let rendered = cs::Diagnostic::new(severity)
            .with_code(diagnostic.code.as_str())
            .with_message(&diagnostic.message)
            .with_labels(labels)
            .with_notes(diagnostic.notes.clone());
        term::emit_to_write_style(out, &config, &sources.files, &rendered)
            .map_err(std::io::Error::other)?;
    }
    Ok(())
}

/// Prints `diagnostics` in `format` to standard output.
pub fn print(
    format: Format,
    color: term::termcolor::ColorChoice,
    sources: &Sources,
    diagnostics: &[Diagnostic],
) -> std::io::Result<()> {
    match format {
        Format::Human => {
            let stdout = term::termcolor::StandardStream::stdout(color);
            let mut lock = stdout.lock();
            human(&mut lock, sources, diagnostics)?;
            lock.flush()
        }
        Format::Json => print_json(&report::json(diagnostics, &|s| sources.position(s))),
        Format::Sarif => print_json(&report::sarif(diagnostics, &|s| sources.position(s))),
    }
}

pub fn print_json(value: &Value) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    serde_json::to_writer_pretty(&mut lock, value)?;
    writeln!(lock)
}

/// How a list is printed: for people, or JSON for scripts.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Human,
    Json,
}
