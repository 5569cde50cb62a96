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

const QCOW2_MAGIC: [u8; 4] = *b"QFI\xfb";
/// The qcow2 incompatible-feature bit for an external data file: an image
/// with one makes QEMU open another file by name, the same danger as a
/// backing file.
const QCOW2_EXTERNAL_DATA_FILE: u64 = 1 << 2;

/// Whether a file starts like a qcow2 image.
pub fn is_qcow2(path: &Path) -> Result<bool, String> {
    let mut magic = [0u8; 4];
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(file.read_exact(&mut magic).is_ok() && magic == QCOW2_MAGIC)
}

/// Checks a program disk fetched from a repository before anything uses it:
/// a qcow2 image whose backing file is exactly `backing` (an earlier version
/// of it, as the index records: never an absolute path or one outside the
/// cache, the classic way to make QEMU read a host file), of format qcow2,
/// with no external data file. The header is read here first, so that
/// `qemu-img` never opens a file that names another; `qemu-img info` (which
/// does not open backing files) then confirms.
pub fn check_program_disk(path: &Path, backing: Option<&str>) -> Result<(), String> {
    let header_backing = read_qcow2_header(path)?;
    if header_backing.as_deref() != backing {
        return Err(mismatch(header_backing.as_deref(), backing));
    }
    let abs = std::path::absolute(path).map_err(|e| e.to_string())?;
    let info = qemu_img(
        &[
            "info",
            "-f",
            "qcow2",
            "--output=json",
            &abs.to_string_lossy(),
        ],
        Path::new("/"),
    )?;
    let json: serde_json::Value = serde_json::from_str(&info).map_err(|e| e.to_string())?;
    if json["format"] != "qcow2" {
        return Err("qemu-img does not read it as a qcow2 image".to_string());
    }
    let info_backing = json["backing-filename"].as_str();
    if info_backing != backing {
        return Err(mismatch(info_backing, backing));
    }
    if let Some(format) = json["backing-filename-format"].as_str() {
        if format != "qcow2" {
            return Err(format!(
                "its backing file is declared as {format:?}; program disks are qcow2"
            ));
        }
    }
    if !json["format-specific"]["data"]["data-file"].is_null() {
        return Err("it names an external data file: refused".to_string());
    }
    Ok(())
}

fn mismatch(found: Option<&str>, expected: Option<&str>) -> String {
    match (found, expected) {
        (Some(f), Some(e)) => {
            format!("its backing file is {f:?}, not {e:?} as the repository index says: refused")
        }
        (Some(f), None) => format!(
            "it has the backing file {f:?}, which the repository index does not list: refused"
        ),
        (None, Some(e)) => format!(
            "the repository index gives it the backing file {e:?}, and it has none: refused"
        ),
        (None, None) => unreachable!("only called on a mismatch"),
    }
}

/// The backing file name a qcow2 header records, after checking the magic,
/// the version and that no external data file is named.
fn read_qcow2_header(path: &Path) -> Result<Option<String>, String> {
    use std::io::{Seek, SeekFrom};
    let mut file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut header = [0u8; 80];
    file.read_exact(&mut header)
        .map_err(|_| "it is too short to be a qcow2 image".to_string())?;
    let be32 = |at: usize| u32::from_be_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let be64 = |at: usize| u64::from_be_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    if header[..4] != QCOW2_MAGIC {
        return Err("it is not a qcow2 image".to_string());
    }
    let version = be32(4);
    if !(2..=3).contains(&version) {
        return Err(format!("it is a qcow2 image of unknown version {version}"));
    }
    if version >= 3 && be64(72) & QCOW2_EXTERNAL_DATA_FILE != 0 {
        return Err("it names an external data file: refused".to_string());
    }
    let (offset, size) = (be64(8), be32(16));
    if offset == 0 || size == 0 {
        return Ok(None);
    }
    // QEMU itself refuses backing names over 1023 bytes.
    if size > 1023 {
        return Err("its backing file name is longer than qcow2 allows".to_string());
    }
    let mut name = vec![0u8; size as usize];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut name))
        .map_err(|_| "its backing file name lies outside the file".to_string())?;
    String::from_utf8(name)
        .map(Some)
        .map_err(|_| "its backing file name is not UTF-8".to_string())
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
