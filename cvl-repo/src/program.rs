//! What a VM appliance runs, for the planner: its VM description read from
//! where the appliance came from (a repository version, or the folder of a
//! local file), its memory, and a digest of its program (the description
//! and every program disk). Data disks are the user's and never part of it.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::fetch::{Fetcher, Location};
use crate::vm::VmDescription;

/// A VM appliance's program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramFacts {
    /// Where it came from: the repository URL, or the local description.
    pub source: String,
    /// SHA-256 over the description and the program disks' digests.
    pub digest: String,
    pub memory_mib: u32,
    /// It runs the QEMU guest agent (parameters can be resent).
    pub agent: bool,
}

/// The program of a versioned appliance: `vm` names its description among
/// the version's files; the index's digests stand for the disks (nothing
/// large is downloaded to plan).
pub fn from_repository(
    fetcher: &Fetcher,
    repository: &str,
    url: &str,
    version: u32,
    vm: &str,
) -> Result<ProgramFacts, String> {
    crate::paths::check_relative(vm).map_err(|e| format!("`vm`: {e}"))?;
    let location = Location::parse(repository, None)?;
    let index = fetcher
        .index(&location)?
        .ok_or_else(|| format!("{repository} is no longer a repository"))?;
    let entry = index
        .version(version)
        .ok_or_else(|| format!("{repository} no longer lists version {version}"))?;
    let file = entry.file(vm).ok_or_else(|| {
        format!("version {version} of {url} has no VM description `{vm}` (its `vm` names it)")
    })?;
    let text = fetcher.version_file(&location, version, file)?;
    let text = String::from_utf8(text).map_err(|_| format!("`{vm}` is not UTF-8"))?;
    let description = VmDescription::parse(&text).map_err(|e| format!("`{vm}`: {e}"))?;
    let digest = version_digest(entry, vm, &description)
        .map_err(|e| format!("version {version} of {url} {e}"))?;
    Ok(ProgramFacts {
        // As the import wrote it (mirrors apply where it is fetched), unless
        // it is relative to the importing file: then where it resolved.
        source: if Location::parse(url, None).is_ok() {
            url.to_string()
        } else {
            location.url()
        },
        digest,
        memory_mib: description.memory,
        agent: description.agent,
    })
}

/// The digest of a published version's program (its description `vm`
/// and every disk it names, by the SHA-256 the version lists): what a plan
/// records, and what a host holds the program it fetched to.
pub fn version_digest(
    entry: &crate::index::VersionEntry,
    vm: &str,
    description: &VmDescription,
) -> Result<String, String> {
    let file = entry
        .file(vm)
        .ok_or_else(|| format!("has no VM description `{vm}`"))?;
    let mut hasher = Sha256::new();
    hasher.update(file.sha256.as_bytes());
    for (_, name) in description.files() {
        let disk = entry
            .file(name)
            .ok_or_else(|| format!("lacks `{name}`, which `{vm}` names"))?;
        hasher.update(name.as_bytes());
        hasher.update(disk.sha256.as_bytes());
    }
    Ok(hex(&hasher.finalize()))
}

/// The program of an appliance set in a local file: the description beside
/// it and every file it names but the data disks (`data_devices`), hashed.
pub fn from_folder(dir: &Path, vm: &str, data_devices: &[String]) -> Result<ProgramFacts, String> {
    let path = dir.join(vm);
    let shown = crate::display_path(&path);
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "`vm` names {shown}, which does not exist: write the VM description there \
             (see docs/vm-description.md)"
        ),
        _ => format!("cannot read {shown}: {e}"),
    })?;
    let description = VmDescription::parse(&text).map_err(|e| format!("{shown}: {e}"))?;
    let mut hasher = Sha256::new();
    hasher.update(crate::index::sha256_hex(text.as_bytes()).as_bytes());
    let data: Vec<&str> = description
        .disks
        .iter()
        .filter(|d| data_devices.contains(&d.device))
        .map(|d| d.file.as_str())
        .collect();
    for (what, name) in description.files() {
        if data.contains(&name) {
            continue;
        }
        let file = dir.join(name);
        let (digest, _) = crate::disk::hash_file(&file).map_err(|_| {
            format!(
                "the {what} `{name}` that {shown} names does not exist ({})",
                crate::display_path(&file)
            )
        })?;
        hasher.update(name.as_bytes());
        hasher.update(digest.as_bytes());
    }
    Ok(ProgramFacts {
        source: crate::display_path(&path),
        digest: hex(&hasher.finalize()),
        memory_mib: description.memory,
        agent: description.agent,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
