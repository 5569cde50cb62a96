//! The repository layout: plain files, so that any static web server serving
//! the directory is a working `http://` repository.
//!
//! ```text
//! REPO/
//!   cvl-repository.json          the index: every version, its files, their SHA-256
//!   versions/1/DNS.cvl           version 1 (immutable once written)
//!   versions/1/version.json      version 1's own manifest (the index is rebuilt from these)
//!   versions/2/...
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const INDEX_FILE: &str = "cvl-repository.json";
pub const VERSIONS_DIR: &str = "versions";
pub const MANIFEST_FILE: &str = "version.json";
pub const FORMAT: u32 = 1;

/// One file of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The path inside the version directory.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// For a program disk stored as a delta: its backing file, relative to
    /// the version's folder (`../2/system.qcow2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backing: Option<String>,
}

/// One version: what `versions/N/version.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionEntry {
    pub version: u32,
    /// RFC 3339, UTC.
    pub published: String,
    /// The CVL file of the version.
    pub cvl: String,
    pub files: Vec<FileEntry>,
    /// How the version was tested before it was published (`cvl publish
    /// --test`); absent when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tested: Option<Tested>,
}

/// What `cvl publish --test` records of the test a version passed: the
/// guest contract and the appliance's own checks, booted in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tested {
    /// When the test ended (RFC 3339, UTC).
    pub at: String,
    /// What ran it: `cvl test` and cvl's version.
    pub by: String,
    /// The steps that passed and those skipped (none failed: a failure
    /// refuses the publish).
    pub passed: u32,
    pub skipped: u32,
    /// The version whose data the upgrade was tested from (`REPO@N`), when
    /// it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_from: Option<String>,
}

impl VersionEntry {
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Checks what a repository says of a version before anything local is
    /// built from it: every path a relative path of plain names, every
    /// backing file an earlier version's disk, every digest 64 hex digits.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.version;
        if n == 0 {
            return Err("version 0 is listed; versions count from 1".to_string());
        }
        crate::paths::check_relative(&self.cvl)
            .map_err(|e| format!("version {n} names its CVL file {e}"))?;
        for file in &self.files {
            crate::paths::check_relative(&file.path)
                .map_err(|e| format!("version {n} lists the file {e}"))?;
            if file.path == MANIFEST_FILE {
                return Err(format!("version {n} lists its own manifest as a file"));
            }
            if file.sha256.len() != 64 || !file.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "version {n} gives {:?} the SHA-256 {:?}, which is not 64 hex digits",
                    file.path, file.sha256
                ));
            }
            if let Some(backing) = &file.backing {
                crate::paths::check_backing(n, backing)
                    .map_err(|e| format!("version {n}, {:?}: {e}", file.path))?;
            }
        }
        Ok(())
    }
}

/// The index of a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    pub format: u32,
    /// Versions in increasing order.
    pub versions: Vec<VersionEntry>,
}

impl Index {
    pub fn empty() -> Index {
        Index {
            format: FORMAT,
            versions: Vec::new(),
        }
    }

    pub fn latest(&self) -> Option<&VersionEntry> {
        self.versions.last()
    }

    pub fn version(&self, n: u32) -> Option<&VersionEntry> {
        self.versions.iter().find(|v| v.version == n)
    }

    /// Every file version `n` needs, as paths inside the repository
    /// (`versions/N/name`): its own, and the earlier versions' disks its
    /// disks are deltas on, each once.
    pub fn files_with_backing(&self, n: u32) -> Result<Vec<(String, FileEntry)>, String> {
        let mut out = Vec::new();
        let mut pending = vec![n];
        let mut done = std::collections::HashSet::new();
        while let Some(v) = pending.pop() {
            if !done.insert(v) {
                continue;
            }
            let entry = self
                .version(v)
                .ok_or_else(|| format!("the index has no version {v}"))?;
            for file in &entry.files {
                out.push((version_file_path(v, &file.path), file.clone()));
                if let Some(backing) = &file.backing {
                    pending.push(crate::paths::check_backing(v, backing)?);
                }
            }
        }
        Ok(out)
    }

    /// Parses and validates an index, saying what is wrong with a bad one.
    /// Nothing a repository says is used before this has checked it.
    pub fn parse(bytes: &[u8]) -> Result<Index, String> {
        let index: Index = serde_json::from_slice(bytes)
            .map_err(|e| format!("the repository index is not valid ({e})"))?;
        if index.format != FORMAT {
            return Err(format!(
                "the repository index has format {}, and this toolchain reads format {FORMAT}",
                index.format
            ));
        }
        let mut previous = 0;
        for version in &index.versions {
            if version.version <= previous {
                return Err(format!(
                    "the repository index lists version {} after version {previous}",
                    version.version
                ));
            }
            previous = version.version;
            version
                .validate()
                .map_err(|e| format!("the repository index is unsafe: {e}"))?;
        }
        Ok(index)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The path of a version's file inside the repository.
pub fn version_file_path(version: u32, file: &str) -> String {
    format!("{VERSIONS_DIR}/{version}/{file}")
}
