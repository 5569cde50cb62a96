//! Reading CVL inputs (files, directories, stdin) and writing files back
//! crash-safely. The one place the command touches the file system for
//! sources.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One input as read: its display name and its text, or where its UTF-8 ends.
pub struct Source {
    pub name: String,
    pub path: Option<PathBuf>,
    pub text: String,
    /// Set when the bytes were not UTF-8; `text` is then a lossy copy.
    pub invalid_utf8: Option<cvl_syntax::InvalidUtf8>,
}

impl Source {
    /// The syntax diagnostics of this source, including a non-UTF-8 one
    /// (shared by `check`, `fmt` and the workspace loader).
    pub fn syntax_diagnostics(&self) -> Vec<cvl_analysis::Diagnostic> {
        use cvl_analysis::{Code, Diagnostic, Span};
        use cvl_syntax::{TextRange, TextSize};
        if let Some(bad) = self.invalid_utf8 {
            let start = TextSize::from(bad.byte_offset as u32);
            let rest = TextSize::of(&self.text[bad.byte_offset..]);
            let range = TextRange::at(start, TextSize::from(3).min(rest));
            return vec![Diagnostic::error(
                Code::SyntaxError,
                bad.to_string(),
                Span {
                    file: self.name.clone(),
                    range,
                },
            )];
        }
        let parsed = cvl_syntax::parse(&self.text);
        Diagnostic::from_syntax_errors(&self.name, parsed.errors())
    }

    pub fn from_bytes(name: String, path: Option<PathBuf>, bytes: Vec<u8>) -> Source {
        match cvl_syntax::decode_utf8(&bytes) {
            Ok(_) => Source {
                name,
                path,
                text: String::from_utf8(bytes).expect("checked above"),
                invalid_utf8: None,
            },
            Err(e) => Source {
                name,
                path,
                text: String::from_utf8_lossy(&bytes).into_owned(),
                invalid_utf8: Some(e),
            },
        }
    }
}

/// Expands the command line's paths: files as given, directories to every
/// `.cvl` file below them (sorted; hidden folders, `target` and repositories
/// skipped), `-` to standard input. No paths means the current directory.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let paths = or_here(paths);
    for path in &paths {
        if path.as_os_str() == "-" {
            out.push(path.clone());
        } else if path.is_dir() {
            let before = out.len();
            walk(path, &mut out)?;
            if out.len() == before && paths.len() == 1 {
                bail!("no .cvl files under `{}`", path.display());
            }
        } else if path.exists() {
            out.push(path.clone());
        } else {
            bail!("`{}` does not exist", path.display());
        }
    }
    Ok(out)
}

/// The command line's paths, or the current directory when there are none.
fn or_here(paths: &[PathBuf]) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    }
}

/// The test parameters files (`.params`) among the command line's paths and
/// below its directories (no paths: the current directory's).
pub fn collect_params(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in &or_here(paths) {
        if path.is_dir() {
            walk_ext(path, "params", &mut out)?;
        } else if path.extension().is_some_and(|e| e == "params") {
            out.push(path.clone());
        }
    }
    Ok(out)
}

/// Whether a directory holds a `.cvl` file at any depth (as [`collect`]
/// walks it).
pub fn holds_cvl(dir: &Path) -> bool {
    let mut found = Vec::new();
    walk(dir, &mut found).is_ok() && !found.is_empty()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    walk_ext(dir, "cvl", out)
}

fn walk_ext(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list `{}`", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.') || n == "target");
        if hidden {
            continue;
        }
        if path.is_dir() {
            // A repository's versions are published and immutable: never
            // checked as sources, never reformatted.
            if !path.join(cvl_repo::index::INDEX_FILE).exists() {
                walk_ext(&path, ext, out)?;
            }
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    Ok(())
}

/// Reads one input (`-` is standard input).
pub fn read(path: &Path) -> Result<Source> {
    if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        return Ok(Source::from_bytes("<stdin>".into(), None, bytes));
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    Ok(Source::from_bytes(
        path.display().to_string(),
        Some(path.to_path_buf()),
        bytes,
    ))
}
