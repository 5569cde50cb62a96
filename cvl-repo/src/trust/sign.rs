//! Signing a repository, publisher's side, with `tough`'s editor: a root
//! that trusts the publisher's keys (`init`), every file the repository
//! holds listed in its targets with its length and SHA-256, and fresh
//! targets, snapshot and timestamp (`sign`, after each publish and when the
//! timestamp is refreshed), and a new root signed by the old keys and the
//! new (`rotate`).
//!
//! Roots made here ask for TUF's consistent snapshots: targets and
//! snapshot are kept by version (`N.targets.json`, `N.snapshot.json`) and
//! the index by its hash (`<sha256>.cvl-repository.json`), and nothing a
//! timestamp names is ever rewritten. A reader that starts from a
//! timestamp while a publish is under way therefore reads one consistent
//! set, never the new index against the old metadata. Each signing writes
//! the index's copy first, then targets, snapshot and, last, the timestamp,
//! every file crash-safely; copies older than the last [`KEEP`] signings
//! are removed.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tough::editor::signed::SignedRole;
use tough::editor::RepositoryEditor;
use tough::schema::{KeyHolder, RoleKeys, RoleType, Root, Signed};

use super::keys::SigningKey;
use super::{Pin, TUF_DIR};
use crate::index::INDEX_FILE;

/// How long a root stays valid: rotate keys before then.
const ROOT_LIFE: Duration = Duration::from_secs(5 * 365 * 24 * 3600);
/// How long targets and snapshot stay valid; `cvl repo refresh` renews them.
const TARGETS_LIFE: Duration = Duration::from_secs(365 * 24 * 3600);
/// How long a timestamp stays valid by default (`--expires`).
pub const TIMESTAMP_LIFE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How many signings' index copies and versioned metadata are kept: a
/// reader that fetched a timestamp finds what it names for this many
/// publishes after.
pub const KEEP: usize = 8;

/// What a signing wrote, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed_ {
    pub root: Pin,
    pub targets: usize,
    pub timestamp_version: u64,
    pub expires: String,
}

/// The folder of `dir`'s TUF metadata.
fn tuf(dir: &Path) -> PathBuf {
    dir.join(TUF_DIR)
}

/// Makes the root of a new signed repository: its root role trusts `keys`
/// with `threshold` signatures; targets, snapshot and timestamp are signed
/// by any one of them. Then signs what the repository holds.
pub fn init(
    dir: &Path,
    keys: &[&SigningKey],
    threshold: u64,
    timestamp_life: Duration,
) -> Result<Signed_, String> {
    if super::is_signed(dir) {
        return Err(format!(
            "{} is signed already (its root is {}): rotate its keys with `cvl repo rotate-key`",
            dir.display(),
            tuf(dir).join("1.root.json").display()
        ));
    }
    let root = new_root(1, keys, threshold)?;
    let signed = block_on(async {
        SignedRole::new(
            root.clone(),
            &KeyHolder::Root(root),
            &sources(keys),
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .await
        .map_err(|e| e.to_string())
    })?;
    write_root(dir, 1, signed.buffer())?;
    sign(dir, keys, timestamp_life)
}

/// A root of `version` trusting `keys` (`threshold` of them for the root).
fn new_root(version: u64, keys: &[&SigningKey], threshold: u64) -> Result<Root, String> {
    if keys.is_empty() {
        return Err("no key given".to_string());
    }
    let threshold = NonZeroU64::new(threshold).ok_or("a threshold is at least 1")?;
    if threshold.get() > keys.len() as u64 {
        return Err(format!(
            "a threshold of {threshold} needs at least {threshold} keys; {} given",
            keys.len()
        ));
    }
    let mut tuf_keys = HashMap::new();
    let mut ids = Vec::new();
    for key in keys {
        let public = key.tuf_key()?;
        let id = public.key_id().map_err(|e| e.to_string())?;
        ids.push(id.clone());
        tuf_keys.insert(id, public);
    }
    let role = |threshold: NonZeroU64| RoleKeys {
        keyids: ids.clone(),
        threshold,
        _extra: HashMap::new(),
    };
    let one = NonZeroU64::new(1).expect("1 is not 0");
    let mut roles = HashMap::new();
    roles.insert(RoleType::Root, role(threshold));
    roles.insert(RoleType::Targets, role(one));
    roles.insert(RoleType::Snapshot, role(one));
    roles.insert(RoleType::Timestamp, role(one));
    Ok(Root {
        spec_version: "1.0.0".to_string(),
        consistent_snapshot: true,
        version: NonZeroU64::new(version).ok_or("a root version is at least 1")?,
        expires: expires_in(ROOT_LIFE)?,
        keys: tuf_keys,
        roles,
        _extra: HashMap::new(),
    })
}

/// Signs what the repository at `dir` holds now: every file (the index and
/// every version's files) in targets, with targets, snapshot and timestamp
/// one version newer than before; the timestamp valid for
/// `timestamp_life`. What a publish ends with, and what a refresh is.
pub fn sign(dir: &Path, keys: &[&SigningKey], timestamp_life: Duration) -> Result<Signed_, String> {
    let root_path = tuf(dir).join("root.json");
    let root_bytes = std::fs::read(&root_path)
        .map_err(|e| format!("cannot read {}: {e}", root_path.display()))?;
    let root: Signed<Root> = serde_json::from_slice(&root_bytes)
        .map_err(|e| format!("{} is not a root: {e}", root_path.display()))?;
    let pin = super::pin_of_root(&root.signed);
    let ids: Vec<&str> = keys.iter().map(|k| k.keyid.as_str()).collect();
    let allowed = root
        .signed
        .roles
        .get(&RoleType::Targets)
        .map(|r| {
            r.keyids
                .iter()
                .map(|k| super::hex(k.as_ref()))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    if !ids.iter().any(|id| allowed.iter().any(|a| a == id)) {
        return Err(format!(
            "none of the keys given ({}) is one this repository's root trusts to sign its \
             targets: use the key it was created with (or rotated to)",
            ids.join(", ")
        ));
    }
    let next = |role: &str| -> Result<NonZeroU64, String> {
        let path = tuf(dir).join(format!("{role}.json"));
        let version = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["signed"]["version"].as_u64())
                .ok_or_else(|| format!("{} has no version", path.display()))?,
            Err(_) => 0,
        };
        NonZeroU64::new(version + 1).ok_or_else(|| "a version overflowed".to_string())
    };
    let (targets_v, snapshot_v, timestamp_v) =
        (next("targets")?, next("snapshot")?, next("timestamp")?);
    let mut files = files_of(dir)?;
    // The index, by its hash: what the targets sign is that copy's bytes.
    if let Some(entry) = files.iter_mut().find(|(name, _)| name == INDEX_FILE) {
        let bytes = std::fs::read(&entry.1)
            .map_err(|e| format!("cannot read {}: {e}", entry.1.display()))?;
        let copy = dir.join(index_copy_name(&crate::index::sha256_hex(&bytes)));
        if !copy.is_file() {
            crate::write_atomic(&copy, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", copy.display()))?;
        }
        entry.1 = copy;
    }
    let count = files.len();
    let timestamp_expires = expires_in(timestamp_life)?;
    let long = expires_in(TARGETS_LIFE.max(timestamp_life))?;
    let staging = tempfile::Builder::new()
        .prefix(".tuf-")
        .tempdir_in(dir)
        .map_err(|e| format!("cannot make a folder in {}: {e}", dir.display()))?;
    block_on(async {
        let mut editor = RepositoryEditor::new(&root_path)
            .await
            .map_err(|e| e.to_string())?;
        for (name, path) in &files {
            let target = tough::schema::Target::from_path(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            editor
                .add_target(name.as_str(), target)
                .map_err(|e| format!("{name}: {e}"))?;
        }
        editor
            .targets_version(targets_v)
            .map_err(|e| e.to_string())?
            .targets_expires(long)
            .map_err(|e| e.to_string())?
            .snapshot_version(snapshot_v)
            .snapshot_expires(long)
            .timestamp_version(timestamp_v)
            .timestamp_expires(timestamp_expires);
        let signed = editor
            .sign(&sources(keys))
            .await
            .map_err(|e| format!("cannot sign: {e}"))?;
        signed
            .write(staging.path())
            .await
            .map_err(|e| format!("cannot write the metadata: {e}"))
    })?;
    // In place, one file at a time, in the order readers need; the
    // unversioned targets and snapshot too (what a root without consistent
    // snapshots reads, and where the next signing finds its versions).
    let consistent = root.signed.consistent_snapshot;
    let mut order = Vec::new();
    for (role, version) in [("targets", targets_v), ("snapshot", snapshot_v)] {
        let unversioned = format!("{role}.json");
        let written = if consistent {
            format!("{version}.{role}.json")
        } else {
            unversioned.clone()
        };
        order.push((written.clone(), written.clone()));
        if consistent {
            order.push((written, unversioned));
        }
    }
    order.push(("timestamp.json".to_string(), "timestamp.json".to_string()));
    for (from, to) in order {
        let bytes = std::fs::read(staging.path().join(&from))
            .map_err(|e| format!("the signed {from} was not written: {e}"))?;
        crate::write_atomic(&tuf(dir).join(&to), &bytes)
            .map_err(|e| format!("cannot write {}: {e}", tuf(dir).join(&to).display()))?;
    }
    prune(dir)?;
    Ok(Signed_ {
        root: pin,
        targets: count,
        timestamp_version: timestamp_v.get(),
        expires: timestamp_expires.to_string(),
    })
}

/// A new root that trusts `new` keys (`threshold` of them for the root),
/// signed by the current root's keys given (`old`: as many as its threshold
/// asks) and by the new ones; then everything signed again with the new.
pub fn rotate(
    dir: &Path,
    old: &[&SigningKey],
    new: &[&SigningKey],
    threshold: u64,
    timestamp_life: Duration,
) -> Result<Signed_, String> {
    let root_path = tuf(dir).join("root.json");
    let bytes =
        std::fs::read(&root_path).map_err(|e| format!("{} is not signed ({e})", dir.display()))?;
    let current: Signed<Root> = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not a root: {e}", root_path.display()))?;
    let pin = super::pin_of_root(&current.signed);
    let given: Vec<&str> = old
        .iter()
        .map(|k| k.keyid.as_str())
        .filter(|id| pin.keyids.iter().any(|p| p == id))
        .collect();
    if (given.len() as u64) < pin.threshold {
        return Err(format!(
            "the current root needs {} of its {} keys to sign its successor; {} of them given \
             (--key once per key)",
            pin.threshold,
            pin.keyids.len(),
            given.len()
        ));
    }
    let version = pin.version + 1;
    let root = new_root(version, new, threshold)?;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let signed = block_on(async {
        let by_new = SignedRole::new(
            root.clone(),
            &KeyHolder::Root(root.clone()),
            &sources(new),
            &rng,
        )
        .await
        .map_err(|e| e.to_string())?;
        let by_old = SignedRole::new(
            root.clone(),
            &KeyHolder::Root(current.signed.clone()),
            &sources(old),
            &rng,
        )
        .await
        .map_err(|e| e.to_string())?;
        by_new
            .add_old_signatures(by_old.signed().signatures.clone())
            .map_err(|e| e.to_string())
    })?;
    write_root(dir, version, signed.buffer())?;
    sign(dir, new, timestamp_life)
}

/// The name of the index's copy by its SHA-256 (hex).
pub fn index_copy_name(sha256: &str) -> String {
    format!("{sha256}.{INDEX_FILE}")
}

/// Whether a name in a repository's top folder is an index copy.
fn is_index_copy(name: &str) -> bool {
    name.strip_suffix(INDEX_FILE)
        .and_then(|hash| hash.strip_suffix('.'))
        .is_some_and(|hash| hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Removes index copies and versioned targets and snapshots older than
/// the newest [`KEEP`] (by version for metadata, by time for copies).
fn prune(dir: &Path) -> Result<(), String> {
    let list = |folder: &Path| -> Result<Vec<(String, PathBuf)>, String> {
        let entries = std::fs::read_dir(folder)
            .map_err(|e| format!("cannot read {}: {e}", folder.display()))?;
        Ok(entries
            .filter_map(|e| e.ok())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect())
    };
    let mut copies: Vec<(std::time::SystemTime, PathBuf)> = list(dir)?
        .into_iter()
        .filter(|(name, _)| is_index_copy(name))
        .filter_map(|(_, path)| Some((std::fs::metadata(&path).ok()?.modified().ok()?, path)))
        .collect();
    copies.sort();
    let mut stale: Vec<PathBuf> = Vec::new();
    stale.extend(copies.iter().rev().skip(KEEP).map(|(_, p)| p.clone()));
    let metadata = list(&tuf(dir))?;
    for role in ["targets", "snapshot"] {
        let suffix = format!(".{role}.json");
        let mut versions: Vec<(u64, PathBuf)> = metadata
            .iter()
            .filter_map(|(name, path)| {
                let version = name.strip_suffix(&suffix)?.parse().ok()?;
                Some((version, path.clone()))
            })
            .collect();
        versions.sort();
        stale.extend(versions.iter().rev().skip(KEEP).map(|(_, p)| p.clone()));
    }
    for path in stale {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", path.display())),
        }
    }
    Ok(())
}

/// Writes a root as `N.root.json` and `root.json`.
fn write_root(dir: &Path, version: u64, bytes: &[u8]) -> Result<(), String> {
    for name in [format!("{version}.root.json"), "root.json".to_string()] {
        let path = tuf(dir).join(name);
        crate::write_atomic(&path, bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Every file of the repository (but its metadata and temporary files),
/// by its name relative to the repository (`/`-separated).
fn files_of(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((folder, prefix)) = stack.pop() {
        let entries = std::fs::read_dir(&folder)
            .map_err(|e| format!("cannot read {}: {e}", folder.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| e.to_string())?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.')
                || (prefix.is_empty() && (name == TUF_DIR || is_index_copy(&name)))
            {
                continue;
            }
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let kind = entry.file_type().map_err(|e| e.to_string())?;
            if kind.is_dir() {
                stack.push((entry.path(), rel));
            } else if kind.is_file() {
                out.push((rel, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn sources(keys: &[&SigningKey]) -> Vec<Box<dyn tough::key_source::KeySource>> {
    keys.iter().map(|k| k.source()).collect()
}

/// Now plus `life`, as TUF metadata writes it (whole seconds, UTC).
fn expires_in(life: Duration) -> Result<jiff::Timestamp, String> {
    let now = jiff::Timestamp::now();
    let secs = i64::try_from(life.as_secs()).map_err(|_| "too long a validity".to_string())?;
    let at = now
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .map_err(|e| format!("too long a validity: {e}"))?;
    jiff::Timestamp::from_second(at.as_second()).map_err(|e| e.to_string())
}

fn block_on<T>(f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?
        .block_on(f)
}
