//! Turning the command line's files into an analysis database: reading the
//! root files, loading their imports (mirrors, lock, offline, timeout), and
//! collecting every text for rendering.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use cvl_analysis::{Analysis, AnalysisHost, Diagnostic, SourceFile};
use cvl_repo::{LoadOptions, LockMode, Mirror, Settings};

use crate::files::{self, Source};
use crate::render::Sources;

/// How repositories are reached: every command that fetches takes these.
#[derive(clap::Args, Debug, Clone)]
pub struct FetchArgs {
    /// Map URLs starting with FROM to TO, e.g.
    /// `--mirror http://virtualappliance.org/=file:///srv/repos/`. Repeatable;
    /// also read from $CVL_MIRRORS (pairs separated by `;`).
    #[arg(long, value_name = "FROM=TO", value_parser = parse_mirror)]
    pub mirror: Vec<Mirror>,
    /// Use only the download cache; never touch the network.
    #[arg(long)]
    pub offline: bool,
    /// Seconds one download may take before it is abandoned.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
}

impl Default for FetchArgs {
    /// The defaults of the flags (a command that takes none of them).
    fn default() -> FetchArgs {
        FetchArgs {
            mirror: Vec::new(),
            offline: false,
            timeout: 30,
        }
    }
}

/// How imports are loaded: shared by every command that reads CVL through
/// its `cvl.lock` (`update-lock` and the repository commands take only
/// [`FetchArgs`]: `--locked` would mean nothing there).
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    #[command(flatten)]
    pub fetch: FetchArgs,
    /// Fail instead of changing cvl.lock (for CI).
    #[arg(long)]
    pub locked: bool,
}

fn parse_mirror(text: &str) -> Result<Mirror, String> {
    Mirror::parse(text)
}

impl FetchArgs {
    /// The options for reading `start` (a file or folder): the command
    /// line's mirrors, then $CVL_MIRRORS, then the nearest `cvl.toml`'s.
    pub fn options(&self, lock: LockMode, start: &Path) -> Result<LoadOptions> {
        let mut settings = Settings::from_env()
            .and_then(|s| s.with_workspace(start))
            .map_err(anyhow::Error::msg)?;
        settings.mirrors.splice(0..0, self.mirror.iter().cloned());
        settings.offline = self.offline;
        settings.timeout = Duration::from_secs(self.timeout.max(1));
        Ok(LoadOptions { settings, lock })
    }
}

impl LoadArgs {
    /// Loading without `--locked`: what `update-lock` does.
    pub fn unlocked(fetch: &FetchArgs) -> LoadArgs {
        LoadArgs {
            fetch: fetch.clone(),
            locked: false,
        }
    }

    pub fn options(&self, lock: LockMode, start: &Path) -> Result<LoadOptions> {
        let lock = if self.locked && lock == LockMode::Use {
            LockMode::Locked
        } else {
            lock
        };
        self.fetch.options(lock, start)
    }
}

/// The loaded files and everything needed to render diagnostics about them.
pub struct Workspace {
    /// The analysis of the loaded files (the CLI changes nothing after
    /// loading: one snapshot answers every question).
    pub analysis: Analysis,
    /// Root files that were read as UTF-8, in command-line order.
    pub roots: Vec<SourceFile>,
    /// The paths of `roots`.
    pub root_paths: Vec<PathBuf>,
    pub sources: Sources,
    /// Diagnostics about roots that could not be analysed (not UTF-8).
    pub unreadable: Vec<Diagnostic>,
    /// Lock problems, for people.
    pub lock_errors: Vec<String>,
    pub locks_written: Vec<PathBuf>,
    pub file_count: usize,
}

pub fn load(paths: &[PathBuf], args: &LoadArgs, lock: LockMode) -> Result<Workspace> {
    let start = paths.first().cloned().unwrap_or_else(|| PathBuf::from("."));
    load_with(paths, &args.options(lock, &start)?)
}

/// [`load`] with its options made already (the utility service's, from
/// what the state recorded).
pub fn load_with(paths: &[PathBuf], options: &LoadOptions) -> Result<Workspace> {
    let paths = files::collect(paths)?;
    let mut sources = Sources::default();
    let mut unreadable = Vec::new();
    let mut roots = Vec::new();
    for path in &paths {
        let source: Source = files::read(path)?;
        sources.add(&source.name, &source.text);
        if source.invalid_utf8.is_some() {
            unreadable.extend(source.syntax_diagnostics());
            continue;
        }
        let path = source
            .path
            .clone()
            .context("standard input cannot have imports")?;
        roots.push((path, source.text));
    }
    // One check: files keep no syntax tree once lowered.
    let mut host = AnalysisHost::batch();
    let report = cvl_repo::load(&mut host, &roots, options);
    let analysis = host.analysis();
    let root_paths = roots.into_iter().map(|(p, _)| p).collect();
    for (file, _) in &report.files {
        sources.add(analysis.file_name(*file), analysis.file_text(*file));
    }
    for notice in &report.notices {
        eprintln!("note: {notice}");
    }
    let prelude = analysis.prelude();
    sources.add(analysis.file_name(prelude), analysis.file_text(prelude));
    Ok(Workspace {
        roots: report.roots,
        root_paths,
        sources,
        unreadable,
        lock_errors: report.lock_errors,
        locks_written: report.locks_written,
        file_count: paths.len(),
        analysis,
    })
}
