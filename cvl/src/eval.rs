//! `cvl eval`: every parameter of a deployed object and of its components at
//! every depth, with its final value and where that value was assigned.
//! Sensitive values are never printed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use codespan_reporting::term::termcolor::ColorChoice;
use cvl_analysis::{CheckOptions, Def, Severity};
use cvl_repo::LockMode;
use serde_json::{json, Value};

use crate::render;
use crate::workspace::{self, LoadArgs};

/// A sensitive value assigned in CVL (from another sensitive parameter).
pub const REDACTED: &str = "<redacted>";
/// A sensitive parameter the user supplies when planning.
pub const SUPPLIED: &str = "<sensitive: supplied at deploy time>";

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalFormat {
    /// One line a parameter: path, value, where it was assigned.
    Text,
    /// One object: dotted path -> list of strings; null for values the
    /// utility allocates at deploy time; {"sensitive": "supplied at deploy
    /// time" | "redacted"} for sensitive ones.
    Json,
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// The CVL file.
    pub file: PathBuf,
    /// The object to evaluate as deployed.
    #[arg(long, short)]
    pub object: String,
    /// Output: for people, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = EvalFormat::Text)]
    pub format: EvalFormat,
    /// Evaluate as if the utility had allocated VALUE to PATH (e.g.
    /// `--assume d.ethernet0.ip=10.0.1.2`), to preview values that depend on
    /// addresses. Repeatable.
    #[arg(long, value_name = "PATH=VALUE", value_parser = parse_assume)]
    pub assume: Vec<(String, String)>,
    #[command(flatten)]
    pub load: LoadArgs,
}

fn parse_assume(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(p, v)| (p.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{text}` is not PATH=VALUE"))
}

pub fn run(args: EvalArgs, color: ColorChoice) -> Result<ExitCode> {
    let ws = workspace::load(std::slice::from_ref(&args.file), &args.load, LockMode::Use)?;
    let Some(&file) = ws.roots.first() else {
        render::print(render::Format::Human, color, &ws.sources, &ws.unreadable)?;
        return Ok(ExitCode::from(1));
    };
    let tree = ws.analysis.item_tree(file)?;
    if tree.object(&args.object).is_none() {
        let names: Vec<&str> = tree
            .objects
            .iter()
            .map(|o| o.data.name.text.as_ref())
            .collect();
        bail!(
            "no object named `{}` in {} (it declares: {})",
            args.object,
            args.file.display(),
            if names.is_empty() {
                "nothing".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    let def = Def {
        file,
        name: args.object.as_str().into(),
    };
    let options = CheckOptions {
        deploy: vec![args.object.clone()],
    };
    let errors: Vec<_> = ws
        .analysis
        .diagnostics(file, &options)?
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    let allocations = cvl_analysis::eval::Allocations {
        values: args.assume.iter().cloned().collect(),
    };
    let params = ws.analysis.evaluated_params(&def, &allocations)?;
    // An assumption about a parameter that does not exist is a typo, not a
    // preview: say so rather than ignore it.
    for (path, _) in &args.assume {
        if params.iter().any(|p| p.path == *path) {
            continue;
        }
        let closest = params
            .iter()
            .map(|p| (strsim::levenshtein(&p.path, path), &p.path))
            .min()
            .filter(|(d, _)| *d <= 3)
            .map(|(_, p)| format!("; did you mean `{p}`?"))
            .unwrap_or_default();
        bail!(
            "--assume {path}=...: {} has no parameter `{path}`{closest} (`cvl eval {} --object {}` \
             lists them all)",
            args.object,
            args.file.display(),
            args.object
        );
    }
    match args.format {
        EvalFormat::Json => {
            let mut map = serde_json::Map::new();
            for p in &params {
                let value = match (&p.value, p.sensitive) {
                    (Some(v), true) if v.is_empty() => {
                        json!({ "sensitive": "supplied at deploy time" })
                    }
                    (_, true) => json!({ "sensitive": "redacted" }),
                    (Some(v), false) => json!(v),
                    (None, false) => Value::Null,
                };
                map.insert(p.path.clone(), value);
            }
            render::print_json(&Value::Object(map))?;
        }
        EvalFormat::Text => {
            let width = params.iter().map(|p| p.path.len()).max().unwrap_or(0);
            for p in &params {
                let value = match (&p.value, p.sensitive) {
                    (Some(v), true) if v.is_empty() => SUPPLIED.to_string(),
                    (_, true) => REDACTED.to_string(),
                    (None, false) => "(allocated at deploy time)".to_string(),
                    (Some(v), false) if v.is_empty() => "(unset)".to_string(),
                    (Some(v), false) => v
                        .iter()
                        .map(|s| format!("{s:?}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                let origin = match &p.assigned_at {
                    Some(span) => {
                        let (line, col, _, _) = ws.sources.position(span);
                        format!("  # {}:{line}:{col}", span.file)
                    }
                    None => String::new(),
                };
                println!("{:width$} = {value}{origin}", p.path);
            }
        }
    }
    if !errors.is_empty() {
        eprintln!(
            "{} error(s) in {}: run `cvl check --deploy {} {}` to see them",
            errors.len(),
            args.file.display(),
            args.object,
            args.file.display()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
