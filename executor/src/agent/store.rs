//! Backup stores: where restore points are kept, and how they are checked
//! and thinned. Nothing here talks to QEMU; [`backup`](super::backup)
//! makes the files, this module keeps them.
//!
//! A store is a folder; each data disk has its own in it,
//! `STORE/DEPLOYMENT/PATH/DEVICE/`, holding its restore points as qcow2
//! files (`0001-full.qcow2`, `0002-incremental.qcow2`: each incremental
//! one's qcow2 backing file is its parent, so `qemu-img` reads any restore
//! point whole) and `manifest.json` (each file's size and SHA-256, when,
//! how consistent). Files are put in place before the manifest names them,
//! each crash-safely, and removed only after a manifest that no longer
//! names them is in place: a backup or a prune cut short leaves at most a
//! file the manifest does not name, never a restore point that lies.
//! Writers of one disk's folder take turns (`.lock`, flock).
//!
//! Retention ([`prune`]) keeps the restore points a policy names (the
//! newest N, the newest of each of the last N days) and drops the others
//! without losing what the kept ones need: a kept point whose parent goes
//! is rebased (`qemu-img rebase`, on a copy) onto the previous kept point,
//! or made full when none is left before it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::disks::{file_safe, image_info, qemu_img};
use super::{failed, hex, Fail};
use crate::protocol::{Backup, HostErrorKind, PointCheck, VmId};

/// The store's record of one disk's restore points, oldest first.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Manifest {
    pub format: u32,
    pub backups: Vec<Backup>,
}

const MANIFEST: &str = "manifest.json";

/// The store's folder for one VM, checked: an absolute path, names safe.
pub(super) fn vm_folder(store: &str, vm: &VmId) -> Result<PathBuf, Fail> {
    let store = Path::new(store);
    if !store.is_absolute() || store.components().any(|c| c.as_os_str() == "..") {
        return Err((
            HostErrorKind::BadRequest,
            format!(
                "the backup store {} is not an absolute folder",
                store.display()
            ),
        ));
    }
    let path = if vm.path.is_empty() { "_" } else { &vm.path };
    Ok(store.join(file_safe(&vm.deployment)).join(file_safe(path)))
}

pub(super) fn disk_folder(store: &str, vm: &VmId, device: &str) -> Result<PathBuf, Fail> {
    Ok(vm_folder(store, vm)?.join(file_safe(device)))
}

/// The VM's disk folders in the store, in name order (none: no backups).
pub(super) fn disk_folders(store: &str, vm: &VmId) -> Result<Vec<PathBuf>, Fail> {
    let root = vm_folder(store, vm)?;
    let mut folders: Vec<PathBuf> = match std::fs::read_dir(&root) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect(),
        Err(_) => Vec::new(),
    };
    folders.sort();
    Ok(folders)
}

/// One disk folder held for writing until dropped (other writers wait).
pub(super) struct Held(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

/// Creates the disk's folder if need be and takes its writers' lock.
pub(super) fn hold(folder: &Path) -> Result<Held, Fail> {
    std::fs::create_dir_all(folder)
        .map_err(|e| failed(format!("cannot create {}: {e}", folder.display())))?;
    let path = folder.join(".lock");
    let file = std::fs::File::create(&path)
        .map_err(|e| failed(format!("cannot lock {}: {e}", path.display())))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map(Held)
        .map_err(|(_, e)| failed(format!("cannot lock {}: {e}", path.display())))
}

pub(super) fn read_manifest(folder: &Path) -> Result<Manifest, Fail> {
    let path = folder.join(MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
        Err(e) => return Err(failed(format!("cannot read {}: {e}", path.display()))),
    };
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| failed(format!("{} is damaged: {e}", path.display())))?;
    check_points(&manifest.backups)
        .map_err(|e| failed(format!("{} is damaged: {e}", path.display())))?;
    Ok(manifest)
}

/// One disk's restore points from elsewhere (another host's store) as a
/// manifest, checked as a manifest read from a folder is.
pub(super) fn manifest_of(backups: Vec<Backup>) -> Result<Manifest, Fail> {
    check_points(&backups).map_err(|e| {
        (
            HostErrorKind::BadRequest,
            format!("the restore points sent are not a store's: {e}"),
        )
    })?;
    Ok(Manifest { format: 1, backups })
}

/// What a store says is not trusted: every file it names stays in the
/// folder, and every parent is an earlier point of the same disk.
fn check_points(backups: &[Backup]) -> Result<(), String> {
    for (i, b) in backups.iter().enumerate() {
        let parent_ok = b.parent.as_ref().is_none_or(|p| {
            backups[..i]
                .iter()
                .any(|x| &x.id == p && x.device == b.device)
        });
        if check_name(&b.file).is_err() || !parent_ok {
            return Err(format!(
                "restore point {} names {} (parent {:?})",
                b.id, b.file, b.parent
            ));
        }
    }
    Ok(())
}

/// A restore point's file name: plain, in its folder.
pub(super) fn check_name(file: &str) -> Result<(), String> {
    let plain = !file.is_empty()
        && !file.starts_with('.')
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if plain && file != MANIFEST {
        Ok(())
    } else {
        Err(format!("`{file}` is not a restore point's file name"))
    }
}

pub(super) fn write_manifest(folder: &Path, manifest: &Manifest) -> Result<(), Fail> {
    let text = serde_json::to_vec_pretty(manifest).expect("a manifest serializes");
    cvl_repo::write_atomic(&folder.join(MANIFEST), &text).map_err(|e| {
        failed(format!(
            "cannot write {}: {e}",
            folder.join(MANIFEST).display()
        ))
    })
}

/// The id after the manifest's last.
pub(super) fn next_id(manifest: &Manifest) -> String {
    let last = manifest
        .backups
        .iter()
        .filter_map(|b| b.id.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    format!("{:04}", last + 1)
}

/// A restore point's file as its manifest recorded it: its size and hash,
/// and a qcow2 that reads through to nothing but its parent's file (a
/// store is untrusted: a backing file or an external data file naming
/// another path would put that path's bytes into a restored disk).
pub(super) fn check_file(
    folder: &Path,
    backup: &Backup,
    parent: Option<&Backup>,
) -> Result<(), String> {
    let path = folder.join(&backup.file);
    let (size, sha256) = digest(&path).map_err(|(_, e)| e)?;
    if size != backup.size || sha256 != backup.sha256 {
        return Err(format!(
            "{} is not what was backed up ({size} bytes, SHA-256 {sha256}; the manifest says \
             {} bytes, {}): it was changed or damaged",
            path.display(),
            backup.size,
            backup.sha256
        ));
    }
    // `qemu-img info` opens no backing file.
    let info = image_info(&path).map_err(|(_, e)| e)?;
    let backing = info["backing-filename"].as_str();
    let expected = parent.map(|p| p.file.as_str());
    let format_ok = info["format"] == "qcow2"
        && backing.is_none_or(|_| info["backing-filename-format"] == "qcow2");
    if !format_ok || backing != expected || !info["format-specific"]["data"]["data-file"].is_null()
    {
        return Err(format!(
            "{} is not a restore point cvl made: it is {}, reads through to {} (its parent is {}){}",
            path.display(),
            info["format"],
            backing.unwrap_or("nothing"),
            expected.unwrap_or("none"),
            if info["format-specific"]["data"]["data-file"].is_null() {
                ""
            } else {
                ", with an external data file"
            }
        ));
    }
    Ok(())
}

/// The parent of `point` in `manifest`.
fn parent_of<'a>(manifest: &'a Manifest, point: &Backup) -> Option<&'a Backup> {
    point
        .parent
        .as_ref()
        .and_then(|p| manifest.backups.iter().find(|x| &x.id == p))
}

/// Every file of restore point `point`'s chain checked against the
/// manifest, newest first.
pub(super) fn check_chain(folder: &Path, manifest: &Manifest, point: &Backup) -> Result<(), Fail> {
    let mut link = Some(point);
    while let Some(b) = link {
        link = parent_of(manifest, b);
        check_file(folder, b, link).map_err(failed)?;
    }
    Ok(())
}

pub(super) fn digest(path: &Path) -> Result<(u64, String), Fail> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| failed(format!("cannot read {}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)
        .map_err(|e| failed(format!("cannot read {}: {e}", path.display())))?;
    Ok((size, hex(&hasher.finalize())))
}

/// Writes `source` into the store as `to`, synced, under its final name
/// only once whole; its size and SHA-256 (measured on the copy).
pub(super) fn put(mut source: std::fs::File, to: &Path) -> Result<(u64, String), Fail> {
    let staging = to.with_extension("part");
    let _ = std::fs::remove_file(&staging);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&staging)
        .and_then(|mut copy| {
            std::io::copy(&mut source, &mut copy)?;
            copy.sync_all()
        })
        .map_err(|e| failed(format!("cannot write {}: {e}", staging.display())))?;
    settle(&staging, to)
}

/// A finished file in the store: synced, measured and given its name.
pub(super) fn settle(staging: &Path, to: &Path) -> Result<(u64, String), Fail> {
    let (size, sha256) = digest(staging)?;
    std::fs::File::open(staging)
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::rename(staging, to))
        .map_err(|e| failed(format!("cannot write {}: {e}", to.display())))?;
    sync_folder(to);
    Ok((size, sha256))
}

fn sync_folder(file: &Path) {
    if let Some(folder) = file.parent() {
        let _ = std::fs::File::open(folder).and_then(|f| f.sync_all());
    }
}

/// Which restore points a retention policy keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keep {
    /// The newest N.
    pub last: Option<u32>,
    /// The newest of each of the N newest days (UTC) that have one.
    pub daily: Option<u32>,
}

/// The ids of `points` (oldest first) that `keep` keeps: the union of
/// what each rule keeps; everything when no rule is set. The newest is
/// always kept (the next incremental backup follows it).
pub fn kept(points: &[Backup], keep: Keep) -> BTreeSet<String> {
    if keep.last.is_none() && keep.daily.is_none() {
        return points.iter().map(|b| b.id.clone()).collect();
    }
    let mut ids = BTreeSet::new();
    if let Some(b) = points.last() {
        ids.insert(b.id.clone());
    }
    let last = keep.last.unwrap_or(0) as usize;
    ids.extend(points.iter().rev().take(last).map(|b| b.id.clone()));
    let mut days = BTreeSet::new();
    for b in points.iter().rev() {
        let day = b.at.get(..10).unwrap_or(&b.at);
        if days.len() < keep.daily.unwrap_or(0) as usize && days.insert(day.to_string()) {
            ids.insert(b.id.clone());
        }
    }
    ids
}

/// Drops the restore points of one disk's folder that `keep` does not
/// keep; the kept ones read exactly as before. What was dropped, and the
/// kept points as the manifest now has them.
pub(super) fn prune(folder: &Path, keep: Keep) -> Result<(Vec<Backup>, Vec<Backup>), Fail> {
    let _held = hold(folder)?;
    let manifest = read_manifest(folder)?;
    let keeping = kept(&manifest.backups, keep);
    if keeping.len() == manifest.backups.len() {
        return Ok((Vec::new(), manifest.backups));
    }
    // Every file of the store checked before any is rewritten: a damaged
    // store is not pruned (a rebase would carry the damage on).
    for b in &manifest.backups {
        check_file(folder, b, parent_of(&manifest, b)).map_err(failed)?;
    }
    let mut made = Vec::new();
    let cleanup = |made: &[PathBuf]| {
        for f in made {
            let _ = std::fs::remove_file(f);
        }
    };
    let mut now_kept: Vec<Backup> = Vec::new();
    let mut rewritten = BTreeSet::new();
    for b in manifest.backups.iter().filter(|b| keeping.contains(&b.id)) {
        // Its nearest kept ancestor (through what is dropped) becomes its
        // parent; with none it is made full.
        let mut ancestor = b.parent.clone();
        while let Some(id) = ancestor.as_ref().filter(|id| !keeping.contains(*id)) {
            ancestor = manifest
                .backups
                .iter()
                .find(|x| &x.id == id)
                .and_then(|x| x.parent.clone());
        }
        let relink = ancestor == b.parent;
        if relink && b.parent.as_ref().is_none_or(|p| !rewritten.contains(p)) {
            now_kept.push(b.clone());
            continue;
        }
        let parent = ancestor.and_then(|id| now_kept.iter().find(|k| k.id == id));
        // Rewritten on a copy under a new name: the original stays what
        // the manifest says until the new manifest is in place. A point
        // whose parent keeps its content but got a new file is only
        // pointed at it (`rebase -u`, metadata); one whose parent changed
        // gets what the dropped points between held (a safe rebase).
        let kind = match parent {
            Some(_) => "incremental",
            None => "full",
        };
        let file = fresh_name(folder, &b.id, kind);
        let staging = folder.join(format!("{file}.part"));
        let result = std::fs::copy(folder.join(&b.file), &staging)
            .map_err(|e| failed(format!("cannot copy {}: {e}", b.file)))
            .and_then(|_| {
                let backing = parent.map_or(String::new(), |p| p.file.clone());
                let mut args = vec!["rebase", "-q", "-f", "qcow2", "-b", &backing];
                if relink {
                    args.push("-u");
                }
                if parent.is_some() {
                    args.extend(["-F", "qcow2"]);
                }
                let staged = staging.to_string_lossy();
                args.push(&staged);
                qemu_img(&args)
            })
            .and_then(|()| settle(&staging, &folder.join(&file)));
        let (size, sha256) = match result {
            Ok(measured) => measured,
            Err(e) => {
                let _ = std::fs::remove_file(&staging);
                cleanup(&made);
                return Err(e);
            }
        };
        made.push(folder.join(&file));
        rewritten.insert(b.id.clone());
        now_kept.push(Backup {
            file,
            kind: kind.to_string(),
            parent: parent.map(|p| p.id.clone()),
            size,
            sha256,
            ..b.clone()
        });
    }
    let new = Manifest {
        format: 1,
        backups: now_kept.clone(),
    };
    if let Err(e) = write_manifest(folder, &new) {
        cleanup(&made);
        return Err(e);
    }
    // Only now are the files no kept point names unneeded.
    let named: BTreeSet<&str> = now_kept.iter().map(|b| b.file.as_str()).collect();
    let dropped: Vec<Backup> = manifest
        .backups
        .iter()
        .filter(|b| !keeping.contains(&b.id))
        .cloned()
        .collect();
    for b in &manifest.backups {
        if !named.contains(b.file.as_str()) {
            let _ = std::fs::remove_file(folder.join(&b.file));
        }
    }
    sync_folder(&folder.join(MANIFEST));
    Ok((dropped, now_kept))
}

/// A file name for a rewritten restore point that no file has yet.
fn fresh_name(folder: &Path, id: &str, kind: &str) -> String {
    (1..)
        .map(|n| format!("{id}-{kind}-r{n}.qcow2"))
        .find(|f| !folder.join(f).exists())
        .expect("some name is free")
}

/// Every restore point of one disk's folder checked: its file whole (size
/// and SHA-256 as the manifest recorded), a sound qcow2 (`qemu-img check`),
/// its parent present.
pub(super) fn verify(folder: &Path, device: &str) -> Result<Vec<PointCheck>, Fail> {
    let manifest = read_manifest(folder)?;
    let mut checks = Vec::new();
    let mut bad = BTreeSet::new();
    for b in &manifest.backups {
        let problem = check_file(folder, b, parent_of(&manifest, b))
            .and_then(|()| {
                let path = folder.join(&b.file);
                qemu_img(&["check", "-q", "-f", "qcow2", &path.to_string_lossy()])
                    .map_err(|(_, e)| e)
            })
            .and_then(|()| match &b.parent {
                Some(p) if bad.contains(p) => Err(format!("its parent {p} is damaged")),
                _ => Ok(()),
            })
            .err();
        if problem.is_some() {
            bad.insert(b.id.clone());
        }
        checks.push(PointCheck {
            device: device.to_string(),
            point: b.id.clone(),
            file: b.file.clone(),
            problem,
        });
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(id: &str, at: &str) -> Backup {
        Backup {
            device: "ide0:1".into(),
            id: id.into(),
            file: format!("{id}-full.qcow2"),
            kind: "full".into(),
            parent: None,
            at: at.into(),
            size: 0,
            sha256: String::new(),
            consistency: "stopped".into(),
            frozen_ms: 0,
            flush_ms: 0,
            disk_size: 0,
        }
    }

    fn ids(set: BTreeSet<String>) -> Vec<String> {
        set.into_iter().collect()
    }

    #[test]
    fn retention_keeps_the_union_of_its_rules_and_always_the_newest() {
        let points = [
            point("0001", "2026-12-01T10:00:00Z"),
            point("0002", "2026-12-01T22:00:00Z"),
            point("0003", "2026-12-02T09:00:00Z"),
            point("0004", "2026-12-03T08:00:00Z"),
            point("0005", "2026-12-03T20:00:00Z"),
        ];
        assert_eq!(kept(&points, Keep::default()).len(), 5);
        assert_eq!(
            ids(kept(
                &points,
                Keep {
                    last: Some(2),
                    daily: None
                }
            )),
            ["0004", "0005"]
        );
        assert_eq!(
            ids(kept(
                &points,
                Keep {
                    last: None,
                    daily: Some(2)
                }
            )),
            ["0003", "0005"]
        );
        assert_eq!(
            ids(kept(
                &points,
                Keep {
                    last: Some(1),
                    daily: Some(3)
                }
            )),
            ["0002", "0003", "0005"]
        );
        assert_eq!(
            ids(kept(
                &points,
                Keep {
                    last: Some(0),
                    daily: Some(0)
                }
            )),
            ["0005"]
        );
        assert!(kept(&[], Keep::default()).is_empty());
    }

    /// A chain 1 <- 2 <- 3 <- 4 of real qcow2 files, each point writing
    /// its own MiB, pruned three times (the newest three, one a day, the
    /// newest): what is kept reads exactly as before each time, and only
    /// its files are left.
    #[test]
    fn prune_rebases_what_it_keeps_and_removes_the_rest() {
        if std::process::Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_err()
        {
            panic!("qemu-img is needed (Debian: qemu-utils)");
        }
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path();
        let mut manifest = Manifest {
            format: 1,
            backups: Vec::new(),
        };
        let mut raw_of = std::collections::BTreeMap::new();
        for n in 1..=4u32 {
            let id = format!("{n:04}");
            let kind = if n == 1 { "full" } else { "incremental" };
            let file = format!("{id}-{kind}.qcow2");
            let path = folder.join(&file);
            let parent = manifest.backups.last().map(|b: &Backup| b.file.clone());
            match &parent {
                Some(p) => qemu_img(&[
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-u",
                    "-b",
                    p,
                    "-F",
                    "qcow2",
                    path.to_str().unwrap(),
                    "8M",
                ])
                .unwrap(),
                None => qemu_img(&["create", "-q", "-f", "qcow2", path.to_str().unwrap(), "8M"])
                    .unwrap(),
            }
            let io = std::process::Command::new("qemu-io")
                .args(["-c", &format!("write -P {n} {}M 1M", n - 1)])
                .arg(&path)
                .output()
                .unwrap();
            assert!(io.status.success(), "{io:?}");
            let raw = folder.join(format!("{id}.raw"));
            qemu_img(&[
                "convert",
                "-O",
                "raw",
                path.to_str().unwrap(),
                raw.to_str().unwrap(),
            ])
            .unwrap();
            raw_of.insert(id.clone(), std::fs::read(&raw).unwrap());
            std::fs::remove_file(raw).unwrap();
            let (size, sha256) = digest(&path).unwrap();
            manifest.backups.push(Backup {
                file,
                kind: kind.into(),
                parent: manifest.backups.last().map(|b| b.id.clone()),
                size,
                sha256,
                ..point(&id, &format!("2026-12-0{}T{}:00:00Z", n.div_ceil(2), 8 + n))
            });
        }
        write_manifest(folder, &manifest).unwrap();

        let reads = |b: &Backup| {
            let raw = folder.join("check.raw");
            qemu_img(&[
                "convert",
                "-O",
                "raw",
                folder.join(&b.file).to_str().unwrap(),
                raw.to_str().unwrap(),
            ])
            .unwrap();
            let bytes = std::fs::read(&raw).unwrap();
            std::fs::remove_file(raw).unwrap();
            bytes
        };
        let left = || {
            let mut left: Vec<String> = std::fs::read_dir(folder)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            left.sort();
            left
        };

        // The newest three: 0002 made full under a new name, and 0003 and
        // 0004, whose content stays, pointed at their parents' new files.
        let (dropped, now) = prune(
            folder,
            Keep {
                last: Some(3),
                daily: None,
            },
        )
        .unwrap();
        let dropped: Vec<&str> = dropped.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(dropped, ["0001"]);
        assert_eq!(now, read_manifest(folder).unwrap().backups);
        assert_eq!((now[0].id.as_str(), now[0].kind.as_str()), ("0002", "full"));
        assert_eq!(now[1].parent.as_deref(), Some("0002"));
        assert_eq!(now[2].parent.as_deref(), Some("0003"));
        for b in &now {
            assert_eq!(reads(b), raw_of[&b.id], "{b:?}");
        }
        assert_eq!(left().len(), 5, "{:?}", left());

        // The newest of each of two days: 0002 and 0004 (now on 0002).
        let keep = Keep {
            last: None,
            daily: Some(2),
        };
        let (dropped, now) = prune(folder, keep).unwrap();
        let dropped: Vec<&str> = dropped.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(dropped, ["0003"]);
        assert_eq!(now, read_manifest(folder).unwrap().backups);
        assert_eq!((now[0].id.as_str(), now[0].kind.as_str()), ("0002", "full"));
        assert_eq!(now[1].id, "0004");
        assert_eq!(now[1].parent.as_deref(), Some("0002"));
        for b in &now {
            assert_eq!(reads(b), raw_of[&b.id], "{b:?}");
        }
        assert!(verify(folder, "ide0:1")
            .unwrap()
            .iter()
            .all(|c| c.problem.is_none()));
        assert_eq!(
            left(),
            [".lock", &now[0].file, &now[1].file, MANIFEST],
            "nothing but the kept files, the manifest and the lock"
        );
        // Pruning again with the same policy changes nothing.
        assert!(prune(folder, keep).unwrap().0.is_empty());

        // The newest alone: 0004 made full.
        let (_, now) = prune(
            folder,
            Keep {
                last: Some(1),
                daily: None,
            },
        )
        .unwrap();
        assert_eq!(now.len(), 1);
        assert_eq!((now[0].id.as_str(), now[0].kind.as_str()), ("0004", "full"));
        assert_eq!(reads(&now[0]), raw_of["0004"]);
        assert_eq!(left(), [".lock", &now[0].file, MANIFEST]);

        // A changed file is found by verify.
        let path = folder.join(&now[0].file);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let checks = verify(folder, "ide0:1").unwrap();
        assert!(checks[0]
            .problem
            .as_deref()
            .unwrap()
            .contains("changed or damaged"));
    }

    /// A store that names its own files and hashes is still untrusted: a
    /// restore point that reads through to another path (a backing file
    /// outside the chain, an external data file) is refused, so a store
    /// cannot put a file of its host into a restored disk.
    #[test]
    fn a_point_reading_through_to_another_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path();
        let secret = folder.join("secret.raw");
        std::fs::write(&secret, vec![7u8; 1 << 20]).unwrap();
        let make = |file: &str, args: &[&str]| -> Backup {
            let path = folder.join(file);
            let mut all = vec!["create", "-q", "-f", "qcow2"];
            all.extend_from_slice(args);
            all.extend([path.to_str().unwrap(), "1M"]);
            qemu_img(&all).unwrap();
            let (size, sha256) = digest(&path).unwrap();
            Backup {
                file: file.into(),
                size,
                sha256,
                ..point("0001", "2026-12-06T10:00:00Z")
            }
        };
        let plain = make("0001-full.qcow2", &[]);
        assert_eq!(check_file(folder, &plain, None), Ok(()));
        let secret_arg = secret.to_str().unwrap();
        let data_file = format!("data_file={}", folder.join("other.raw").display());
        for (file, args) in [
            ("0002-full.qcow2", vec!["-u", "-b", secret_arg, "-F", "raw"]),
            ("0003-full.qcow2", vec!["-o", &data_file]),
        ] {
            let evil = make(file, &args);
            let refused = check_file(folder, &evil, None).unwrap_err();
            assert!(
                refused.contains("is not a restore point cvl made"),
                "{refused}"
            );
        }
        // A parent named as the manifest says is fine; another is not.
        let child = make(
            "0004-incremental.qcow2",
            &["-u", "-b", "0001-full.qcow2", "-F", "qcow2"],
        );
        assert_eq!(check_file(folder, &child, Some(&plain)), Ok(()));
        assert!(check_file(folder, &child, None).is_err());
        assert!(manifest_of(vec![Backup {
            file: "../x.qcow2".into(),
            ..plain.clone()
        }])
        .is_err());
    }
}
