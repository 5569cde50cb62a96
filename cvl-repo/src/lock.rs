//! `cvl.lock`: beside a root file, the version and SHA-256 each import of its
//! graph resolved to, and the root each signed repository is trusted with. Honoured on later loads (an unpinned import stays on
//! its locked version until `cvl update-lock`), so a build is reproducible
//! and a repository that changes a published version is caught.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::trust::Pin;

pub const LOCK_FILE: &str = "cvl.lock";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct LockEntry {
    /// The URL as written in the import (before mirrors).
    pub url: String,
    pub cvl: String,
    /// The version the import asked for; `None` for the latest.
    pub requested: Option<String>,
    pub version: u32,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    pub format: u32,
    pub imports: Vec<LockEntry>,
    /// The root each signed repository was first read with, or rotated to
    /// since (by the URL its imports write): trust on first use. Later
    /// reads accept only what that root's chain signs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roots: BTreeMap<String, Pin>,
}

impl Default for LockFile {
    fn default() -> Self {
        LockFile {
            format: 1,
            imports: Vec::new(),
            roots: BTreeMap::new(),
        }
    }
}

impl LockFile {
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(LOCK_FILE)
    }

    /// Reads the lock in `dir`; none is an empty lock.
    pub fn read(dir: &Path) -> Result<LockFile, String> {
        crate::read_json(
            &Self::path_in(dir),
            "lock file",
            "delete it and run `cvl update-lock`",
        )
    }

    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let mut sorted = self.clone();
        sorted.imports.sort();
        crate::write_json(&Self::path_in(dir), &sorted)
    }

    pub fn find(&self, url: &str, cvl: &str, requested: Option<&str>) -> Option<&LockEntry> {
        self.imports
            .iter()
            .find(|e| e.url == url && e.cvl == cvl && e.requested.as_deref() == requested)
    }

    pub fn upsert(&mut self, entry: LockEntry) {
        self.imports.retain(|e| {
            !(e.url == entry.url && e.cvl == entry.cvl && e.requested == entry.requested)
        });
        self.imports.push(entry);
    }
}
