//! Files the executor sends (program files a host cannot fetch, data
//! disks carried between hosts), verified whole before they take their
//! name, and the program cache: a program's folder, fetched and verified.

use std::io::Write;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::{failed, hex, Fail, HostAgent};
use crate::protocol::*;

impl HostAgent {
    /// Removes the pieces that agents which died mid-transfer left (their
    /// process is gone): a piece belongs to the conversation that sent it.
    pub(super) fn sweep_parts(&self) {
        let dir = self.root.join("incoming-parts");
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            if pid.is_none_or(|p| !super::process::alive(p)) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Where a file sent by the executor lives, checked to stay there.
    pub(super) fn incoming(&self, dest: &str) -> Result<PathBuf, Fail> {
        cvl_repo::paths::confined(&self.root.join("incoming"), dest).map_err(|e| {
            (
                HostErrorKind::BadRequest,
                format!("refused to store `{dest}`: {e}"),
            )
        })
    }

    /// tree, so no file sent can pose as one.
    fn received_mark(&self, dest: &str) -> PathBuf {
        self.root
            .join("incoming-verified")
            .join(hex(&Sha256::digest(dest.as_bytes())))
    }

    pub(super) fn received(&self, file: &Incoming) -> bool {
        let Ok(path) = self.incoming(&file.dest) else {
            return false;
        };
        std::fs::metadata(&path).is_ok_and(|m| m.len() == file.size)
            && std::fs::read_to_string(self.received_mark(&file.dest))
                .is_ok_and(|m| m == format!("{} {}", file.sha256, file.size))
    }

    /// A piece of a file from the executor; the last one verifies the
    /// whole and puts it in place (a file of another content is refused).
    pub(super) fn put(&self, file: &Incoming, offset: u64, data: &str) -> Result<Response, Fail> {
        use base64::Engine;
        use std::io::{Seek, SeekFrom};
        let bad = |m: String| (HostErrorKind::BadRequest, m);
        let dest = self.incoming(&file.dest)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| bad(format!("a piece of {} is not base64: {e}", file.dest)))?;
        let end = offset + bytes.len() as u64;
        if end > file.size {
            return Err(bad(format!("a piece of {} goes past its size", file.dest)));
        }
        let part = self.root.join("incoming-parts").join(format!(
            "{}-{}",
            hex(&Sha256::digest(file.dest.as_bytes())),
            self.instance
        ));
        std::fs::create_dir_all(part.parent().unwrap()).map_err(|e| failed(e.to_string()))?;
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(offset == 0)
            .open(&part)
            .map_err(|e| failed(format!("cannot write {}: {e}", part.display())))?;
        let have = out.metadata().map_err(|e| failed(e.to_string()))?.len();
        if have != offset {
            return Err(failed(format!(
                "a piece of {} at {offset} came after {have} bytes: send it again from 0",
                file.dest
            )));
        }
        out.seek(SeekFrom::Start(offset))
            .and_then(|_| out.write_all(&bytes))
            .map_err(|e| failed(format!("cannot write {}: {e}", part.display())))?;
        if end < file.size {
            return Ok(Response::Stored { complete: false });
        }
        out.sync_all().map_err(|e| failed(e.to_string()))?;
        drop(out);
        let mut hasher = Sha256::new();
        std::io::copy(
            &mut std::fs::File::open(&part).map_err(|e| failed(e.to_string()))?,
            &mut hasher,
        )
        .map_err(|e| failed(e.to_string()))?;
        let actual = hex(&hasher.finalize());
        if actual != file.sha256 {
            let _ = std::fs::remove_file(&part);
            return Err(failed(format!(
                "{} arrived with SHA-256 {actual}, not {}: refused",
                file.dest, file.sha256
            )));
        }
        std::fs::create_dir_all(dest.parent().unwrap()).map_err(|e| failed(e.to_string()))?;
        std::fs::rename(&part, &dest).map_err(|e| failed(e.to_string()))?;
        let mark = self.received_mark(&file.dest);
        cvl_repo::write_atomic(&mark, format!("{} {}", file.sha256, file.size).as_bytes())
            .map_err(|e| failed(format!("cannot write {}: {e}", mark.display())))?;
        Ok(Response::Stored { complete: true })
    }

    /// The local folder holding a program's files, fetched and verified
    /// into this host's cache.
    /// The local folder of a program, made local (fetched, or sent) and
    /// verified; for a published version, its entry in the index too (what
    /// the program's digest is computed from).
    pub(super) fn program_dir(
        &self,
        source: &ProgramSource,
    ) -> Result<(PathBuf, Option<cvl_repo::index::VersionEntry>), Fail> {
        match source {
            ProgramSource::Folder { dir } => Ok((PathBuf::from(dir), None)),
            ProgramSource::Staged { name, version } => {
                let dir = self.incoming(name)?;
                let Some(version) = version else {
                    return Ok((dir, None));
                };
                // A repository's files as sent: read in place, verified
                // against the index as any repository is.
                let settings = cvl_repo::Settings::plain(self.root.clone());
                let fetcher = cvl_repo::Fetcher::new(settings);
                let location = cvl_repo::Location::Dir(dir.clone());
                let index = fetcher
                    .index(&location)
                    .map_err(failed)?
                    .ok_or_else(|| failed(format!("{} holds no repository", dir.display())))?;
                let local = fetcher
                    .fetch_version(&location, &index, *version)
                    .map_err(failed)?;
                Ok((local, index.version(*version).cloned()))
            }
            ProgramSource::Repository { url, version } => {
                let settings = cvl_repo::Settings::plain(self.root.clone());
                let fetcher = cvl_repo::Fetcher::new(settings);
                let location = cvl_repo::Location::parse(url, None).map_err(failed)?;
                // Unreachable from here: the executor can send the files.
                let fetch_failed = |e: String| {
                    if cvl_repo::fetch::is_unreachable(&e) {
                        (HostErrorKind::Unreachable, e)
                    } else {
                        failed(e)
                    }
                };
                let index = fetcher
                    .index(&location)
                    .map_err(fetch_failed)?
                    .ok_or_else(|| failed(format!("{url} is not a repository")))?;
                let local = fetcher
                    .cache_version(&location, &index, *version)
                    .map_err(fetch_failed)?;
                Ok((local, index.version(*version).cloned()))
            }
        }
    }
}
