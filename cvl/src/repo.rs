//! `cvl repo create|log|verify` and `cvl publish`: appliance repositories
//! from the publisher's side.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use codespan_reporting::term::termcolor::ColorChoice;
use cvl_analysis::{CheckOptions, Severity};
use cvl_repo::index::Index;
use cvl_repo::publish::{self, PublishFile};
use cvl_repo::trust::sign;
use cvl_repo::{Fetcher, Location, LockMode};

use crate::render::{self, Format};
use crate::workspace::{self, FetchArgs, LoadArgs};

#[derive(clap::Subcommand)]
pub enum RepoCommand {
    /// Create an empty repository in a folder; with --key, a signed one
    /// whose root trusts that key.
    #[command(
        after_help = "A signed repository carries The Update Framework's metadata in \
        tuf/: its root (which keys are trusted, how many must sign it), and targets, snapshot \
        and timestamp (every file with its length and SHA-256, signed). Readers pin its root the \
        first time they read it and accept only what that root's chain signs; every later \
        publish needs the key.\n\n\
        Examples:\n  cvl repo create repos/DNS --key publisher.key\n  \
        cvl repo create repos/DNS --key a.key --key b.key --key c.key --threshold 2   (2 of 3 for the root)"
    )]
    Create {
        /// The folder (created if missing).
        dir: PathBuf,
        /// A signing key its root trusts (repeatable: --threshold of them
        /// must sign a new root; any one signs publishes).
        #[arg(long, value_name = "FILE")]
        key: Vec<PathBuf>,
        /// How many of the keys must sign a new root.
        #[arg(long, value_name = "N", default_value_t = 1, requires = "key")]
        threshold: u64,
        /// How long its timestamp stays valid (`7d`, `12h`).
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
        expires: std::time::Duration,
    },
    /// Sign a repository's metadata again with a fresh timestamp (what a
    /// publisher's cron runs before the last one expires).
    #[command(
        after_help = "Subscribers stop taking updates from a repository whose \
        timestamp has expired (a freeze attack looks the same): refresh well before --expires \
        runs out.\n\nExample: cvl repo refresh repos/DNS --key publisher.key --expires 7d"
    )]
    Refresh {
        /// The repository's folder.
        dir: PathBuf,
        /// A signing key the repository's root trusts.
        #[arg(long, value_name = "FILE", required = true)]
        key: Vec<PathBuf>,
        /// How long the new timestamp stays valid.
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
        expires: std::time::Duration,
    },
    /// Replace the keys a signed repository trusts: a new root signed by
    /// the old keys (as many as the old root asks) and the new.
    #[command(
        after_help = "Subscribers follow the rotation (each new root must be signed \
        by its predecessor's threshold); what is signed with an old key alone afterwards is \
        refused.\n\nExample: cvl repo rotate-key repos/DNS --key old.key --new-key new.key"
    )]
    RotateKey {
        /// The repository's folder.
        dir: PathBuf,
        /// A key of the current root (repeat as its threshold asks).
        #[arg(long, value_name = "FILE", required = true)]
        key: Vec<PathBuf>,
        /// A key the new root trusts (repeatable).
        #[arg(long, value_name = "FILE", required = true)]
        new_key: Vec<PathBuf>,
        /// How many of the new keys must sign the root after this one.
        #[arg(long, value_name = "N", default_value_t = 1)]
        threshold: u64,
        /// How long the new timestamp stays valid.
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
        expires: std::time::Duration,
    },
    /// Sign an existing unsigned repository in place (its root trusts the
    /// key given); nothing of its versions changes.
    #[command(
        after_help = "Subscribers that read it unsigned pin its root the next time \
        they read it.\n\nExample: cvl repo sign repos/DNS --key publisher.key"
    )]
    Sign {
        /// The repository's folder.
        dir: PathBuf,
        /// The key its root trusts (repeatable, with --threshold).
        #[arg(long, value_name = "FILE", required = true)]
        key: Vec<PathBuf>,
        /// How many of the keys must sign a new root.
        #[arg(long, value_name = "N", default_value_t = 1)]
        threshold: u64,
        /// How long its timestamp stays valid.
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
        expires: std::time::Duration,
    },
    /// Pin a repository's root out of band (from its publisher, not from
    /// the repository): every reader on this machine starts its trust there.
    #[command(
        after_help = "Without a pin, the first read of a signed repository trusts its \
        first root (trust on first use) and records it in cvl.lock. A pin set here (kept in \
        $CVL_HOME/trust/) or in a cvl.toml's [trust] table comes first.\n\n\
        Example: cvl repo trust http://repos.example.org/DNS --root dns-root.json"
    )]
    Trust {
        /// The repository's URL, as imports write it.
        url: String,
        /// The root.json its publisher gave you.
        #[arg(long, value_name = "FILE")]
        root: PathBuf,
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
    /// The signing key of a signed repository (its targets, snapshot and
    /// timestamp are signed again with the new version in them).
    #[arg(long, value_name = "FILE")]
    pub key: Vec<PathBuf>,
    /// How long the new timestamp stays valid (a signed repository).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub expires: std::time::Duration,
    /// Test the appliance first, as `cvl test` does (root, QEMU): a failed
    /// step refuses the publish and nothing is written into the
    /// repository; the version's manifest records the test it passed
    /// (shown by `cvl repo log`).
    #[arg(long)]
    pub test: bool,
    #[command(flatten)]
    pub test_options: crate::test::TestOptions,
    #[command(flatten)]
    pub load: LoadArgs,
}

pub fn run(command: RepoCommand) -> Result<ExitCode> {
    match command {
        RepoCommand::Create {
            dir,
            key,
            threshold,
            expires,
        } => {
            let keys = crate::key::load(&key)?;
            publish::create(&dir).map_err(anyhow::Error::msg)?;
            if keys.is_empty() {
                eprintln!(
                    "created an empty repository in {} (unsigned: readers are warned; sign it \
                     with `cvl repo sign`)",
                    dir.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let refs: Vec<&_> = keys.iter().collect();
            let signed = sign::init(&dir, &refs, threshold, expires).map_err(anyhow::Error::msg)?;
            eprintln!(
                "created an empty signed repository in {}: its root trusts {}; timestamp valid \
                 until {}",
                dir.display(),
                signed.root,
                signed.expires
            );
            Ok(ExitCode::SUCCESS)
        }
        RepoCommand::Refresh { dir, key, expires } => {
            let keys = crate::key::load(&key)?;
            let refs: Vec<&_> = keys.iter().collect();
            let signed = publish::locked(&dir, || sign::sign(&dir, &refs, expires))
                .map_err(anyhow::Error::msg)?;
            eprintln!(
                "signed {} again: {} files, timestamp version {} valid until {}",
                dir.display(),
                signed.targets,
                signed.timestamp_version,
                signed.expires
            );
            Ok(ExitCode::SUCCESS)
        }
        RepoCommand::RotateKey {
            dir,
            key,
            new_key,
            threshold,
            expires,
        } => {
            let old = crate::key::load(&key)?;
            let new = crate::key::load(&new_key)?;
            let (old, new): (Vec<&_>, Vec<&_>) = (old.iter().collect(), new.iter().collect());
            let signed =
                publish::locked(&dir, || sign::rotate(&dir, &old, &new, threshold, expires))
                    .map_err(anyhow::Error::msg)?;
            eprintln!(
                "{} now trusts {}, signed by the old root's keys and the new",
                dir.display(),
                signed.root
            );
            Ok(ExitCode::SUCCESS)
        }
        RepoCommand::Sign {
            dir,
            key,
            threshold,
            expires,
        } => {
            if !dir.join(cvl_repo::index::INDEX_FILE).is_file() {
                bail!("{} is not a repository", dir.display());
            }
            let keys = crate::key::load(&key)?;
            let refs: Vec<&_> = keys.iter().collect();
            let signed = publish::locked(&dir, || sign::init(&dir, &refs, threshold, expires))
                .map_err(anyhow::Error::msg)?;
            eprintln!(
                "signed {}: {} files; its root trusts {}; timestamp valid until {}",
                dir.display(),
                signed.targets,
                signed.root,
                signed.expires
            );
            Ok(ExitCode::SUCCESS)
        }
        RepoCommand::Trust { url, root } => {
            let bytes =
                std::fs::read(&root).with_context(|| format!("cannot read {}", root.display()))?;
            let pin = cvl_repo::trust::pin_of(&bytes)
                .with_context(|| format!("{} is not a TUF root.json", root.display()))?;
            let home = cvl_repo::settings::default_home();
            let path = cvl_repo::trust::anchor_path(&home, &url);
            cvl_repo::write_atomic(&path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("{url}: readers on this machine now start from {pin}");
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
                        match &v.tested {
                            Some(t) => println!(
                                "    tested {}: {} steps passed, {} skipped{} ({})",
                                t.at,
                                t.passed,
                                t.skipped,
                                t.upgrade_from
                                    .as_ref()
                                    .map(|f| format!(", the upgrade from {f} included"))
                                    .unwrap_or_default(),
                                t.by
                            ),
                            None => println!("    not tested before it was published"),
                        }
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
pub(crate) fn open(repo: &str, load: &FetchArgs) -> Result<(Fetcher, Location, Index)> {
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
    let keys = crate::key::load(&args.key)?;
    if !args.test {
        if let Some(option) = args.test_options.given() {
            bail!("{option} is an option of the test: add --test to test before publishing");
        }
    }
    let tested = if args.test {
        if args.test_options.previous.is_none() && has_versions(&args.repo) {
            eprintln!(
                "note: the upgrade from {}'s newest version is not tested: add --previous {}",
                args.repo.display(),
                args.repo.display()
            );
        }
        match crate::test::run_for_publish(&args.file, &args.test_options, &args.load.fetch)? {
            Ok(tested) => Some(tested),
            Err(report) => {
                eprintln!(
                    "error: not publishing {}: {} step(s) of its test failed (above); nothing \
                     was written into {}",
                    args.file.display(),
                    report.count(cvl_appliance::report::Outcome::Failed),
                    args.repo.display()
                );
                return Ok(ExitCode::from(1));
            }
        }
    } else {
        None
    };
    let refs: Vec<&_> = keys.iter().collect();
    let expires = args.expires;
    let sign_it = |dir: &std::path::Path| sign::sign(dir, &refs, expires).map(drop);
    let signer: Option<publish::Signer> = if keys.is_empty() {
        None
    } else {
        Some(&sign_it)
    };
    let version = publish::publish_tested(&args.repo, &name, &files, signer, tested)
        .map_err(anyhow::Error::msg)?;
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

/// Whether the repository folder `dir` has a version published.
fn has_versions(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir.join("versions"))
        .map(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
        })
        .unwrap_or(false)
}
