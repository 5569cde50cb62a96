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
}

impl VersionEntry {
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.path == path)
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

    /// Parses an index, saying what is wrong with a bad one.
    pub fn parse(bytes: &[u8]) -> Result<Index, String> {
        let index: Index = serde_json::from_slice(bytes)
            .map_err(|e| format!("the repository index is not valid ({e})"))?;
        if index.format != FORMAT {
            return Err(format!(
                "the repository index has format {}, and this toolchain reads format {FORMAT}",
                index.format
            ));
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
