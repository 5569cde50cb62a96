//! The appliance builder: `build-appliance.sh`, the recipe format of
//! appliances/ as a script (mmdebstrap, `mkfs.ext4 -d`, a cache keyed by
//! the hash of the inputs), found where cvl is installed or in the source
//! tree it was built from, run with its progress passed on line by line,
//! and its output read back. A shell script because every step is a
//! Debian tool run as root; what cvl adds is finding it, clear errors,
//! the report, and the comparison of a rebuild.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::manifest::{Difference, Manifest};

/// The builder's file name, in `scripts/` of the source tree and of
/// `/usr/share/cvl` (the guest kit beside it, in `guest-kit/`).
pub const SCRIPT: &str = "build-appliance.sh";

/// The environment variable that names another builder script.
pub const BUILDER_VAR: &str = "CVL_BUILDER";

/// A builder script that was found.
#[derive(Debug, Clone)]
pub struct Builder {
    script: PathBuf,
}

/// What a build left in its output folder.
#[derive(Debug, Clone, Serialize)]
pub struct Build {
    /// The appliance's name (its CVL file's, `NAME.cvl`).
    pub name: String,
    /// The hash of the build's inputs: its cache entry.
    pub key: String,
    /// The output folder, as `cvl publish` takes it.
    #[serde(skip)]
    pub out: PathBuf,
    /// Whether this run built the image (false: taken from the cache).
    pub built: bool,
    /// The program disk's size in bytes.
    pub disk_bytes: u64,
    /// How many packages and files the image holds.
    pub packages: usize,
    pub files: usize,
    #[serde(skip)]
    pub manifest: Manifest,
}

/// A rebuild from nothing compared with a build.
#[derive(Debug, Clone, Serialize)]
pub struct Rebuild {
    pub first: Build,
    pub second: Build,
    /// What the rebuild's manifest changes of the first's: empty when the
    /// same inputs gave the same packages and files.
    pub differences: Vec<Difference>,
    /// Whether the two program disks are the same bytes (the files can be
    /// the same while the filesystem's own metadata is not).
    pub same_disk_bytes: bool,
    /// Where the two builds are kept (`first/`, `second/`) when they
    /// differ, for a closer look; a rebuild that matches leaves nothing.
    pub kept: Option<PathBuf>,
}

impl Rebuild {
    pub fn reproducible(&self) -> bool {
        self.differences.is_empty()
    }
}

impl Builder {
    /// `$CVL_BUILDER`, else `../share/cvl/scripts/` from the running
    /// executable (`/usr/bin/cvl` of the Debian package), else `scripts/`
    /// of the source tree cvl was built from.
    pub fn locate() -> Result<Builder> {
        if let Some(script) = std::env::var_os(BUILDER_VAR) {
            let script = PathBuf::from(script);
            if !script.is_file() {
                bail!(
                    "{BUILDER_VAR} names {}, which is not a file: unset it, or name the \
                     builder script ({SCRIPT})",
                    script.display()
                );
            }
            return Ok(Builder { script });
        }
        let mut looked = Vec::new();
        if let Some(bin) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
        {
            looked.push(bin.join("../share/cvl/scripts").join(SCRIPT));
        }
        looked.push(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../scripts")
                .join(SCRIPT),
        );
        for script in &looked {
            if script.is_file() {
                return Ok(Builder {
                    script: script.clone(),
                });
            }
        }
        let looked: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "the appliance builder ({SCRIPT}) is not installed: looked at {}. Install the cvl \
             Debian package, which puts it in /usr/share/cvl/scripts, or set {BUILDER_VAR} to \
             the script in a source tree",
            looked.join(" and ")
        )
    }

    pub fn script(&self) -> &Path {
        &self.script
    }

    /// Builds RECIPE into OUT (or takes it from the cache), with `cache`
    /// in place of the builder's default (`/var/cache/cvl-test`). Each
    /// line the builder says goes to `progress` as it comes.
    pub fn build(
        &self,
        recipe: &Path,
        out: &Path,
        cache: Option<&Path>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Build> {
        check_recipe(recipe)?;
        if out.exists() && !out.is_dir() {
            bail!(
                "{} is a file: the output must be a folder (new or one to overwrite)",
                out.display()
            );
        }
        let (reader, writer) = std::io::pipe().context("cannot make a pipe for the builder")?;
        let mut command = Command::new("bash");
        command
            .arg(&self.script)
            .arg(recipe)
            .arg(out)
            .stdin(std::process::Stdio::null())
            .stdout(
                writer
                    .try_clone()
                    .context("cannot make a pipe for the builder")?,
            )
            .stderr(writer);
        if let Some(cache) = cache {
            command.env("CVL_IMAGE_CACHE", cache);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run bash {}", self.script.display()))?;
        // The parent's ends of the pipe go with the command: the reader
        // sees the end when the builder and what it started are done.
        drop(command);
        let mut built = false;
        let mut last = None;
        let mut lines = BufReader::new(reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            if lines
                .read_until(b'\n', &mut line)
                .context("cannot read the builder's output")?
                == 0
            {
                break;
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            let text = text.strip_prefix("build-appliance: ").unwrap_or(text);
            built |= text.contains(": built in ");
            progress(text);
            last = Some(text.to_string());
        }
        let status = child.wait().context("cannot wait for the builder")?;
        if !status.success() {
            bail!(
                "building {} failed ({status}): {}",
                recipe.display(),
                last.as_deref().unwrap_or("the builder said nothing")
            );
        }
        read_build(out, built)
    }

    /// Builds RECIPE as `build` does, then again from nothing (a cache of
    /// its own in a temporary folder, the boot files and packages fetched
    /// anew), and compares the two: the same inputs must give the same
    /// packages and files.
    pub fn rebuild(
        &self,
        recipe: &Path,
        cache: Option<&Path>,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Rebuild> {
        let work = tempfile::Builder::new()
            .prefix("cvl-build-check-")
            .tempdir()
            .context("cannot make a temporary folder for the rebuild")?;
        let first = self.build(recipe, &work.path().join("first"), cache, progress)?;
        progress("rebuilding from nothing (a cache of its own) to compare");
        let second = self.build(
            recipe,
            &work.path().join("second"),
            Some(&work.path().join("cache")),
            progress,
        )?;
        let differences = first.manifest.diff(&second.manifest);
        let same_disk_bytes = same_bytes(
            &first.out.join("system.qcow2"),
            &second.out.join("system.qcow2"),
        )?;
        let kept = if differences.is_empty() {
            None
        } else {
            // The second build's own cache (boot files, modules) is not
            // needed to compare: its output holds links to what it made.
            let _ = std::fs::remove_dir_all(work.path().join("cache"));
            Some(work.keep())
        };
        Ok(Rebuild {
            first,
            second,
            differences,
            same_disk_bytes,
            kept,
        })
    }
}

/// A recipe is a folder with a `packages` file (its Debian packages) or a
/// `base` file (a variant of another recipe).
pub fn check_recipe(recipe: &Path) -> Result<()> {
    if !recipe.is_dir() {
        bail!(
            "{}: no such folder: a recipe is a folder with a `packages` file (appliances/README.md)",
            recipe.display()
        );
    }
    if !recipe.join("packages").is_file() && !recipe.join("base").is_file() {
        bail!(
            "{} is not an appliance recipe: it has neither a `packages` file (the Debian \
             packages of the appliance) nor a `base` file (the recipe it is a variant of); \
             appliances/README.md describes the format",
            recipe.display()
        );
    }
    if !recipe.join("cvl").is_file() && !recipe.join("base").is_file() {
        bail!(
            "{} has no `cvl` file: its first line names the CVL file the appliance publishes",
            recipe.display()
        );
    }
    Ok(())
}

/// What the builder left in OUT.
fn read_build(out: &Path, built: bool) -> Result<Build> {
    let read = |name: &str| {
        std::fs::read_to_string(out.join(name))
            .with_context(|| format!("the builder left no {name} in {}", out.display()))
    };
    let key = read(".key")?.trim().to_string();
    let manifest = Manifest::parse(&read("manifest.txt")?);
    let disk_bytes = std::fs::metadata(out.join("system.qcow2"))
        .with_context(|| format!("the builder left no system.qcow2 in {}", out.display()))?
        .len();
    let name = std::fs::read_dir(out)
        .with_context(|| format!("cannot read {}", out.display()))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".cvl")
                .map(str::to_string)
        })
        .next()
        .with_context(|| format!("the builder left no CVL file in {}", out.display()))?;
    Ok(Build {
        name,
        key,
        out: out.to_path_buf(),
        built,
        disk_bytes,
        packages: manifest.packages(),
        files: manifest.files(),
        manifest,
    })
}

/// Whether two files hold the same bytes, read a block at a time.
fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let open =
        |p: &Path| std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()));
    let (fa, fb) = (open(a)?, open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ra, mut rb) = (
        BufReader::with_capacity(1 << 20, fa),
        BufReader::with_capacity(1 << 20, fb),
    );
    loop {
        let (ba, bb) = (ra.fill_buf()?, rb.fill_buf()?);
        let n = ba.len().min(bb.len());
        if n == 0 {
            return Ok(ba.len() == bb.len());
        }
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
        ra.consume(n);
        rb.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_that_is_not_a_recipe_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let builder = Builder {
            script: PathBuf::from("/nonexistent/build-appliance.sh"),
        };
        let err = builder
            .build(dir.path(), &dir.path().join("out"), None, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not an appliance recipe"), "{err}");
        assert!(err.contains("`packages` file"), "{err}");
        let err = builder
            .build(
                &dir.path().join("nope"),
                &dir.path().join("out"),
                None,
                &mut |_| {},
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such folder"), "{err}");
        std::fs::write(dir.path().join("packages"), "lighttpd\n").unwrap();
        let err = builder
            .build(dir.path(), &dir.path().join("out"), None, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no `cvl` file"), "{err}");
    }

    #[test]
    fn the_builder_of_the_source_tree_is_found() {
        let builder = Builder::locate().unwrap();
        assert!(builder.script().ends_with(SCRIPT));
        assert!(builder.script().is_file());
    }

    #[test]
    fn files_compare_by_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("c"),
        );
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&a, &big).unwrap();
        std::fs::write(&b, &big).unwrap();
        let mut other = big.clone();
        other[2_500_000] ^= 1;
        std::fs::write(&c, &other).unwrap();
        assert!(same_bytes(&a, &b).unwrap());
        assert!(!same_bytes(&a, &c).unwrap());
    }
}
