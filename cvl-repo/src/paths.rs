//! Paths that come from repositories, and reading local repositories without
//! leaving them.
//!
//! A repository is someone else's server: every path it names (in its index,
//! a manifest, an import's `cvl` key, a VM description, a qcow2 backing file)
//! is checked here before it is joined to anything local, and every local
//! destination is verified to stay under its root. Reading a `file://`
//! repository follows no symbolic link that leaves its folder.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use unicode_normalization::UnicodeNormalization;

/// The largest document (index, manifest, CVL file, VM description) read
/// from a repository: 16 MiB. The largest real one is the index, about
/// 300 bytes per published file, so this allows some 50,000 files.
pub const DOCUMENT_LIMIT: u64 = 16 << 20;

/// Checks one plain file name: not empty, not `.` or `..`, no `/`, `\`,
/// NUL or control character, and unchanged by Unicode normalization (NFC),
/// so that two spellings of one name cannot both exist.
pub fn check_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        "an empty name"
    } else if name == "." || name == ".." {
        "`.` and `..` are not names"
    } else if name.contains('/') {
        "a name has no `/`"
    } else if name.contains('\\') {
        "a backslash"
    } else if name.contains('\0') {
        "a NUL byte"
    } else if name.chars().any(char::is_control) {
        "a control character"
    } else if name.nfc().ne(name.chars()) {
        "a name that Unicode normalization (NFC) changes"
    } else {
        return Ok(());
    };
    Err(format!("{name:?} is not a plain file name ({why})"))
}

/// Checks a relative path of plain names joined by `/` (`a.cvl`,
/// `disks/system.qcow2`): no absolute path, no empty, `.` or `..`
/// component, and every name as [`check_name`] wants it.
pub fn check_relative(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("an empty path".to_string());
    }
    if path.starts_with('/') {
        return Err(format!("{path:?} is absolute; it must be relative"));
    }
    for name in path.split('/') {
        check_name(name).map_err(|e| format!("{path:?}: {e}"))?;
    }
    Ok(())
}

/// A program disk's backing file as the index records it: `../N/NAME`, with
/// `N` an earlier version than `version`. Returns `N`.
pub fn check_backing(version: u32, backing: &str) -> Result<u32, String> {
    let mut parts = backing.split('/');
    let (Some(".."), Some(n), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "backing file {backing:?} is not `../N/NAME` (an earlier version's disk)"
        ));
    };
    check_name(name).map_err(|e| format!("backing file {backing:?}: {e}"))?;
    match n.parse::<u32>() {
        // `02` would be a second spelling of version 2.
        Ok(base) if base >= 1 && base < version && base.to_string() == n => Ok(base),
        _ => Err(format!(
            "backing file {backing:?} does not name an earlier version than {version}"
        )),
    }
}

/// `root/rel` for a repository-supplied `rel`, checked, and verified to stay
/// under `root` once joined.
pub fn confined(root: &Path, rel: &str) -> Result<PathBuf, String> {
    check_relative(rel)?;
    let joined = root.join(rel);
    let inside = joined
        .strip_prefix(root)
        .is_ok_and(|r| r.components().all(|c| matches!(c, Component::Normal(_))));
    if !inside {
        return Err(format!("{rel:?} leaves {}", root.display()));
    }
    Ok(joined)
}

/// Where `rel` really is inside the local repository `root`: its canonical
/// path, refused when a symbolic link leads out of the repository's folder.
pub fn resolve_inside(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let path = confined(root, rel)?;
    let real_root = std::fs::canonicalize(root)
        .map_err(|e| format!("cannot read {}: {}", crate::display_path(root), reason(&e)))?;
    let real = std::fs::canonicalize(&path)
        .map_err(|e| format!("cannot read {}: {}", crate::display_path(&path), reason(&e)))?;
    if !real.starts_with(&real_root) {
        return Err(format!(
            "{} is a symbolic link to {}, outside the repository: refused",
            crate::display_path(&path),
            real.display()
        ));
    }
    Ok(real)
}

/// Reads `rel` of the local repository `root`: inside it (see
/// [`resolve_inside`]), a regular file, at most `limit` bytes.
pub fn read_inside(root: &Path, rel: &str, limit: u64) -> Result<Vec<u8>, String> {
    let real = resolve_inside(root, rel)?;
    read_limited(&real, limit)
}

/// Reads a regular file of at most `limit` bytes, refusing a larger one
/// without reading it (and a device or FIFO, whose size says nothing).
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let shown = crate::display_path(path);
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {}", reason(&e)))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {}", reason(&e)))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file: refused"));
    }
    if meta.len() > limit {
        return Err(too_large(&shown, limit));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {}", reason(&e)))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(&shown, limit));
    }
    Ok(bytes)
}

pub(crate) fn too_large(what: &str, limit: u64) -> String {
    format!(
        "{what} is larger than {}: refused (no real repository document comes near it)",
        size(limit)
    )
}

/// A byte count for people: `16 MiB`, `700 bytes`.
pub fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// An I/O error's reason without the OS error number.
pub(crate) fn reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_paths_pass() {
        for ok in [
            "a.cvl",
            "disks/system.qcow2",
            "DNS v2.cvl",
            "é.cvl",
            ".hidden",
        ] {
            assert_eq!(check_relative(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn every_kind_of_escape_is_refused() {
        let decomposed = "e\u{301}.cvl"; // é as e + combining accent
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "a/",
            "a\\..\\b",
            "a\0b",
            "a\nb",
            decomposed,
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn backing_files_name_earlier_versions_only() {
        assert_eq!(check_backing(3, "../2/system.qcow2"), Ok(2));
        for bad in [
            "/etc/passwd",
            "../3/system.qcow2",
            "../0/system.qcow2",
            "../02/system.qcow2",
            "../../x/system.qcow2",
            "../2/../../x",
            "../2/a/b",
            "2/system.qcow2",
        ] {
            assert!(check_backing(3, bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn confined_paths_stay_under_their_root() {
        let root = Path::new("/cache/repos/x");
        assert_eq!(
            confined(root, "versions/1/a.cvl").unwrap(),
            root.join("versions/1/a.cvl")
        );
        assert!(confined(root, "../../../etc/passwd").is_err());
    }

    #[test]
    fn symbolic_links_out_of_the_repository_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("sub")).unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::fs::write(repo.join("sub/in.cvl"), "x").unwrap();
        std::os::unix::fs::symlink("../secret", repo.join("out")).unwrap();
        std::os::unix::fs::symlink("sub/in.cvl", repo.join("alias")).unwrap();
        assert_eq!(read_inside(&repo, "alias", 10).unwrap(), b"x");
        let err = read_inside(&repo, "out", 10).unwrap_err();
        assert!(err.contains("outside the repository"), "{err}");
        let err = read_inside(&repo, "sub/in.cvl", 0).unwrap_err();
        assert!(err.contains("larger than 0 bytes"), "{err}");
    }
}
