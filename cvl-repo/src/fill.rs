//! One writer per cache entry. A download cache, a host's program cache or
//! a host's incoming files may be filled by several threads and processes
//! at once (three components of one appliance starting together, a
//! language server beside a CI job): each fill takes the entry's lock
//! first, looks again whether another writer finished it meanwhile (then
//! reuses that writer's verified file), and only then writes. A writer
//! killed mid-fill leaves its lock released by the kernel and nothing a
//! later fill trusts without verifying.
//!
//! The lock is an `flock` on `LOCKS/<sha256 of the entry's path>.lock`,
//! holding the holder's process id so that a waiter can say whom it waits
//! for. Waiting is bounded.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::index::sha256_hex;

/// How long a fill waits for another writer of the same entry by default:
/// as long as a host may take to fetch a program before its start fails.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(900);

/// The lock on one cache entry, released on drop (and by the kernel when
/// the process dies).
#[derive(Debug)]
pub struct FillLock {
    _file: std::fs::File,
}

/// Takes the lock of the cache entry `entry` (a path in the cache), kept
/// in `locks`. `what` names the entry for people (a URL or a repository
/// file); an error names it, the lock file and the holder.
pub fn lock_entry(
    locks: &Path,
    entry: &Path,
    what: &str,
    wait: Duration,
) -> Result<FillLock, String> {
    std::fs::create_dir_all(locks)
        .map_err(|e| format!("cannot create {}: {e}", locks.display()))?;
    let path = lock_path(locks, entry);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open the cache lock {}: {e}", path.display()))?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "waited {} s for {} to finish filling the cache with {what} \
                         (lock {}): try again once it is done, or end that process",
                        wait.as_secs(),
                        holder(&mut file).map_or_else(
                            || "another process".to_string(),
                            |p| format!("process {p}")
                        ),
                        path.display()
                    ));
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("cannot lock {}: {e}", path.display()));
            }
        }
    }
    // Who holds it now, for a waiter's message (best effort).
    let _ = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| write!(file, "{}", std::process::id()));
    Ok(FillLock { _file: file })
}

fn lock_path(locks: &Path, entry: &Path) -> PathBuf {
    let absolute = std::path::absolute(entry).unwrap_or_else(|_| entry.to_path_buf());
    locks.join(format!(
        "{}.lock",
        &sha256_hex(absolute.as_os_str().as_encoded_bytes())[..32]
    ))
}

fn holder(file: &mut std::fs::File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// A temporary name beside `dest` that no other writer uses:
/// `.NAME.part-PID-N`. Its siblings of that shape are what writers killed
/// mid-fill left: [`sweep_parts`] removes them under the entry's lock.
pub fn unique_part(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(
        ".{name}.part-{}-{}",
        std::process::id(),
        crate::unique()
    ))
}

/// Removes what earlier writers of `dest` left (see [`unique_part`]); call
/// it holding the entry's lock, when no other writer of it can be at work.
pub fn sweep_parts(dest: &Path) {
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else {
        return;
    };
    let prefix = format!(".{}.part-", name.to_string_lossy());
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_locker_waits_for_the_first_and_names_it_when_it_gives_up() {
        let tmp = tempfile::tempdir().unwrap();
        let entry = tmp.path().join("cache/disk.qcow2");
        let held = lock_entry(
            &tmp.path().join("locks"),
            &entry,
            "disk.qcow2",
            Duration::ZERO,
        )
        .unwrap();
        // flock is per open file: a second open in this process conflicts too.
        let err = lock_entry(
            &tmp.path().join("locks"),
            &entry,
            "disk.qcow2",
            Duration::from_millis(100),
        )
        .unwrap_err();
        assert!(
            err.contains(&format!("process {}", std::process::id())) && err.contains("disk.qcow2"),
            "{err}"
        );
        drop(held);
        lock_entry(
            &tmp.path().join("locks"),
            &entry,
            "disk.qcow2",
            Duration::ZERO,
        )
        .unwrap();
    }

    #[test]
    fn parts_are_unique_and_swept() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("A.cvl");
        let (a, b) = (unique_part(&dest), unique_part(&dest));
        assert_ne!(a, b);
        std::fs::write(&a, "x").unwrap();
        std::fs::write(tmp.path().join("other"), "y").unwrap();
        sweep_parts(&dest);
        assert!(!a.exists());
        assert!(tmp.path().join("other").exists());
    }
}
