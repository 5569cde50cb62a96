//! `cvl repo create|log|verify` and `cvl publish`: appliance repositories
//! from the publisher's side.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use codespan_reporting::term::termcolor::ColorChoice;
use cvl_analysis::{CheckOptions, Severity};
use cvl_repo::index::Index;
use cvl_repo::publish::{self, PublishFile};
use cvl_repo::{Fetcher, Location, LockMode};

use crate::render::{self, Format};
use crate::workspace::{self, FetchArgs, LoadArgs};

#[derive(clap::Subcommand)]
pub enum RepoCommand {
    /// Create an empty repository in a folder.
    Create {
        /// The folder (created if missing).
        dir: PathBuf,
    },
    /// List a repository's versions with their dates and files' SHA-256.
    Log {
        /// A folder, or a repository URL (file://, http://, https://).
        repo: String,
        /// Output: for people, or JSON for scripts.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        format: LogFormat,
        #[command(flatten)]
        load: FetchArgs,
    },
    /// Check that every published file still matches its recorded SHA-256.
    Verify {
        /// The repository's folder.
        dir: PathBuf,
    },
    /// Make a version's files (program disks with their backing chains)
    /// available locally, verified; prints the local folder. Downloads go
    /// to the cache in $CVL_HOME and resume where an interrupted one stopped.
    Fetch {
        /// A folder, or a repository URL (file://, http://, https://).
        repo: String,
        /// The version (default: the latest).
        #[arg(long)]
        version: Option<u32>,
        #[command(flatten)]
        load: FetchArgs,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct PublishArgs {
    /// The repository folder.
    pub repo: PathBuf,
    /// The appliance's CVL file.
    pub file: PathBuf,
    #[command(flatten)]
    pub load: LoadArgs,
}

pub fn run(command: RepoCommand) -> Result<ExitCode> {
    match command {
        RepoCommand::Create { dir } => {
            publish::create(&dir).map_err(anyhow::Error::msg)?;
            eprintln!("created an empty repository in {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        RepoCommand::Fetch {
            repo,
            version,
            load,
        } => {
            let (fetcher, location, index) = open(&repo, &load)?;
            let version = match version {
                Some(v) => v,
                None => {
                    index
                        .latest()
                        .context("the repository has no version yet")?
                        .version
                }
            };
            let dir = fetcher
                .fetch_version(&location, &index, version)
                .map_err(anyhow::Error::msg)?;
            println!("{}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        RepoCommand::Log { repo, format, load } => {
            let (_, _, index) = open(&repo, &load)?;
            match format {
                LogFormat::Json => render::print_json(&serde_json::to_value(&index)?)?,
                LogFormat::Text => {
                    if index.versions.is_empty() {
                        println!("no versions published yet");
                    }
                    // One width for every version's file names, so that
                    // sizes and hashes line up down the whole log.
                    let width = index
                        .versions
                        .iter()
                        .flat_map(|v| v.files.iter().map(|f| f.path.chars().count()))
                        .max()
                        .unwrap_or(0);
                    for v in index.versions.iter().rev() {
                        println!(
                            "version {}  published {}  ({})",
                            v.version, v.published, v.cvl
                        );
                        for f in &v.files {
                            println!(
                                "    {:<width$}  {:>10} bytes  sha256:{}",
                                f.path, f.size, f.sha256
                            );
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RepoCommand::Verify { dir } => {
            let problems = publish::verify(&dir).map_err(anyhow::Error::msg)?;
            if problems.is_empty() {
                eprintln!("ok: every file of {} matches its SHA-256", dir.display());
                return Ok(ExitCode::SUCCESS);
            }
            for p in &problems {
                println!("tampered: {p}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// A repository named on the command line: a folder or a URL.
fn open(repo: &str, load: &FetchArgs) -> Result<(Fetcher, Location, Index)> {
    let location = if repo.contains("://") {
        Location::parse(repo, None).map_err(anyhow::Error::msg)?
    } else {
        Location::Dir(std::path::absolute(repo)?)
    };
    let fetcher = Fetcher::new(
        load.options(LockMode::Ignore, std::path::Path::new("."))?
            .settings,
    );
    let index: Index = fetcher
        .index(&location)
        .map_err(anyhow::Error::msg)?
        .with_context(|| format!("{repo} is a folder, not a repository"))?;
    Ok((fetcher, location, index))
}

pub fn publish(args: PublishArgs, color: ColorChoice) -> Result<ExitCode> {
    // A publisher's lock is not published: imports are resolved afresh, and
    // no cvl.lock is written beside the source.
    let ws = workspace::load(
        std::slice::from_ref(&args.file),
        &args.load,
        LockMode::Ignore,
    )?;
    let Some(&file) = ws.roots.first() else {
        render::print(Format::Human, color, &ws.sources, &ws.unreadable)?;
        bail!("not publishing {}: it is not UTF-8", args.file.display());
    };
    let diagnostics = ws.analysis.diagnostics(file, &CheckOptions::default())?;
    let errors: Vec<_> = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .cloned()
        .collect();
    if !errors.is_empty() {
        render::print(Format::Human, color, &ws.sources, &errors)?;
        eprintln!(
            "error: not publishing {}: {} error(s) (every error of `cvl check` refuses a publish)",
            args.file.display(),
            errors.len()
        );
        return Ok(ExitCode::from(1));
    }
    let name = args
        .file
        .file_name()
        .context("the CVL file has no name")?
        .to_string_lossy()
        .to_string();
    let bytes = std::fs::read(&args.file)?;
    let mut files = vec![PublishFile::Plain {
        path: name.clone(),
        bytes,
    }];
    let dir = args
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let appliances = cvl_repo::appliance::vm_appliances(&ws.analysis, file, dir)?;
    for appliance in appliances {
        let more = cvl_repo::appliance::publish_files(&appliance)
            .map_err(|e| anyhow::anyhow!("not publishing {}: {e}", args.file.display()))?;
        files.extend(more);
    }
    let version = publish::publish(&args.repo, &name, &files).map_err(anyhow::Error::msg)?;
    eprintln!(
        "published {} as version {} of {}",
        name,
        version.version,
        args.repo.display()
    );
    for f in &version.files {
        match &f.backing {
            Some(backing) => eprintln!("    {}: {} bytes, a delta on {backing}", f.path, f.size),
            None => eprintln!("    {}: {} bytes", f.path, f.size),
        }
    }
    Ok(ExitCode::SUCCESS)
}
