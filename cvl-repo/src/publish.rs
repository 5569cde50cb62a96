//! Creating repositories and publishing versions into them. A version is
//! written into a temporary folder and renamed into place, so a crash leaves
//! no half version, and the rename is what claims a version number, so two
//! concurrent publishes never get the same one. The index is then rebuilt
//! from the versions' manifests under a file lock.

use std::path::{Path, PathBuf};

use crate::index::{
    sha256_hex, FileEntry, Index, VersionEntry, INDEX_FILE, MANIFEST_FILE, VERSIONS_DIR,
};

/// Creates an empty repository in `dir` (which may exist, but must not be a
/// repository already).
pub fn create(dir: &Path) -> Result<(), String> {
    if dir.join(INDEX_FILE).exists() {
        return Err(format!("{} is already a repository", dir.display()));
    }
    std::fs::create_dir_all(dir.join(VERSIONS_DIR))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write_index(dir, &Index::empty())
}

fn write_index(dir: &Path, index: &Index) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(index).expect("an index serializes");
    text.push('\n');
    crate::write_atomic(&dir.join(INDEX_FILE), text.as_bytes())
        .map_err(|e| format!("cannot write the index of {}: {e}", dir.display()))
}

/// The versions present in `dir`, read from their manifests.
fn scan(dir: &Path) -> Result<Vec<VersionEntry>, String> {
    let versions_dir = dir.join(VERSIONS_DIR);
    let mut versions = Vec::new();
    let entries = std::fs::read_dir(&versions_dir)
        .map_err(|e| format!("{} is not a repository ({e})", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Ok(n) = name.parse::<u32>() else { continue };
        let manifest = entry.path().join(MANIFEST_FILE);
        let bytes = crate::paths::read_limited(&manifest, crate::paths::DOCUMENT_LIMIT)?;
        let version: VersionEntry = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a valid manifest: {e}", manifest.display()))?;
        version
            .validate()
            .map_err(|e| format!("{} is unsafe: {e}", manifest.display()))?;
        if version.version != n {
            return Err(format!(
                "{} claims version {}",
                manifest.display(),
                version.version
            ));
        }
        versions.push(version);
    }
    versions.sort_by_key(|v| v.version);
    Ok(versions)
}

/// What signs a repository's files once a publish changed them (its
/// `tuf/` metadata, `crate::trust::sign`), under the publish lock.
pub type Signer<'a> = &'a dyn Fn(&Path) -> Result<(), String>;

/// Rebuilds the index from the manifests, under the repository's lock,
/// then signs the result with `signer` (a signed repository).
fn rebuild_index(dir: &Path, signer: Option<Signer>) -> Result<Index, String> {
    let lock_path = dir.join(".cvl-publish.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    let index = Index {
        format: crate::index::FORMAT,
        versions: scan(dir)?,
    };
    write_index(dir, &index)?;
    if let Some(sign) = signer {
        sign(dir).map_err(|e| {
            format!(
                "{e}; the version is published but not signed: sign it with `cvl repo refresh \
                 {} --key FILE`",
                dir.display()
            )
        })?;
    }
    Ok(index)
}

/// Runs `f` under the repository's publish lock (what a publish holds
/// while it rebuilds the index and signs): a refresh or rotation of its
/// metadata never interleaves with a publish.
pub fn locked<T>(dir: &Path, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let lock_path = dir.join(".cvl-publish.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    f()
}

/// A file to publish, by its name in the version.
pub enum PublishFile {
    /// Stored as is (the CVL file, the VM description, a kernel).
    Plain { path: String, bytes: Vec<u8> },
    /// A program disk from any image qemu-img reads, stored as qcow2 holding
    /// only the clusters that differ from the previous version's disk of the
    /// same name (a backing chain), or whole in the first version.
    Disk { path: String, source: PathBuf },
}

impl PublishFile {
    fn path(&self) -> &str {
        match self {
            PublishFile::Plain { path, .. } | PublishFile::Disk { path, .. } => path,
        }
    }
}

/// Publishes `files` as the next version of the repository in `dir`, with
/// `cvl` naming the CVL file among them, signed by `signer` when the
/// repository is signed (it refuses to publish without one). Returns the
/// new version.
pub fn publish(
    dir: &Path,
    cvl: &str,
    files: &[PublishFile],
    signer: Option<Signer>,
) -> Result<VersionEntry, String> {
    publish_tested(dir, cvl, files, signer, None)
}

/// [`publish`], the version's manifest recording the test it passed.
pub fn publish_tested(
    dir: &Path,
    cvl: &str,
    files: &[PublishFile],
    signer: Option<Signer>,
    tested: Option<crate::index::Tested>,
) -> Result<VersionEntry, String> {
    if !dir.join(INDEX_FILE).exists() {
        return Err(format!(
            "{} is not a repository: create it with `cvl repo create {}`",
            dir.display(),
            dir.display()
        ));
    }
    if signer.is_none() && crate::trust::is_signed(dir) {
        return Err(format!(
            "{} is signed: publish with its key (`--key FILE`); nothing was published",
            dir.display()
        ));
    }
    for path in files.iter().map(PublishFile::path).chain([cvl]) {
        crate::paths::check_name(path).map_err(|e| format!("`{path}` cannot be published: {e}"))?;
        if path.starts_with('.') || path == MANIFEST_FILE {
            return Err(format!(
                "`{path}` cannot be published: the name is reserved for the repository's own files"
            ));
        }
    }
    let versions_dir = dir.join(VERSIONS_DIR);
    // Inside versions/, so that a disk's backing path `../N/disk.qcow2` means
    // the same from here and from the final folder.
    let tmp: PathBuf = versions_dir.join(format!(
        ".publishing-{}-{}",
        std::process::id(),
        crate::unique()
    ));
    remove_abandoned(&versions_dir);
    let previous = scan(dir)?;
    let result = (|| {
        std::fs::create_dir_all(&tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        let mut entries = Vec::new();
        for file in files {
            let entry = match file {
                PublishFile::Plain { path, bytes } => {
                    write_synced(&tmp.join(path), bytes)?;
                    FileEntry {
                        path: path.clone(),
                        sha256: sha256_hex(bytes),
                        size: bytes.len() as u64,
                        backing: None,
                    }
                }
                PublishFile::Disk { path, source } => {
                    let base = previous
                        .iter()
                        .rev()
                        .find(|v| v.file(path).is_some())
                        .map(|v| v.version);
                    crate::disk::store_delta(source, &tmp, path, base)?
                }
            };
            entries.push(entry);
        }
        let published = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        // Claim the next free number by renaming into it; on a race, the next.
        loop {
            let next = scan(dir)?.last().map_or(1, |v| v.version + 1);
            let version = VersionEntry {
                version: next,
                published: published.clone(),
                cvl: cvl.to_string(),
                files: entries.clone(),
                tested: tested.clone(),
            };
            let manifest = serde_json::to_vec_pretty(&version).expect("a manifest serializes");
            write_synced(&tmp.join(MANIFEST_FILE), &manifest)?;
            sync_dir(&tmp);
            let target = versions_dir.join(next.to_string());
            match std::fs::rename(&tmp, &target) {
                Ok(()) => {
                    sync_dir(&versions_dir);
                    return Ok(version);
                }
                Err(_) if target.exists() => continue,
                Err(e) => return Err(format!("cannot write {}: {e}", target.display())),
            }
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let version = result?;
    rebuild_index(dir, signer)?;
    Ok(version)
}

/// Removes what publishes killed half-way left behind: temporary folders
/// whose process is gone. (They are never read: names that are not numbers
/// are not versions.)
fn remove_abandoned(versions_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(versions_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix(".publishing-")
            .and_then(|r| r.split('-').next())
        else {
            continue;
        };
        if pid != std::process::id().to_string() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Every file of every version whose bytes no longer match the index.
pub fn verify(dir: &Path) -> Result<Vec<String>, String> {
    let bytes = std::fs::read(dir.join(INDEX_FILE))
        .map_err(|e| format!("{} is not a repository ({e})", dir.display()))?;
    let index = Index::parse(&bytes)?;
    let mut problems = Vec::new();
    for version in &index.versions {
        for file in &version.files {
            let path = dir.join(crate::index::version_file_path(version.version, &file.path));
            match std::fs::read(&path) {
                Ok(bytes) if sha256_hex(&bytes) == file.sha256 => {}
                Ok(_) => problems.push(format!(
                    "{}: content does not match its SHA-256",
                    path.display()
                )),
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            }
        }
    }
    Ok(problems)
}
