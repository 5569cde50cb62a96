//! Data disks backed up and restored, on the host that runs them.
//!
//! Where the files go, and how the store is kept, is [`store`](super::store).
//!
//! A running VM is backed up live by QEMU (`blockdev-backup`), with the
//! guest's file systems frozen through its guest agent for the instant the
//! job starts. Incremental backups follow dirty bitmaps kept in the disk's
//! qcow2 (persistent, so they survive a restart): a store's restore point
//! K leaves the bitmap `cvl-TAG-K` (TAG names the store), which records
//! what the guest wrote since; the next backup copies what it marks (never
//! clearing it) and adds `cvl-TAG-K+1` in the same instant, and only once
//! K+1 is in the store is `cvl-TAG-K` removed. So a backup killed half way
//! costs nothing: the next one starts again from K. A bitmap QEMU could not
//! save (it was killed) is inconsistent: removed, and the next backup is
//! full. A stopped VM's disk is copied from its file (`qemu-img convert`),
//! and given the bitmap of the restore point it became; so is a disk a
//! restore put back from the VM's own point.
//!
//! The job's target is a file in the VM's own folder, the one place its
//! jailed QEMU may write, moved into the store once complete. For a store
//! on another host, the point is made the same way into this host's outbox
//! and waits there to be carried over (`cvl_ops::backup`); K's bitmap goes
//! only once K+1 is in that store.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::disks::{file_safe, image_info as info, qemu_img};
use super::process::running_pid;
use super::store::{self, Manifest};
use super::{failed, jail, Fail, HostAgent};
use crate::protocol::*;
use crate::qmp::{cmd, Agent, Qmp};
/// The dirty bitmaps one store's backups leave in a disk: `cvl-TAG-ID`,
/// TAG naming the store, so that backups to two stores each follow their
/// own restore points (a bitmap of one store's point 0003 says nothing of
/// another's 0003).
struct Bitmaps {
    prefix: String,
}

impl Bitmaps {
    fn of(store: &str) -> Bitmaps {
        use sha2::{Digest, Sha256};
        Bitmaps {
            prefix: format!(
                "cvl-{}-",
                &super::hex(&Sha256::digest(store.as_bytes()))[..8]
            ),
        }
    }

    fn name(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    /// One of this store's, or of the untagged kind older versions left
    /// (`cvl-0003`, store unknown: stale).
    fn ours(&self, name: &str) -> bool {
        name.starts_with(&self.prefix)
            || name
                .strip_prefix("cvl-")
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
    }
}

impl HostAgent {
    /// Backs up the VM's data disks `devices` into `store` (whose name in
    /// the disks' dirty bitmaps is `named`).
    pub(super) fn backup(
        &self,
        vm: &VmId,
        (store, named): (&str, &str),
        devices: &[String],
        full: bool,
        elsewhere: Option<&[Backup]>,
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
            // The store's folder, or (the store on another host) the
            // outbox, emptied of what an earlier backup left unsent.
            let (folder, mut manifest) = match elsewhere {
                None => (store::disk_folder(store, vm, device)?, None),
                Some(points) => {
                    let folder = self.outbox(vm, device);
                    let _ = std::fs::remove_dir_all(&folder);
                    let points = points.iter().filter(|b| &b.device == device);
                    (folder, Some(store::manifest_of(points.cloned().collect())?))
                }
            };
            let _held = store::hold(&folder)?;
            let mut manifest = match manifest.take() {
                Some(m) => m,
                None => store::read_manifest(&folder)?,
            };
            let backup = if running {
                self.backup_live(vm, &dir, device, (named, &folder), &manifest, full)?
            } else {
                backup_stopped(&disk, device, &folder, &manifest)?
            };
            if elsewhere.is_none() {
                manifest.format = 1;
                manifest.backups.push(backup.clone());
                store::write_manifest(&folder, &manifest)?;
                if running {
                    // Only now is the parent's bitmap no longer needed.
                    drop_bitmap(vm, &dir, named, &backup)?;
                }
            }
            if !running {
                bitmaps_after_stopped_backup(&disk, named, &backup.id)?;
            }
            made.push(backup);
        }
        Ok(Response::BackedUp { backups: made })
    }

    /// Where restore points for a store on another host are made.
    fn outbox(&self, vm: &VmId, device: &str) -> std::path::PathBuf {
        store::disk_folder(&self.root.join("outbox").to_string_lossy(), vm, device)
            .expect("the agent's root is absolute")
    }

    /// A piece of a restore point's file, in `store` or the outbox.
    pub(super) fn read_point(
        &self,
        vm: &VmId,
        store: Option<&str>,
        device: &str,
        file: &str,
        offset: u64,
        len: u64,
    ) -> Result<Response, Fail> {
        let folder = match store {
            Some(store) => store::disk_folder(store, vm, device)?,
            None => self.outbox(vm, device),
        };
        store::check_name(file).map_err(|e| (HostErrorKind::BadRequest, e))?;
        super::disks::piece(&folder.join(file), offset, len)
    }

    /// Adds a restore point sent from the host that made it to `store`,
    /// if it still follows the store's newest point of its disk.
    pub(super) fn add_point(
        &self,
        vm: &VmId,
        store: &str,
        point: &Backup,
    ) -> Result<Response, Fail> {
        let sent = Incoming {
            dest: point_dest(vm, &point.device, &point.file),
            sha256: point.sha256.clone(),
            size: point.size,
        };
        if !self.received(&sent) {
            return Err(failed(format!(
                "restore point {} of {vm} {} has not arrived whole",
                point.id, point.device
            )));
        }
        let folder = store::disk_folder(store, vm, &point.device)?;
        let _held = store::hold(&folder)?;
        let mut manifest = store::read_manifest(&folder)?;
        let newest = manifest.backups.last().map(|b| &b.id);
        if point.id != store::next_id(&manifest)
            || point.parent.as_ref().is_some_and(|p| Some(p) != newest)
        {
            return Err(failed(format!(
                "the store changed while restore point {} of {vm} {} was made (its newest is now \
                 {}): nothing was added; back up again",
                point.id,
                point.device,
                newest.map_or("none", String::as_str)
            )));
        }
        store::check_name(&point.file).map_err(failed)?;
        let received = self.incoming(&sent.dest)?;
        let source = std::fs::File::open(&received).map_err(|e| failed(e.to_string()))?;
        let (size, sha256) = store::put(source, &folder.join(&point.file))?;
        if size != point.size || sha256 != point.sha256 {
            let _ = std::fs::remove_file(folder.join(&point.file));
            return Err(failed(format!(
                "restore point {} of {vm} {} changed on its way into the store",
                point.id, point.device
            )));
        }
        manifest.format = 1;
        manifest.backups.push(point.clone());
        store::write_manifest(&folder, &manifest)?;
        let _ = std::fs::remove_file(&received);
        Ok(Response::BackedUp {
            backups: vec![point.clone()],
        })
    }

    /// A restore point made in the outbox is in its store: the file goes,
    /// and (the VM running) the bitmap of the point it followed.
    pub(super) fn point_sent(
        &self,
        vm: &VmId,
        store: &str,
        point: &Backup,
    ) -> Result<Response, Fail> {
        let dir = self.vm_dir(vm)?;
        store::check_name(&point.file).map_err(failed)?;
        let _ = std::fs::remove_file(self.outbox(vm, &point.device).join(&point.file));
        if running_pid(&dir).is_some() {
            drop_bitmap(vm, &dir, store, point)?;
        }
        Ok(Response::BackedUp {
            backups: vec![point.clone()],
        })
    }

    /// One disk of a running VM, through QEMU.
    fn backup_live(
        &self,
        vm: &VmId,
        dir: &Path,
        device: &str,
        (named, folder): (&str, &Path),
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
        let block = blocks
            .into_iter()
            .find(|b| b.device == node && b.inserted.is_some())
            .ok_or_else(|| failed(format!("{vm}: QEMU has no drive {node}")))?;
        let inserted = block.inserted.clone().expect("found with its medium");
        let last = manifest.backups.last();
        let bitmaps = Bitmaps::of(named);
        let usable = |b: &Backup| {
            let name = bitmaps.name(&b.id);
            inserted
                .dirty_bitmaps
                .iter()
                .any(|m| m.name == name && !m.inconsistent)
        };
        let parent = last.filter(|b| !full && usable(b)).cloned();
        // Every other bitmap of this store's is stale (a killed backup's,
        // an inconsistent one): removed. Other stores' are theirs.
        let keep = parent.as_ref().map(|p| bitmaps.name(&p.id));
        for bitmap in &inserted.dirty_bitmaps {
            if bitmaps.ours(&bitmap.name) && Some(&bitmap.name) != keep.as_ref() {
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
        let bitmap = bitmaps.name(&id);
        let mut backup = json!({
            "device": node, "target": target_node, "job-id": job, "auto-dismiss": false,
        });
        match &parent {
            Some(p) => {
                backup["sync"] = json!("bitmap");
                backup["bitmap"] = json!(bitmaps.name(&p.id));
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
        // first thawed if an agent killed between the two left them frozen
        // (so does the next status request: the mark says so).
        let mut guest = Agent::connect(&dir.join("qga.sock"), Duration::from_secs(3)).ok();
        if let Some(a) = guest.as_mut() {
            if a.execute(&cmd::GuestFsfreezeStatus {})
                .is_ok_and(|s| s == "frozen")
            {
                let _ = a.execute(&cmd::GuestFsfreezeThaw {});
            }
        }
        // Only the file systems on this disk: the others are not in the
        // backup, and flushing them would only keep the guest frozen longer.
        let mounts = match (guest.as_mut(), block.qdev.as_deref()) {
            (Some(a), Some(qdev)) => mounts_of(&mut qmp, a, qdev),
            _ => Vec::new(),
        };
        let mark = self.freeze_mark(vm).filter(|_| guest.is_some());
        if let Some(mark) = &mark {
            let _ = std::fs::write(mark, b"");
        }
        // Writes are blocked from the freeze's start (Linux blocks new
        // writes, then flushes) to the thaw's answer: both in the figure.
        let frozen_at = Instant::now();
        // Frozen means file systems were: a guest with none to freeze (an
        // initramfs) answers 0, and its copy is only crash-consistent.
        let frozen = guest.as_mut().is_some_and(|a| {
            if mounts.is_empty() {
                a.execute(&cmd::GuestFsfreezeFreeze {})
            } else {
                a.execute(&cmd::GuestFsfreezeFreezeList {
                    mountpoints: mounts.clone(),
                })
            }
            .is_ok_and(|n| n > 0)
        });
        let flushed_ms = frozen_at.elapsed().as_millis() as u64;
        let started = qmp.execute(&cmd::Transaction { actions });
        if frozen {
            if let Some(a) = guest.as_mut() {
                // Thawed whatever happened; tried twice.
                if a.execute(&cmd::GuestFsfreezeThaw {}).is_err() {
                    let _ = a.execute(&cmd::GuestFsfreezeThaw {});
                }
            }
        }
        let (frozen_ms, flush_ms) = if frozen {
            (frozen_at.elapsed().as_millis() as u64, flushed_ms)
        } else {
            (0, 0)
        };
        if let Some(mark) = &mark {
            let _ = std::fs::remove_file(mark);
        }
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
            flush_ms,
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
        (store, named): (&str, &str),
        device: &str,
        id: Option<&str>,
        from: Option<&VmId>,
        chain: Option<&[Backup]>,
    ) -> Result<Response, Fail> {
        let dir = self.vm_dir(vm)?;
        if running_pid(&dir).is_some() {
            return Err(failed(format!("{vm} is running: stop it before a restore")));
        }
        let owner = from.unwrap_or(vm);
        // The store's folder, or the one the chain was sent into (checked
        // below as a store's would be).
        let (folder, manifest) = match chain {
            None => {
                let folder = store::disk_folder(store, owner, device)?;
                let manifest = store::read_manifest(&folder)?;
                (folder, manifest)
            }
            Some(chain) => {
                let sent = self.incoming(&point_dest(owner, device, "x"))?;
                let folder = sent.parent().expect("a file's folder").to_path_buf();
                (folder, store::manifest_of(chain.to_vec())?)
            }
        };
        // Its own point: the restored disk is that point, so the store's
        // next backup may follow it (another's: its ids are not ours).
        let follow = from.is_none().then_some(named);
        let restored = self.restore_from(vm, &dir, device, (id, follow), &folder, &manifest);
        if chain.is_some() {
            let _ = std::fs::remove_dir_all(&folder);
        }
        restored
    }

    fn restore_from(
        &self,
        vm: &VmId,
        dir: &Path,
        device: &str,
        (id, follow): (Option<&str>, Option<&str>),
        folder: &Path,
        manifest: &Manifest,
    ) -> Result<Response, Fail> {
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
        store::check_chain(folder, manifest, point)?;
        std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
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
        if let Some(store) = follow {
            bitmaps_after_stopped_backup(&incoming, store, &point.id)?;
        }
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

/// The bitmap of the point `point` followed, which it made useless.
fn drop_bitmap(vm: &VmId, dir: &Path, store: &str, point: &Backup) -> Result<(), Fail> {
    if let Some(parent) = &point.parent {
        let mut qmp = Qmp::connect(&dir.join("qmp.sock"), Duration::from_secs(10))
            .map_err(|e| failed(format!("{vm}: its monitor: {e}")))?;
        let _ = qmp.execute(&cmd::BlockDirtyBitmapRemove {
            node: drive_id(&point.device),
            name: Bitmaps::of(store).name(parent),
        });
    }
    Ok(())
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
        flush_ms: 0,
        disk_size: virtual_size(disk)?,
    })
}

/// A stopped disk just copied as `store`'s restore point `id`: of that
/// store's bitmaps it has `cvl-TAG-ID` alone (what is written from now
/// on), so that its next backup there, running, is incremental.
fn bitmaps_after_stopped_backup(disk: &Path, store: &str, id: &str) -> Result<(), Fail> {
    let path = disk.to_string_lossy();
    let info = info(disk)?;
    let ours = Bitmaps::of(store);
    if let Some(bitmaps) = info["format-specific"]["data"]["bitmaps"].as_array() {
        for name in bitmaps.iter().filter_map(|b| b["name"].as_str()) {
            if ours.ours(name) {
                qemu_img(&["bitmap", "--remove", &path, name])?;
            }
        }
    }
    qemu_img(&["bitmap", "--add", "--enable", &path, &ours.name(id)])
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

/// Where the guest mounts the disk QEMU shows as `qdev`, matched by its PCI
/// address: the file systems a backup of it freezes. Empty when the guest
/// mounts none of it, or cannot say (then every file system is frozen).
fn mounts_of(qmp: &mut Qmp, guest: &mut Agent, qdev: &str) -> Vec<String> {
    let device = qdev.trim_end_matches("/virtio-backend");
    let devfn = qmp
        .execute(&cmd::QomGet {
            path: device.to_string(),
            property: "addr".into(),
        })
        .ok()
        .and_then(|v| v.as_i64());
    let (Some(devfn), Ok(filesystems)) = (devfn, guest.execute(&cmd::GuestGetFsinfo {})) else {
        return Vec::new();
    };
    let on_disk = |d: &cmd::GuestDisk| {
        (d.pci.domain, d.pci.bus, d.pci.slot, d.pci.function) == (0, 0, devfn >> 3, devfn & 7)
    };
    filesystems
        .into_iter()
        .filter(|fs| fs.disk.iter().any(on_disk))
        .map(|fs| fs.mountpoint)
        .collect()
}
