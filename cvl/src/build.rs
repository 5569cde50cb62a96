//! `cvl build`: an appliance's program built from its recipe by the
//! appliance builder (`cvl_appliance::builder`), the builder's progress on
//! standard error, a summary (or JSON) on standard output; `--check`
//! rebuilds from nothing and compares, as `cvl build --check` promises a
//! publisher that the same inputs give the same image.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use cvl_appliance::{Build, Builder, Rebuild};

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The recipe: a folder with `packages` (Debian packages), `cvl` (the
    /// CVL file it publishes), its VM description, and `files/`.
    pub recipe: PathBuf,
    /// The folder to build into, as `cvl publish` takes it (not with
    /// --check, which builds into temporary folders).
    #[arg(required_unless_present = "check")]
    pub out: Option<PathBuf>,
    /// Build twice, the second time from nothing, and compare the two
    /// images' manifests: exit 1 if the same inputs gave other files.
    #[arg(long, conflicts_with = "out")]
    pub check: bool,
    /// The builder's cache (default /var/cache/cvl-test): built images
    /// are kept there by the hash of their inputs.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Output: a summary for people, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = BuildFormat::Human)]
    pub format: BuildFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BuildFormat {
    Human,
    /// One object: name, key, out, built, disk_bytes, packages, files;
    /// with --check: first, second (each such an object, without out),
    /// reproducible, same_disk_bytes, differences (section, key, before,
    /// after) and kept (the folder of both builds when they differ).
    Json,
}

pub fn run(args: BuildArgs) -> Result<ExitCode> {
    cvl_appliance::builder::check_recipe(&args.recipe)?;
    let builder = Builder::locate()?;
    let mut progress = |line: &str| eprintln!("  {line}");
    if args.check {
        let rebuild = match builder.rebuild(&args.recipe, args.cache.as_deref(), &mut progress) {
            Ok(rebuild) => rebuild,
            Err(error) => return failed(error),
        };
        report_rebuild(&rebuild, args.format)?;
        return Ok(ExitCode::from(if rebuild.reproducible() { 0 } else { 1 }));
    }
    let Some(out) = &args.out else {
        bail!("name the folder to build into: cvl build RECIPE OUT");
    };
    let build = match builder.build(&args.recipe, out, args.cache.as_deref(), &mut progress) {
        Ok(build) => build,
        Err(error) => return failed(error),
    };
    match args.format {
        BuildFormat::Json => {
            let mut value = serde_json::to_value(&build)?;
            value["out"] = build.out.display().to_string().into();
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        BuildFormat::Human => {
            println!("{}", summary(&build));
            println!(
                "publish it with: cvl publish REPO {}",
                build.out.join(format!("{}.cvl", build.name)).display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A build that the builder refused or that failed: its reason, exit 1
/// (the recipe's or the machine's problem, said above by the builder).
fn failed(error: anyhow::Error) -> Result<ExitCode> {
    eprintln!("error: {error:#}");
    Ok(ExitCode::from(1))
}

fn summary(build: &Build) -> String {
    format!(
        "{} {} (key {}) into {}: a {} program disk, {} packages, {} files",
        build.name,
        if build.built {
            "built"
        } else {
            "taken from the cache"
        },
        build.key,
        build.out.display(),
        megabytes(build.disk_bytes),
        build.packages,
        build.files
    )
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn report_rebuild(rebuild: &Rebuild, format: BuildFormat) -> Result<()> {
    if format == BuildFormat::Json {
        let mut value = serde_json::to_value(rebuild)?;
        value["reproducible"] = rebuild.reproducible().into();
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let (first, second) = (&rebuild.first, &rebuild.second);
    if rebuild.reproducible() {
        println!(
            "reproducible: {} rebuilt from nothing has the same {} packages and {} files \
             (key {})",
            first.name, first.packages, first.files, first.key
        );
        println!(
            "the program disks are {}",
            if rebuild.same_disk_bytes {
                "the same bytes too".to_string()
            } else {
                format!(
                    "not the same bytes ({} and {}): the filesystem's own metadata differs, \
                     not its files",
                    megabytes(first.disk_bytes),
                    megabytes(second.disk_bytes)
                )
            }
        );
        return Ok(());
    }
    println!(
        "not reproducible: {} rebuilt from nothing differs in {} entr{} of its manifest:",
        first.name,
        rebuild.differences.len(),
        if rebuild.differences.len() == 1 {
            "y"
        } else {
            "ies"
        }
    );
    for d in &rebuild.differences {
        match (&d.before, &d.after) {
            (Some(b), Some(a)) => println!(
                "  {}: {}\n    first:  {b}\n    second: {a}",
                d.section, d.key
            ),
            (Some(b), None) => println!(
                "  {}: {} only in the first build\n    {b}",
                d.section, d.key
            ),
            (None, Some(a)) => println!("  {}: {} only in the rebuild\n    {a}", d.section, d.key),
            (None, None) => {}
        }
    }
    if let Some(kept) = &rebuild.kept {
        println!(
            "both builds are kept for a closer look: {}/first and {}/second (remove the \
             folder when done)",
            kept.display(),
            kept.display()
        );
    }
    println!(
        "a package version that differs means the mirror changed between the builds; a file \
         that differs was made differently (a time, a random value, an unsorted list): fix \
         the recipe's setup or files"
    );
    Ok(())
}
