//! `cvl test`: an appliance booted in a sandbox of its own and checked
//! against the guest contract and its own checks (`cvl_appliance::contract`);
//! each step said as it finishes, then the report for people, as JSON or
//! as JUnit XML. Exit 0 when every step passed, 1 when one failed, 2 when
//! the appliance could not be tested. `cvl publish --test` runs the same
//! first ([`TestOptions`], [`run_for_publish`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use cvl_appliance::contract::{self, Previous, Progress, Spec, Wanted};
use cvl_appliance::params;
use cvl_appliance::report::{self, Report};

use crate::workspace::FetchArgs;

#[derive(clap::Args)]
pub struct TestArgs {
    /// The appliance: the folder `cvl build` made (its CVL file, VM
    /// description and disks), or its CVL file.
    pub appliance: PathBuf,
    #[command(flatten)]
    pub options: TestOptions,
    #[command(flatten)]
    pub fetch: FetchArgs,
    /// Output: for people, JSON, or JUnit XML (for CI). Steps are said on
    /// standard error as they finish with json and junit.
    #[arg(long, value_enum, default_value_t = TestFormat::Human)]
    pub format: TestFormat,
}

/// How an appliance is tested (`cvl test`, `cvl publish --test`).
#[derive(clap::Args, Clone)]
pub struct TestOptions {
    /// Its parameters: `NAME=VALUE` lines (`domain=acme.org`; a value
    /// starting with `"` or `{` is CVL: `forwarders="a", "b"`), or a CVL
    /// file (`.cvl`) whose one object extends the appliance and assigns
    /// them. Sensitive ones come from $CVL_SECRET_<APPLIANCE>_<NAME>, else
    /// a random value is made for the test.
    #[arg(long, value_name = "FILE")]
    pub params: Option<PathBuf>,
    /// The change the resend makes, `NAME=VALUE` as in --params (default:
    /// one more value of `provides`, which no hook reads). Use one that
    /// the appliance's checks can see, to check that the reload hook takes
    /// it.
    #[arg(long, value_name = "NAME=VALUE")]
    pub resend: Option<String>,
    /// Test the upgrade from a published version too: a repository (a
    /// folder, file://, http:// or https://, read and verified as every
    /// reader does), its newest version or @VERSION.
    /// That version boots first and runs its checks, then this one boots
    /// on its data disks as an update does, runs the contract and its
    /// checks, and finally a rollback puts the previous version back on
    /// the data from before the update and runs its checks again.
    #[arg(long, value_name = "REPO[@VERSION]")]
    pub previous: Option<String>,
    /// Seconds the guest has to be ready after booting.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub ready_timeout: u64,
    /// Seconds the guest has to power off when stopped; after them QEMU
    /// is told to quit, and the step fails.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub stop_timeout: u64,
    /// Seconds each of the appliance's checks may run.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub check_timeout: u64,
    /// Where each boot's console is kept.
    #[arg(long, value_name = "DIR", default_value = "cvl-test-consoles")]
    pub consoles: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TestFormat {
    Human,
    /// One object: appliance, steps (name, phase, outcome: passed, failed
    /// or skipped, seconds, message, output), seconds, consoles.
    Json,
    /// JUnit XML: a test suite per phase, a test case per step.
    Junit,
}

impl TestOptions {
    /// What the test of the appliance `file` is (the previous version
    /// fetched through `fetch`'s settings).
    fn spec(&self, file: PathBuf, fetch: &FetchArgs) -> Result<Spec> {
        let params = match &self.params {
            Some(path) => params::read(path)?,
            None => Vec::new(),
        };
        let resend = match &self.resend {
            Some(line) => {
                let mut parsed = params::from_lines(line).map_err(|e| {
                    anyhow::anyhow!("--resend: {}", e.to_string().trim_start_matches("1: "))
                })?;
                let mut change = parsed.pop().context("--resend: give NAME=VALUE")?;
                change.line = 0;
                Some(change)
            }
            None => None,
        };
        Ok(Spec {
            file,
            params,
            params_file: self.params.clone(),
            resend,
            ready_timeout: self.ready_timeout,
            stop_timeout: self.stop_timeout,
            check_timeout: self.check_timeout,
            consoles: std::path::absolute(&self.consoles)?,
            previous: self
                .previous
                .as_deref()
                .map(|p| fetch_previous(p, fetch))
                .transpose()?,
        })
    }

    /// The first option that only a test takes, when one is given.
    pub fn given(&self) -> Option<&'static str> {
        if self.params.is_some() {
            Some("--params")
        } else if self.resend.is_some() {
            Some("--resend")
        } else if self.previous.is_some() {
            Some("--previous")
        } else {
            None
        }
    }
}

pub fn run(args: TestArgs) -> Result<ExitCode> {
    let file = contract::appliance_file(&args.appliance)?;
    let spec = args.options.spec(file, &args.fetch)?;
    let human = args.format == TestFormat::Human;
    let mut progress = |p: Progress<'_>| match p {
        Progress::Begins(what) => eprintln!("  ... {what}"),
        Progress::Finished(step) if human => print!("{}", report::step_line(step)),
        Progress::Finished(step) => eprint!("{}", report::step_line(step)),
    };
    let report = test(&spec, &mut progress)?;
    match args.format {
        TestFormat::Human => print!("{}", report.summary()),
        TestFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        TestFormat::Junit => print!("{}", report.junit()),
    }
    Ok(ExitCode::from(if report.passed() { 0 } else { 1 }))
}

fn test(spec: &Spec, progress: &mut dyn FnMut(Progress<'_>)) -> Result<Report> {
    let exe = std::env::current_exe().context("cannot find the cvl executable")?;
    contract::run(&exe, spec, progress)
}

/// `cvl publish --test`: the appliance `file` tested, its steps said on
/// standard error; what the version's manifest records when every step
/// passed, or the report that refuses the publish.
pub fn run_for_publish(
    file: &Path,
    options: &TestOptions,
    fetch: &FetchArgs,
) -> Result<std::result::Result<cvl_repo::index::Tested, Report>> {
    let spec = options.spec(file.to_path_buf(), fetch)?;
    let mut progress = |p: Progress<'_>| match p {
        Progress::Begins(what) => eprintln!("  ... {what}"),
        Progress::Finished(step) => eprint!("{}", report::step_line(step)),
    };
    let report = test(&spec, &mut progress)?;
    eprint!("{}", report.summary());
    if !report.passed() {
        return Ok(Err(report));
    }
    let count = |o| u32::try_from(report.count(o)).unwrap_or(u32::MAX);
    Ok(Ok(cvl_repo::index::Tested {
        at: cvl_ops::state::now(),
        by: format!("cvl test {}", env!("CARGO_PKG_VERSION")),
        passed: count(report::Outcome::Passed),
        skipped: count(report::Outcome::Skipped),
        upgrade_from: spec.previous.map(|p| p.label),
    }))
}

/// The version `--previous` names, fetched and verified as every reader
/// does (each file against the index's SHA-256; a signed repository's
/// metadata against its root), here, before the sandbox (which has no
/// network) publishes it.
fn fetch_previous(text: &str, fetch: &FetchArgs) -> Result<Previous> {
    let wanted = Wanted::parse(text)?;
    let (fetcher, location, index) =
        crate::repo::open(&wanted.repo, fetch).with_context(|| format!("--previous {text}"))?;
    let has: Vec<u32> = index.versions.iter().map(|v| v.version).collect();
    let version = match wanted.version {
        Some(v) if has.contains(&v) => v,
        Some(v) => bail!(
            "--previous {text}: {} has no version {v} (it has {})",
            wanted.repo,
            if has.is_empty() {
                "none".to_string()
            } else {
                has.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        None => *has
            .iter()
            .max()
            .with_context(|| format!("--previous {text}: {} has no version yet", wanted.repo))?,
    };
    eprintln!("  ... fetching version {version} of {}", wanted.repo);
    let dir = fetcher
        .fetch_version(&location, &index, version)
        .map_err(|e| anyhow::anyhow!("--previous {text}: {e}"))?;
    let repo = if wanted.repo.contains("://") {
        wanted.repo
    } else {
        std::path::absolute(&wanted.repo)?.display().to_string()
    };
    Ok(Previous {
        dir,
        version,
        label: format!("{repo}@{version}"),
    })
}
