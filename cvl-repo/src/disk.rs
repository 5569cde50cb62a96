//! Program disks in repositories, through `qemu-img`: storing a new version's
//! disk as a qcow2 delta on the previous version's (only the clusters that
//! differ), and hashing large files without reading them whole.

use std::io::Read;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::index::FileEntry;

/// Runs qemu-img, turning a failure into a message with its stderr.
fn qemu_img(args: &[&str], cwd: &Path) -> Result<String, String> {
    let out = Command::new("qemu-img")
        .args(args)
        .current_dir(cwd)
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                "qemu-img is not installed (Debian: apt-get install qemu-utils)".to_string()
            } else {
                format!("cannot run qemu-img: {e}")
            }
        })?;
    if !out.status.success() {
        return Err(format!(
            "qemu-img {} failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The format qemu-img detects for an image (`raw`, `qcow2`, ...).
pub fn image_format(path: &Path) -> Result<String, String> {
    let abs = std::path::absolute(path).map_err(|e| e.to_string())?;
    let info = qemu_img(
        &["info", "--output=json", &abs.to_string_lossy()],
        Path::new("/"),
    )?;
    let json: serde_json::Value = serde_json::from_str(&info).map_err(|e| e.to_string())?;
    json["format"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("qemu-img cannot tell the format of {}", path.display()))
}

/// Stores `source` as `dir/name`: whole when `base` is `None`, else as a
/// qcow2 overlay on `../BASE/name` holding only the clusters that differ.
pub fn store_delta(
    source: &Path,
    dir: &Path,
    name: &str,
    base: Option<u32>,
) -> Result<FileEntry, String> {
    let source = std::path::absolute(source).map_err(|e| e.to_string())?;
    let source_str = source.to_string_lossy().to_string();
    let format = image_format(&source)?;
    let backing = match base {
        None => {
            qemu_img(
                &["convert", "-O", "qcow2", "-f", &format, &source_str, name],
                dir,
            )?;
            None
        }
        Some(base) => {
            // An empty overlay on the new image reads as the new image; a safe
            // rebase onto the previous version then copies into it exactly
            // the clusters where the two differ.
            let backing = format!("../{base}/{name}");
            qemu_img(
                &[
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-b",
                    &source_str,
                    "-F",
                    &format,
                    name,
                ],
                dir,
            )?;
            qemu_img(
                &["rebase", "-f", "qcow2", "-b", &backing, "-F", "qcow2", name],
                dir,
            )?;
            Some(backing)
        }
    };
    let path = dir.join(name);
    let file =
        std::fs::File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    file.sync_all().map_err(|e| e.to_string())?;
    let (sha256, size) = hash_file(&path)?;
    Ok(FileEntry {
        path: name.to_string(),
        sha256,
        size,
        backing,
    })
}

/// SHA-256 and size of a file, read in chunks.
pub fn hash_file(path: &Path) -> Result<(String, u64), String> {
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, size))
}

/// Allocated clusters of a qcow2 image itself (not its backing chain).
pub fn allocated_bytes(path: &Path) -> Result<u64, String> {
    let abs = std::path::absolute(path).map_err(|e| e.to_string())?;
    let map = qemu_img(
        &["map", "--output=json", &abs.to_string_lossy()],
        Path::new("/"),
    )?;
    let entries: Vec<serde_json::Value> = serde_json::from_str(&map).map_err(|e| e.to_string())?;
    Ok(entries
        .iter()
        .filter(|e| e["depth"] == 0 && e["data"] == true)
        .map(|e| e["length"].as_u64().unwrap_or(0))
        .sum())
}
