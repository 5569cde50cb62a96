//! Disks: program overlays on the published disks (replaced on an
//! update), data disks (created empty once, never replaced), and reading
//! a stopped VM's data disk to carry it to another host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::process::running_pid;
use super::{failed, hex, Fail, HostAgent};
use crate::protocol::*;

impl HostAgent {
    /// The VM's program disks: a qcow2 overlay on each published disk of
    /// `program`, made anew on an update (`fresh_program`), kept otherwise
    /// unless they were made from another program (an update cut short
    /// before its new overlays were made: the start that finishes it must
    /// not boot the old version). `dir/program` says which program the
    /// overlays are of.
    pub(super) fn program_overlays(
        &self,
        spec: &StartSpec,
        description: &cvl_repo::vm::VmDescription,
        program: &Path,
        dir: &Path,
    ) -> Result<Vec<PathBuf>, Fail> {
        let identity = format!(
            "{}\n{}\n",
            serde_json::to_string(&spec.program).expect("a program source serializes"),
            spec.description
        );
        let marker = dir.join("program");
        let fresh = spec.fresh_program
            || std::fs::read_to_string(&marker).map_or(true, |made| made != identity);
        let mut drives = Vec::new();
        let data_devices: Vec<&str> = spec.data_disks.iter().map(|(d, _)| d.as_str()).collect();
        for disk in &description.disks {
            if data_devices.contains(&disk.device.as_str()) {
                continue;
            }
            let base = program.join(&disk.file);
            let overlay = dir.join(format!("program-{}.qcow2", file_safe(&disk.device)));
            if fresh || !overlay.exists() {
                let tmp = overlay.with_extension("tmp");
                let _ = std::fs::remove_file(&tmp);
                let base = std::path::absolute(&base).map_err(|e| failed(e.to_string()))?;
                qemu_img(&[
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-b",
                    &base.to_string_lossy(),
                    "-F",
                    "qcow2",
                    &tmp.to_string_lossy(),
                ])?;
                std::fs::rename(&tmp, &overlay).map_err(|e| failed(e.to_string()))?;
            }
            drives.push(overlay);
        }
        if fresh {
            cvl_repo::write_atomic(&marker, identity.as_bytes())
                .map_err(|e| failed(format!("cannot write {}: {e}", marker.display())))?;
        }
        Ok(drives)
    }

    /// The VM's data disks: adopted where carried over from another host,
    /// created empty where missing, never replaced.
    pub(super) fn data_disks(&self, spec: &StartSpec, dir: &Path) -> Result<Vec<PathBuf>, Fail> {
        for (file, dest) in &spec.adopt {
            let disk = self.data_disk(&spec.vm, file)?;
            if !disk.exists() {
                std::fs::rename(self.incoming(dest)?, &disk).map_err(|e| {
                    failed(format!(
                        "cannot take the data disk {file} carried over: {e}"
                    ))
                })?;
            }
        }
        let mut drives = Vec::new();
        for (device, size) in &spec.data_disks {
            let disk = dir.join(data_disk_file(device));
            if !disk.exists() {
                if !valid_size(size) {
                    return Err(failed(format!(
                        "the data disk {device} has the size {size:?}; give one like \"100M\" or \"2G\" in datadisks"
                    )));
                }
                let tmp = disk.with_extension("tmp");
                let _ = std::fs::remove_file(&tmp);
                qemu_img(&["create", "-q", "-f", "qcow2", &tmp.to_string_lossy(), size])?;
                std::fs::rename(&tmp, &disk).map_err(|e| failed(e.to_string()))?;
            }
            drives.push(disk);
        }
        Ok(drives)
    }

    /// Before a start, with the VM stopped: its data disks put back to
    /// their newest snapshot named `restore_data*` (a rollback), or kept as
    /// they are under `snapshot_data` (an update: a qcow2 snapshot, no
    /// copy), older pre-update snapshots beyond `keep_snapshots` removed.
    /// Says what it did, for the history.
    pub(super) fn data_snapshots(&self, spec: &StartSpec, dir: &Path) -> Result<String, Fail> {
        let disks: Vec<PathBuf> = spec
            .data_disks
            .iter()
            .map(|(device, _)| dir.join(data_disk_file(device)))
            .filter(|d| d.exists())
            .collect();
        if let Some(prefix) = &spec.restore_data {
            // Every disk's snapshot found before any is put back.
            let mut chosen = Vec::new();
            for disk in &disks {
                let newest = snapshots(disk)?
                    .into_iter()
                    .rfind(|name| name.starts_with(prefix.as_str()))
                    .ok_or_else(|| {
                        failed(format!(
                            "{}: its data disk {} has no snapshot from before the update \
                             ({prefix}...): nothing was put back; start it on its data as it is \
                             (`cvl rollback --data current`) or restore a backup",
                            spec.vm,
                            disk.file_name().unwrap_or_default().to_string_lossy()
                        ))
                    })?;
                chosen.push((disk, newest));
            }
            for (disk, name) in &chosen {
                qemu_img(&["snapshot", "-a", name, &disk.to_string_lossy()])?;
            }
            return Ok(match chosen.first() {
                Some((_, name)) => format!("put back to {name}"),
                None => String::new(),
            });
        }
        let Some(name) = &spec.snapshot_data else {
            return Ok(String::new());
        };
        for disk in &disks {
            let path = disk.to_string_lossy();
            qemu_img(&["snapshot", "-c", name, &path])?;
            let ours: Vec<String> = snapshots(disk)?
                .into_iter()
                .filter(|n| n.starts_with(SNAPSHOT_PREFIX))
                .collect();
            let keep = spec.keep_snapshots.max(1) as usize;
            for old in &ours[..ours.len().saturating_sub(keep)] {
                qemu_img(&["snapshot", "-d", old, &path])?;
            }
        }
        Ok(if disks.is_empty() {
            String::new()
        } else {
            format!("kept as {name}")
        })
    }

    /// The SHA-256 and size of a stopped VM's data disk, to carry it over.
    pub(super) fn digest(&self, vm: &VmId, file: &str) -> Result<Response, Fail> {
        let disk = self.data_disk(vm, file)?;
        if running_pid(&self.vm_dir(vm)?).is_some() {
            return Err(failed(format!(
                "{vm} is running: stop it before carrying its disks"
            )));
        }
        if !disk.exists() {
            return Ok(Response::Digest {
                sha256: None,
                size: 0,
            });
        }
        let mut hasher = Sha256::new();
        let size = std::io::copy(
            &mut std::fs::File::open(&disk).map_err(|e| failed(e.to_string()))?,
            &mut hasher,
        )
        .map_err(|e| failed(e.to_string()))?;
        Ok(Response::Digest {
            sha256: Some(hex(&hasher.finalize())),
            size,
        })
    }

    /// A piece of a VM's data disk (at most 8 MiB).
    pub(super) fn get(
        &self,
        vm: &VmId,
        file: &str,
        offset: u64,
        len: u64,
    ) -> Result<Response, Fail> {
        piece(&self.data_disk(vm, file)?, offset, len)
    }

    /// A VM's data disk file, by its name in the VM's folder.
    fn data_disk(&self, vm: &VmId, file: &str) -> Result<PathBuf, Fail> {
        let plain = file
            .strip_prefix("data-")
            .and_then(|f| f.strip_suffix(".qcow2"));
        if !plain.is_some_and(|p| {
            !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        }) {
            return Err((
                HostErrorKind::BadRequest,
                format!("`{file}` is not a data disk's name"),
            ));
        }
        Ok(self.vm_dir(vm)?.join(file))
    }
}

/// A piece of a file to send to another host: at most 8 MiB from
/// `offset`, base64.
pub(super) fn piece(path: &Path, offset: u64, len: u64) -> Result<Response, Fail> {
    use base64::Engine;
    use std::io::{Read, Seek, SeekFrom};
    let mut input = std::fs::File::open(path)
        .map_err(|e| failed(format!("cannot read {}: {e}", path.display())))?;
    input
        .seek(SeekFrom::Start(offset))
        .map_err(|e| failed(e.to_string()))?;
    let mut buf = Vec::new();
    input
        .take(len.min(8 << 20))
        .read_to_end(&mut buf)
        .map_err(|e| failed(e.to_string()))?;
    Ok(Response::Piece {
        data: base64::engine::general_purpose::STANDARD.encode(&buf),
    })
}

pub(super) fn file_safe(device: &str) -> String {
    device
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn valid_size(size: &str) -> bool {
    let digits = size.trim_end_matches(['K', 'M', 'G', 'T', 'k']);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) && digits != "0"
}

impl HostAgent {
    /// Each data disk's snapshots from before updates, by file name (read
    /// while QEMU runs: `qemu-img info -U`); a disk it cannot read is left out.
    pub(super) fn data_snapshots_of(&self, vm: &VmId) -> BTreeMap<String, Vec<String>> {
        let Ok(dir) = self.vm_dir(vm) else {
            return BTreeMap::new();
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("data-") && name.ends_with(".qcow2")) {
                continue;
            }
            if let Ok(found) = snapshots(&entry.path()) {
                out.insert(name, found);
            }
        }
        out
    }
}

/// What `qemu-img info` says of a disk (read even while QEMU has it open).
pub(super) fn image_info(disk: &Path) -> Result<serde_json::Value, Fail> {
    let out = Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(disk)
        .output()
        .map_err(|e| failed(format!("cannot run qemu-img: {e}")))?;
    if !out.status.success() {
        return Err(failed(format!(
            "qemu-img info {}: {}",
            disk.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| failed(format!("qemu-img info {}: {e}", disk.display())))
}

/// A qcow2 disk's internal snapshots, oldest first.
pub(super) fn snapshots(disk: &Path) -> Result<Vec<String>, Fail> {
    let info = image_info(disk)?;
    let mut found: Vec<(u64, u64, String)> = info["snapshots"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|s| {
                    Some((
                        s["date-sec"].as_u64().unwrap_or(0),
                        s["id"].as_str()?.parse().unwrap_or(0),
                        s["name"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    Ok(found.into_iter().map(|(_, _, name)| name).collect())
}

/// Runs `qemu-img ARGS`, its failure told with its own words.
pub(super) fn qemu_img(args: &[&str]) -> Result<(), Fail> {
    let out = Command::new("qemu-img").args(args).output().map_err(|e| {
        failed(format!(
            "cannot run qemu-img (Debian: apt-get install qemu-utils): {e}"
        ))
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(format!(
            "qemu-img {} failed: {}",
            args[0],
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
