//! Data disks backed up and restored, on the host that runs them.
//!
//! Where the files go, and how the store is kept, is [`store`](super::store).
//!
//! A running VM is backed up live by QEMU (`blockdev-backup`), with the
//! guest's file systems frozen through its guest agent for the instant the
//! job starts. Incremental backups follow dirty bitmaps kept in the disk's
//! qcow2 (persistent, so they survive a restart): restore point K leaves
//! the bitmap `cvl-K`, which records what the guest wrote since; the next
//! backup copies what `cvl-K` marks (never clearing it) and adds `cvl-K+1`
//! in the same instant, and only once K+1 is in the store is `cvl-K`
//! removed. So a backup killed half way costs nothing: the next one starts
//! again from K. A bitmap QEMU could not save (it was killed) is
//! inconsistent: removed, and the next backup is full. A stopped VM's disk
//! is copied from its file (`qemu-img convert`), and given the bitmap of
//! the restore point it became.
//!
//! The job's target is a file in the VM's own folder, the one place its
//! jailed QEMU may write, moved into the store once complete.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::disks::{file_safe, image_info as info, qemu_img};
use super::process::running_pid;
use super::store::{self, Manifest};
use super::{failed, jail, Fail, HostAgent};
use crate::protocol::*;
use crate::qmp::{cmd, Agent, Qmp};
/// The prefix of the dirty bitmaps backups leave in a disk.
const BITMAP_PREFIX: &str = "cvl-";

impl HostAgent {
    /// Backs up the VM's data disks `devices` into `store`.
    pub(super) fn backup(
        &self,
        vm: &VmId,
        store: &str,
        devices: &[String],
        full: bool,
    ) -> Result<Response, Fail> {
        let dir = self.vm_dir(vm)?;
        let running = running_pid(&dir).is_some();
        let mut made = Vec::new();
        for device in devices {
            let disk = dir.join(data_disk_file(device));
            if !disk.exists() {
                return Err(failed(format!(
                    "{vm} has no data disk {device} on this host"
                )));
            }
            let folder = store::disk_folder(store, vm, device)?;
            let _held = store::hold(&folder)?;
            let mut manifest = store::read_manifest(&folder)?;
            let backup = if running {
                self.backup_live(vm, &dir, device, &folder, &manifest, full)?
            } else {
                backup_stopped(&disk, device, &folder, &manifest)?
            };
            manifest.format = 1;
            manifest.backups.push(backup.clone());
            store::write_manifest(&folder, &manifest)?;
            if running {
                // Only now is the parent's bitmap no longer needed.
                if let Some(parent) = &backup.parent {
                    let mut qmp = Qmp::connect(&dir.join("qmp.sock"), Duration::from_secs(10))
                        .map_err(|e| failed(format!("{vm}: its monitor: {e}")))?;
                    let _ = qmp.execute(&cmd::BlockDirtyBitmapRemove {
                        node: drive_id(device),
                        name: format!("{BITMAP_PREFIX}{parent}"),
                    });
                }
            } else {
                bitmaps_after_stopped_backup(&disk, &backup.id)?;
            }
            made.push(backup);
        }
        Ok(Response::BackedUp { backups: made })
    }

    /// One disk of a running VM, through QEMU.
    fn backup_live(
        &self,
        vm: &VmId,
        dir: &Path,
        device: &str,
        folder: &Path,
        manifest: &Manifest,
        full: bool,
    ) -> Result<Backup, Fail> {
        let node = drive_id(device);
        let mut qmp = Qmp::connect(&dir.join("qmp.sock"), Duration::from_secs(10))
            .map_err(|e| failed(format!("{vm}: its monitor: {e}")))?;
        // A job a killed backup left: gone first.
        let job = format!("cvl-backup-{}", file_safe(device));
        if let Ok(jobs) = qmp.execute(&cmd::QueryJobs {}) {
            if jobs.iter().any(|j| j.id == job) {
                let _ = qmp.execute(&cmd::JobCancel { id: job.clone() });
                let _ = wait_job(&mut qmp, &job, Duration::from_secs(30));
                let _ = qmp.execute(&cmd::JobDismiss { id: job.clone() });
            }
        }
        let target_node = format!("cvl-target-{}", file_safe(device));
        let _ = qmp.execute(&cmd::BlockdevDel {
            node_name: target_node.clone(),
        });
        let blocks = qmp
            .execute(&cmd::QueryBlock {})
            .map_err(|e| failed(format!("{vm}: query-block: {e}")))?;
        let inserted = blocks
            .into_iter()
            .find(|b| b.device == node)
            .and_then(|b| b.inserted)
            .ok_or_else(|| failed(format!("{vm}: QEMU has no drive {node}")))?;
        let last = manifest.backups.last();
        let usable = |b: &Backup| {
            let name = format!("{BITMAP_PREFIX}{}", b.id);
            inserted
                .dirty_bitmaps
                .iter()
                .any(|m| m.name == name && !m.inconsistent)
        };
        let parent = last.filter(|b| !full && usable(b)).cloned();
        // Every other bitmap of ours is stale (a killed backup's, an
        // inconsistent one): removed.
        let keep = parent.as_ref().map(|p| format!("{BITMAP_PREFIX}{}", p.id));
        for bitmap in &inserted.dirty_bitmaps {
            if bitmap.name.starts_with(BITMAP_PREFIX) && Some(&bitmap.name) != keep.as_ref() {
                let _ = qmp.execute(&cmd::BlockDirtyBitmapRemove {
                    node: node.clone(),
                    name: bitmap.name.clone(),
                });
            }
        }
        let id = store::next_id(manifest);
        let kind = if parent.is_some() {
            "incremental"
        } else {
            "full"
        };
        let file = format!("{id}-{kind}.qcow2");
        // The job's target, in the VM's folder (QEMU's, in its jail).
        let target = dir.join(format!("backup-{}.qcow2", file_safe(device)));
        // Made where only root writes (the deployment's folder), then moved
        // in: a name in the VM's folder could be a link its QEMU planted.
        let made = dir.with_extension(format!("backup-{}.qcow2", file_safe(device)));
        let _ = std::fs::remove_file(&made);
        let size = inserted.image.virtual_size.to_string();
        let made_arg = made.to_string_lossy().into_owned();
        let target_arg = target.to_string_lossy().into_owned();
        match &parent {
            // Its backing file named (unopened: QEMU never needs it), so
            // that in the store it reads through to its parent.
            Some(p) => qemu_img(&[
                "create", "-q", "-f", "qcow2", "-u", "-b", &p.file, "-F", "qcow2", &made_arg, &size,
            ])?,
            None => qemu_img(&["create", "-q", "-f", "qcow2", &made_arg, &size])?,
        }
        if let Some(uid) = std::fs::read_to_string(dir.join(jail::UID_FILE))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            std::os::unix::fs::chown(&made, Some(uid), Some(uid))
                .map_err(|e| failed(format!("cannot give {} to its VM: {e}", made.display())))?;
        }
        std::fs::rename(&made, &target)
            .map_err(|e| failed(format!("cannot move the backup's target in: {e}")))?;
        let remove_target = || {
            let _ = std::fs::remove_file(&target);
        };
        qmp.execute(&cmd::BlockdevAdd(json!({
            "driver": "qcow2",
            "node-name": target_node,
            "file": { "driver": "file", "filename": target_arg },
            "backing": null,
        })))
        .map_err(|e| {
            remove_target();
            failed(format!("{vm}: cannot open the backup's target: {e}"))
        })?;
        let bitmap = format!("{BITMAP_PREFIX}{id}");
        let mut backup = json!({
            "device": node, "target": target_node, "job-id": job, "auto-dismiss": false,
        });
        match &parent {
            Some(p) => {
                backup["sync"] = json!("bitmap");
                backup["bitmap"] = json!(format!("{BITMAP_PREFIX}{}", p.id));
                backup["bitmap-mode"] = json!("never");
            }
            None => backup["sync"] = json!("full"),
        }
        let actions = vec![
            json!({ "type": "block-dirty-bitmap-add",
                    "data": { "node": node, "name": bitmap, "persistent": true } }),
            json!({ "type": "blockdev-backup", "data": backup }),
        ];
        // The guest's file systems frozen for the instant the job starts;
        // first thawed if an agent killed between the two left them frozen.
        let mut guest = Agent::connect(&dir.join("qga.sock"), Duration::from_secs(3)).ok();
        if let Some(a) = guest.as_mut() {
            if a.execute(&cmd::GuestFsfreezeStatus {})
                .is_ok_and(|s| s == "frozen")
            {
                let _ = a.execute(&cmd::GuestFsfreezeThaw {});
            }
        }
        let frozen_at = Instant::now();
        // Frozen means file systems were: a guest with none to freeze (an
        // initramfs) answers 0, and its copy is only crash-consistent.
        let frozen = guest
            .as_mut()
            .is_some_and(|a| a.execute(&cmd::GuestFsfreezeFreeze {}).is_ok_and(|n| n > 0));
        let started = qmp.execute(&cmd::Transaction { actions });
        if frozen {
            if let Some(a) = guest.as_mut() {
                // Thawed whatever happened; tried twice.
                if a.execute(&cmd::GuestFsfreezeThaw {}).is_err() {
                    let _ = a.execute(&cmd::GuestFsfreezeThaw {});
                }
            }
        }
        let frozen_ms = if frozen {
            frozen_at.elapsed().as_millis() as u64
        } else {
            0
        };
        if let Err(e) = started {
            let _ = qmp.execute(&cmd::BlockdevDel {
                node_name: target_node.clone(),
            });
            remove_target();
            return Err(failed(format!(
                "{vm}: the backup of {device} did not start: {e}"
            )));
        }
        let finished = wait_job(&mut qmp, &job, Duration::from_secs(3600));
        let _ = qmp.execute(&cmd::JobDismiss { id: job.clone() });
        let _ = qmp.execute(&cmd::BlockdevDel {
            node_name: target_node.clone(),
        });
        if let Err(e) = finished {
            let _ = qmp.execute(&cmd::BlockDirtyBitmapRemove {
                node: node.clone(),
                name: bitmap,
            });
            remove_target();
            return Err(failed(format!("{vm}: the backup of {device} failed: {e}")));
        }
        let source = jail::open_vm_file(&target)
            .map_err(|e| failed(format!("cannot read {}: {e}", target.display())))?;
        let (size, sha256) = store::put(source, &folder.join(&file))?;
        remove_target();
        Ok(Backup {
            device: device.to_string(),
            id,
            file,
            kind: kind.to_string(),
            parent: parent.map(|p| p.id),
            at: now(),
            size,
            sha256,
            consistency: if frozen { "frozen" } else { "crash-consistent" }.to_string(),
            frozen_ms,
            disk_size: inserted.image.virtual_size,
        })
    }

    /// The VM's restore points in `store`, per disk, oldest first.
    pub(super) fn backups(&self, vm: &VmId, store: &str) -> Result<Response, Fail> {
        let mut backups = Vec::new();
        for folder in store::disk_folders(store, vm)? {
            backups.extend(store::read_manifest(&folder)?.backups);
        }
        Ok(Response::BackupList { backups })
    }

    /// Drops the restore points `keep` does not keep, per disk.
    pub(super) fn prune(
        &self,
        vm: &VmId,
        store: &str,
        keep: store::Keep,
    ) -> Result<Response, Fail> {
        let (mut dropped, mut kept) = (Vec::new(), Vec::new());
        for folder in store::disk_folders(store, vm)? {
            let (d, k) = store::prune(&folder, keep)?;
            dropped.extend(d);
            kept.extend(k);
        }
        Ok(Response::Pruned { dropped, kept })
    }

    /// Every restore point of the VM's disks checked.
    pub(super) fn verify_backups(&self, vm: &VmId, store: &str) -> Result<Response, Fail> {
        let mut checks = Vec::new();
        for folder in store::disk_folders(store, vm)? {
            let device = store::read_manifest(&folder)?
                .backups
                .first()
                .map(|b| b.device.clone());
            if let Some(device) = device {
                checks.extend(store::verify(&folder, &device)?);
            }
        }
        Ok(Response::Verified { checks })
    }

    /// Puts a stopped VM's data disk back to restore point `id` (of the
    /// VM `from`'s disk of the same device, when given).
    pub(super) fn restore(
        &self,
        vm: &VmId,
        store: &str,
        device: &str,
        id: Option<&str>,
        from: Option<&VmId>,
    ) -> Result<Response, Fail> {
        let dir = self.vm_dir(vm)?;
        if running_pid(&dir).is_some() {
            return Err(failed(format!("{vm} is running: stop it before a restore")));
        }
        let folder = store::disk_folder(store, from.unwrap_or(vm), device)?;
        let manifest = store::read_manifest(&folder)?;
        let point = match id {
            Some(id) => manifest.backups.iter().find(|b| b.id == id),
            None => manifest.backups.last(),
        }
        .ok_or_else(|| {
            failed(format!(
                "{vm}: no restore point {} of {device} in {}",
                id.unwrap_or("at all"),
                folder.display()
            ))
        })?;
        // Each file of its chain as the manifest recorded it.
        store::check_chain(&folder, &manifest, point)?;
        std::fs::create_dir_all(&dir).map_err(|e| failed(e.to_string()))?;
        let disk = dir.join(data_disk_file(device));
        let incoming = dir.join(format!("restoring-{}.qcow2", file_safe(device)));
        let _ = std::fs::remove_file(&incoming);
        qemu_img(&[
            "convert",
            "-q",
            "-O",
            "qcow2",
            &folder.join(&point.file).to_string_lossy(),
            &incoming.to_string_lossy(),
        ])?;
        let kept = if disk.exists() {
            let kept = dir.join(format!(
                "{}{BEFORE_RESTORE}{}",
                data_disk_file(device),
                unix()
            ));
            std::fs::rename(&disk, &kept).map_err(|e| failed(e.to_string()))?;
            kept.display().to_string()
        } else {
            String::new()
        };
        std::fs::rename(&incoming, &disk).map_err(|e| failed(e.to_string()))?;
        Ok(Response::Restored {
            device: device.to_string(),
            point: point.id.clone(),
            kept,
        })
    }
}

/// What a restore kept of the data it replaced (`DISK.before-restore-TIME`)
/// lives until the start after the restore's own: that start marks it
/// (`.started`), the next one removes it. Renames and removals only, which
/// follow no link the VM's QEMU could plant in its folder.
pub(super) fn forget_replaced_data(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.contains(BEFORE_RESTORE) {
            continue;
        }
        if name.ends_with(STARTED) {
            let _ = std::fs::remove_file(entry.path());
        } else {
            let _ = std::fs::rename(entry.path(), dir.join(format!("{name}{STARTED}")));
        }
    }
}

const BEFORE_RESTORE: &str = ".before-restore-";
const STARTED: &str = ".started";

/// QEMU's drive id of a VM's data disk (`-drive ...,id=`).
pub(super) fn drive_id(device: &str) -> String {
    data_disk_file(device)
        .trim_end_matches(".qcow2")
        .to_string()
}

/// A stopped VM's disk, copied whole from its file.
fn backup_stopped(
    disk: &Path,
    device: &str,
    folder: &Path,
    manifest: &Manifest,
) -> Result<Backup, Fail> {
    let id = store::next_id(manifest);
    let file = format!("{id}-full.qcow2");
    let staging = folder.join(format!("{file}.part"));
    qemu_img(&[
        "convert",
        "-q",
        "-O",
        "qcow2",
        &disk.to_string_lossy(),
        &staging.to_string_lossy(),
    ])?;
    let (size, sha256) = store::settle(&staging, &folder.join(&file))?;
    Ok(Backup {
        device: device.to_string(),
        id,
        file,
        kind: "full".to_string(),
        parent: None,
        at: now(),
        size,
        sha256,
        consistency: "stopped".to_string(),
        frozen_ms: 0,
        disk_size: virtual_size(disk)?,
    })
}

/// A stopped disk just copied as restore point `id`: its bitmaps are
/// `cvl-ID` alone (what is written from now on), so that its next backup,
/// running, is incremental.
fn bitmaps_after_stopped_backup(disk: &Path, id: &str) -> Result<(), Fail> {
    let path = disk.to_string_lossy();
    let info = info(disk)?;
    if let Some(bitmaps) = info["format-specific"]["data"]["bitmaps"].as_array() {
        for name in bitmaps.iter().filter_map(|b| b["name"].as_str()) {
            if name.starts_with(BITMAP_PREFIX) {
                qemu_img(&["bitmap", "--remove", &path, name])?;
            }
        }
    }
    qemu_img(&[
        "bitmap",
        "--add",
        "--enable",
        &path,
        &format!("{BITMAP_PREFIX}{id}"),
    ])
}

fn virtual_size(disk: &Path) -> Result<u64, Fail> {
    info(disk)?["virtual-size"]
        .as_u64()
        .ok_or_else(|| failed(format!("qemu-img info {}: no size", disk.display())))
}

/// Waits until QEMU's job `id` concluded: an error when it failed.
fn wait_job(qmp: &mut Qmp, id: &str, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let jobs = qmp.execute(&cmd::QueryJobs {}).map_err(|e| e.to_string())?;
        let Some(job) = jobs.into_iter().find(|j| j.id == id) else {
            return Err(format!("the job {id} is gone"));
        };
        if job.status == "concluded" {
            return match job.error {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the job {id} did not finish within {} s",
                limit.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now, RFC 3339 in UTC.
fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
