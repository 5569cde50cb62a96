//! CVL appliance repositories: their layout of plain files, publishing new
//! versions, fetching (local folders and static web servers, verified by
//! SHA-256, cached), `cvl.lock`, and loading a workspace: root files and
//! everything they import, into the analysis database.
//!
//! This is where the toolchain's import I/O lives; `cvl-analysis` only sees
//! its results.

pub mod appliance;
pub mod blacklist;
pub mod disk;
pub mod fetch;
pub mod fill;
pub mod index;
pub mod loader;
pub mod lock;
pub mod paths;
pub mod program;
pub mod publish;
pub mod settings;
pub mod trust;
pub mod vm;

use std::io::Write;
use std::path::Path;

pub use fetch::{Fetcher, Location};
pub use loader::{load, LoadOptions, LoadReport, Loader, LockMode};
pub use settings::{Mirror, Settings};

/// Replaces `path`'s content crash-safely: a temporary file beside it,
/// fsync, rename over it, fsync of the folder. Creates missing folders.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        unique()
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(contents)?;
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A local path as people read it: relative to the current folder when it
/// is below it (so messages and snapshots do not depend on where a checkout
/// lives), else as given.
pub fn display_path(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

/// Reads a small JSON state file; a missing one is the default value. A
/// broken one is an error that says what it is and how to fix it.
pub(crate) fn read_json<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
    what: &str,
    fix: &str,
) -> Result<T, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a valid {what} ({e}): {fix}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes a small JSON state file crash-safely, pretty, with a final newline.
pub(crate) fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let mut text = serde_json::to_string_pretty(value).expect("state serializes");
    text.push('\n');
    write_atomic(path, text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A number unique within this process, for temporary names.
pub(crate) fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    (NEXT.fetch_add(1, Ordering::Relaxed) << 32) ^ nanos
}
