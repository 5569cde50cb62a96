//! Reading repositories where they are: a local directory (`file://`) or a
//! static web server (`http://`, `https://`), with timeouts, SHA-256
//! verification of every file, and a cache keyed by hash for offline use.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::index::{sha256_hex, version_file_path, FileEntry, Index, INDEX_FILE, VERSIONS_DIR};
use crate::paths::{self, DOCUMENT_LIMIT};
use crate::settings::Settings;

/// Where a repository is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    Dir(PathBuf),
    /// The base URL, without a trailing `/`.
    Http(String),
}

impl Location {
    /// Parses a repository URL. `file://./x` and `file://../x` are relative
    /// to `base` (the importing file's folder, or its repository URL).
    pub fn parse(url: &str, base: Option<&Location>) -> Result<Location, String> {
        if let Some(rest) = url.strip_prefix("file://") {
            if rest.starts_with("./") || rest.starts_with("../") {
                return match base {
                    Some(Location::Dir(dir)) => Ok(Location::Dir(normalize(&dir.join(rest)))),
                    Some(Location::Http(base)) => Ok(Location::Http(join_url(base, rest))),
                    None => Err(format!(
                        "`{url}` is relative, and there is no folder to resolve it in"
                    )),
                };
            }
            if rest.starts_with('/') {
                return Ok(Location::Dir(PathBuf::from(rest)));
            }
            return Err(format!(
                "`{url}` is neither absolute (file:///path) nor relative (file://./path)"
            ));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(Location::Http(url.trim_end_matches('/').to_string()));
        }
        Err(format!(
            "`{url}` is not a repository URL: use file://, http:// or https://"
        ))
    }

    pub fn display(&self) -> String {
        match self {
            Location::Dir(d) => crate::display_path(d),
            Location::Http(u) => u.clone(),
        }
    }

    /// The location as a URL that [`Location::parse`] reads back.
    pub fn url(&self) -> String {
        match self {
            Location::Dir(d) => match std::path::absolute(d) {
                Ok(abs) => format!("file://{}", abs.display()),
                Err(_) => format!("file://{}", d.display()),
            },
            Location::Http(u) => u.clone(),
        }
    }

    /// The location of a file inside this repository, as a name for people.
    pub fn file_name(&self, path: &str) -> String {
        match self {
            Location::Dir(d) => crate::display_path(&d.join(path)),
            Location::Http(u) => format!("{u}/{path}"),
        }
    }
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn join_url(base: &str, relative: &str) -> String {
    let mut parts: Vec<&str> = base.split('/').collect();
    for segment in relative.split('/') {
        match segment {
            "." | "" => {}
            ".." => {
                if parts.len() > 3 {
                    parts.pop();
                }
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// What a repository's index was when last read, so that asking again
/// costs one small answer when nothing changed: a web server's `ETag` and
/// `Last-Modified`, or a local index file's size, modification time and
/// inode; and the index's SHA-256, for servers that send neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub file: Option<(u64, i64, i64, u64)>,
    pub sha256: Option<String>,
    /// A local repository's `tuf/timestamp.json`, as the index above.
    pub metadata: Option<(u64, i64, i64, u64)>,
    /// Whether the repository is signed (then the validators are its
    /// timestamp's: polling it costs one conditional request); `None`
    /// before the first look.
    pub signed: Option<bool>,
}

/// What [`Fetcher::poll_index`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled {
    /// The index is as it was.
    Unchanged,
    /// It changed (or this is the first look): the index, read and checked,
    /// and how to ask next time.
    Changed(Box<Index>, Validators),
}

/// What a conditional request found.
enum Conditional {
    Unchanged,
    Missing,
    Body(Vec<u8>, Validators),
}

/// A repository's timestamp, relative to it.
const TIMESTAMP: &str = "tuf/timestamp.json";

/// Reads repositories. One per load; it holds the HTTP agent.
pub struct Fetcher {
    settings: Settings,
    agent: ureq::Agent,
}

/// The name of the index's copy a signed repository's targets name (by
/// its hash; see [`crate::trust::sign`]).
fn signed_copy(trust: &crate::trust::Trust) -> Option<String> {
    let crate::trust::Trust::Signed(verified) = trust else {
        return None;
    };
    let (_, sha256) = verified.targets.get(INDEX_FILE)?;
    Some(crate::trust::sign::index_copy_name(sha256))
}

impl Fetcher {
    pub fn new(settings: Settings) -> Fetcher {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            .timeout_connect(Some(
                settings.timeout.min(std::time::Duration::from_secs(10)),
            ))
            // Many requests to one server at once (the utility service
            // polls eight repositories at a time): their connections kept.
            .max_idle_connections(64)
            .max_idle_connections_per_host(16)
            // Each kept connection holds its buffers: 32 KiB in (headers
            // and a read chunk), 16 KiB out (a request), not 128 each.
            .input_buffer_size(32 << 10)
            .output_buffer_size(16 << 10)
            .build();
        Fetcher {
            agent: config.into(),
            settings,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The repository's index; `Ok(None)` for a local folder that has none
    /// (a plain folder of CVL files, not a repository).
    pub fn index(&self, location: &Location) -> Result<Option<Index>, String> {
        match location {
            Location::Dir(dir) => {
                if std::fs::symlink_metadata(dir.join(INDEX_FILE)).is_err() {
                    return if dir.is_dir() {
                        Ok(None)
                    } else {
                        Err(format!(
                            "no repository at {} (the folder does not exist)",
                            crate::display_path(dir)
                        ))
                    };
                }
                let trust = self.trust(location)?;
                let copy = signed_copy(&trust)
                    .and_then(|name| paths::read_inside(dir, &name, DOCUMENT_LIMIT).ok());
                let bytes = match copy {
                    Some(bytes) => bytes,
                    None => paths::read_inside(dir, INDEX_FILE, DOCUMENT_LIMIT)?,
                };
                self.held_to(&trust, location, &bytes)?;
                Index::parse(&bytes).map(Some)
            }
            Location::Http(base) => {
                let url = format!("{base}/{INDEX_FILE}");
                let cached = self.index_cache_path(&url);
                if self.settings.offline {
                    let bytes = paths::read_limited(&cached, DOCUMENT_LIMIT).map_err(|_| {
                        format!("{url} is not in the cache, and --offline forbids downloading it")
                    })?;
                    self.trusted(location, &bytes)?;
                    return Index::parse(&bytes).map(Some);
                }
                let trust = self.trust(location)?;
                // A signed repository's index by its hash: the one its
                // timestamp names even while a publish replaces the other.
                let copy = match signed_copy(&trust) {
                    Some(name) => match self.get(&format!("{base}/{name}"), DOCUMENT_LIMIT) {
                        Ok(bytes) => Some(bytes),
                        Err(e) if e.contains("HTTP 404") => None,
                        Err(e) => return Err(e),
                    },
                    None => None,
                };
                let bytes = match copy {
                    Some(bytes) => bytes,
                    None => self.get(&url, DOCUMENT_LIMIT).map_err(|e| {
                        if e.contains("HTTP 404") {
                            format!("no repository at {base} ({e})")
                        } else {
                            e
                        }
                    })?,
                };
                self.held_to(&trust, location, &bytes)?;
                let index = Index::parse(&bytes)?;
                // Best effort: a cache that cannot be written only costs offline use.
                let _ = crate::write_atomic(&cached, &bytes);
                Ok(Some(index))
            }
        }
    }

    /// Holds an index's bytes to what the repository's publisher signed,
    /// when it is signed (verified once per load: [`crate::trust::check`]).
    fn trusted(&self, location: &Location, bytes: &[u8]) -> Result<crate::trust::Trust, String> {
        let trust = self.trust(location)?;
        self.held_to(&trust, location, bytes)?;
        Ok(trust)
    }

    /// The repository as a reader may trust it ([`crate::trust::check`]).
    fn trust(&self, location: &Location) -> Result<crate::trust::Trust, String> {
        crate::trust::check(&self.settings, location).map_err(|e| e.to_string())
    }

    /// Holds an index's bytes to what `trust` signed.
    fn held_to(
        &self,
        trust: &crate::trust::Trust,
        location: &Location,
        bytes: &[u8],
    ) -> Result<(), String> {
        crate::trust::check_index_of(&self.settings, trust, location, bytes)
            .map_err(|e| e.to_string())
    }

    /// Whether the repository's index changed since `known`: for a web
    /// repository a conditional request (`If-None-Match`,
    /// `If-Modified-Since`: an unchanged index is a `304` with no body);
    /// for a folder, its index file's size, time and inode. A changed index
    /// is read and checked as [`Fetcher::index`] does.
    pub fn poll_index(&self, location: &Location, known: &Validators) -> Result<Polled, String> {
        use std::os::unix::fs::MetadataExt;
        let stat = |m: std::fs::Metadata| (m.len(), m.mtime(), m.mtime_nsec(), m.ino());
        match location {
            Location::Dir(dir) => {
                let path = dir.join(INDEX_FILE);
                let meta = std::fs::metadata(&path)
                    .map_err(|e| format!("cannot read {}: {e}", crate::display_path(&path)))?;
                let seen = stat(meta);
                let stamp = std::fs::metadata(dir.join(TIMESTAMP)).ok().map(stat);
                if known.file == Some(seen) && known.metadata == stamp {
                    return Ok(Polled::Unchanged);
                }
                // Changed: verified afresh, not from what this reader saw.
                self.settings.trust.forget(&location.url());
                let index = self
                    .index(location)?
                    .ok_or_else(|| format!("{} is not a repository", location.display()))?;
                Ok(Polled::Changed(
                    Box::new(index),
                    Validators {
                        file: Some(seen),
                        metadata: stamp,
                        signed: Some(stamp.is_some()),
                        ..Validators::default()
                    },
                ))
            }
            Location::Http(base) => {
                // A signed repository: its timestamp says whether anything
                // changed (one conditional request; a 304 when nothing did).
                if known.signed != Some(false) {
                    let url = format!("{base}/{TIMESTAMP}");
                    match self.conditional(&url, known)? {
                        Conditional::Missing => {}
                        Conditional::Unchanged => return Ok(Polled::Unchanged),
                        Conditional::Body(_, v) if v.sha256 == known.sha256 => {
                            return Ok(Polled::Unchanged)
                        }
                        Conditional::Body(_, mut validators) => {
                            self.settings.trust.forget(&location.url());
                            let index = self.index(location)?.ok_or_else(|| {
                                format!("{} is not a repository", location.display())
                            })?;
                            validators.signed = Some(true);
                            return Ok(Polled::Changed(Box::new(index), validators));
                        }
                    }
                }
                let url = format!("{base}/{INDEX_FILE}");
                let known = if known.signed == Some(false) {
                    known.clone()
                } else {
                    Validators::default()
                };
                let (bytes, mut validators) = match self.conditional(&url, &known)? {
                    Conditional::Unchanged => return Ok(Polled::Unchanged),
                    Conditional::Missing => return Err(format!("{url} answered HTTP 404")),
                    Conditional::Body(bytes, validators) => (bytes, validators),
                };
                // The same bytes again (a server without validators).
                if known.sha256.is_some() && known.sha256 == validators.sha256 {
                    return Ok(Polled::Unchanged);
                }
                validators.signed = Some(false);
                self.settings.trust.forget(&location.url());
                self.trusted(location, &bytes)?;
                let index = Index::parse(&bytes).map_err(|e| format!("{url}: {e}"))?;
                let _ = crate::write_atomic(&self.index_cache_path(&url), &bytes);
                Ok(Polled::Changed(Box::new(index), validators))
            }
        }
    }

    /// A conditional GET of `url` against `known`'s validators: unchanged,
    /// missing, or its body (at most [`DOCUMENT_LIMIT`]) with new
    /// validators (its SHA-256 among them).
    fn conditional(&self, url: &str, known: &Validators) -> Result<Conditional, String> {
        let mut request = self.agent.get(url);
        if let Some(etag) = &known.etag {
            request = request.header("If-None-Match", etag);
        }
        if let Some(date) = &known.last_modified {
            request = request.header("If-Modified-Since", date);
        }
        let mut response = match request.call() {
            Err(ureq::Error::StatusCode(404)) => return Ok(Conditional::Missing),
            other => other.map_err(|e| self.request_error(url, e))?,
        };
        if response.status().as_u16() == 304 {
            return Ok(Conditional::Unchanged);
        }
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let mut validators = Validators {
            etag: header("etag"),
            last_modified: header("last-modified"),
            ..Validators::default()
        };
        let mut bytes = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(DOCUMENT_LIMIT + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("the download of {url} broke off: {e}"))?;
        if bytes.len() as u64 > DOCUMENT_LIMIT {
            return Err(paths::too_large(url, DOCUMENT_LIMIT));
        }
        validators.sha256 = Some(sha256_hex(&bytes));
        Ok(Conditional::Body(bytes, validators))
    }

    /// A version's document (its CVL file), verified against the index's
    /// SHA-256 and size; at most [`DOCUMENT_LIMIT`] bytes.
    pub fn version_file(
        &self,
        location: &Location,
        version: u32,
        file: &FileEntry,
    ) -> Result<Vec<u8>, String> {
        let rel = version_file_path(version, &file.path);
        paths::check_relative(&rel)?;
        if file.size > DOCUMENT_LIMIT {
            return Err(paths::too_large(&location.file_name(&rel), DOCUMENT_LIMIT));
        }
        let bytes = match location {
            // The document limit bounds memory; a size that differs from the
            // index's fails the hash check below, which says so.
            Location::Dir(dir) => paths::read_inside(dir, &rel, DOCUMENT_LIMIT)?,
            Location::Http(base) => {
                let cached = self.settings.cache_dir().join("files").join(&file.sha256);
                if let Ok(bytes) = paths::read_limited(&cached, DOCUMENT_LIMIT) {
                    if sha256_hex(&bytes) == file.sha256 {
                        return Ok(bytes);
                    }
                }
                if self.settings.offline {
                    return Err(format!(
                        "{base}/{rel} is not in the cache, and --offline forbids downloading it"
                    ));
                }
                let bytes = self.get(&format!("{base}/{rel}"), DOCUMENT_LIMIT)?;
                if sha256_hex(&bytes) == file.sha256 {
                    let _ = crate::write_atomic(&cached, &bytes);
                }
                bytes
            }
        };
        let actual = sha256_hex(&bytes);
        if actual != file.sha256 {
            return Err(format!(
                "{} does not match the repository index (SHA-256 {actual}, index says {}): \
                 the repository has been tampered with or the download was cut short",
                location.file_name(&rel),
                file.sha256
            ));
        }
        Ok(bytes)
    }

    /// A file of a plain local folder (no index, no versions), read without
    /// leaving the folder.
    pub fn plain_file(&self, location: &Location, path: &str) -> Result<Vec<u8>, String> {
        match location {
            Location::Dir(dir) => paths::read_inside(dir, path, DOCUMENT_LIMIT),
            Location::Http(_) => unreachable!("web repositories always have an index"),
        }
    }

    /// Makes every file of `version` (and, for program disks, of the
    /// versions their backing chains reach) available locally, verified
    /// against the index's SHA-256, and returns the version's local folder.
    /// A web repository's files go to the cache, laid out like the
    /// repository so that backing paths (`../2/disk.qcow2`) resolve; an
    /// interrupted download resumes where it stopped.
    pub fn fetch_version(
        &self,
        location: &Location,
        index: &Index,
        version: u32,
    ) -> Result<PathBuf, String> {
        self.fetch_version_impl(location, index, version, false)
    }

    /// [`Fetcher::fetch_version`], but a local repository's files are
    /// copied into the cache too: what a host runs from must not change or
    /// vanish with someone else's folder.
    pub fn cache_version(
        &self,
        location: &Location,
        index: &Index,
        version: u32,
    ) -> Result<PathBuf, String> {
        self.fetch_version_impl(location, index, version, true)
    }

    fn fetch_version_impl(
        &self,
        location: &Location,
        index: &Index,
        version: u32,
        copy_local: bool,
    ) -> Result<PathBuf, String> {
        let cached_root = |key: &str| {
            self.settings
                .cache_dir()
                .join("repos")
                .join(sha256_hex(key.as_bytes()))
        };
        let root = match location {
            Location::Dir(_) if copy_local => cached_root(&location.url()),
            Location::Dir(dir) => dir.clone(),
            Location::Http(base) => self
                .settings
                .cache_dir()
                .join("repos")
                .join(sha256_hex(base.as_bytes())),
        };
        let mut pending = vec![version];
        let mut done = std::collections::HashSet::new();
        while let Some(n) = pending.pop() {
            if !done.insert(n) {
                continue;
            }
            let entry = index
                .version(n)
                .ok_or_else(|| format!("{} has no version {n}", location.display()))?;
            for file in &entry.files {
                let rel = version_file_path(n, &file.path);
                // Files this cache holds (not a local repository read in
                // place) carry a stamp once verified: a hit costs a stat.
                let cached = copy_local || matches!(location, Location::Http(_));
                // One writer per entry: others wait, then find it stamped.
                let mut _fill = None;
                if cached {
                    let local = paths::confined(&root, &rel)?;
                    if !self.stamp_matches(&local, file) {
                        _fill = Some(crate::fill::lock_entry(
                            &self.settings.cache_dir().join("locks"),
                            &local,
                            &location.file_name(&rel),
                            self.settings.fill_wait,
                        )?);
                    }
                    if self.stamp_matches(&local, file) {
                        if let Some(backing) = &file.backing {
                            pending.push(paths::check_backing(n, backing)?);
                        }
                        continue;
                    }
                    crate::fill::sweep_parts(&local);
                }
                let local = match location {
                    Location::Dir(dir) if copy_local => {
                        let source = paths::resolve_inside(dir, &rel)?;
                        let local = paths::confined(&root, &rel)?;
                        let cached_ok = crate::disk::hash_file(&local)
                            .is_ok_and(|(h, size)| h == file.sha256 && size == file.size);
                        if !cached_ok {
                            copy_file(&source, &local)?;
                        }
                        local
                    }
                    Location::Dir(dir) => paths::resolve_inside(dir, &rel)?,
                    Location::Http(base) => {
                        let local = paths::confined(&root, &rel)?;
                        let cached_ok = crate::disk::hash_file(&local)
                            .is_ok_and(|(h, size)| h == file.sha256 && size == file.size);
                        if !cached_ok {
                            if self.settings.offline {
                                return Err(format!("{base}/{rel} is not in the cache, and --offline forbids downloading it"));
                            }
                            let url = format!("{base}/{rel}");
                            let resumed = self.download(&url, &local, file.size)?;
                            // What an earlier writer left is never trusted:
                            // a resumed file that does not verify is
                            // downloaded whole once more.
                            if resumed
                                && !crate::disk::hash_file(&local)
                                    .is_ok_and(|(h, size)| h == file.sha256 && size == file.size)
                            {
                                let _ = std::fs::remove_file(&local);
                                self.download(&url, &local, file.size)?;
                            }
                        }
                        local
                    }
                };
                let refuse = |why: String| {
                    if matches!(location, Location::Http(_)) || copy_local {
                        let _ = std::fs::remove_file(&local);
                    }
                    Err(why)
                };
                let (actual, size) = crate::disk::hash_file(&local)?;
                if actual != file.sha256 || size != file.size {
                    return refuse(format!(
                        "{} does not match the repository index (SHA-256 {actual}, index says {}): \
                         the repository has been tampered with or the download was corrupted",
                        location.file_name(&rel),
                        file.sha256
                    ));
                }
                if file.backing.is_some() || crate::disk::is_qcow2(&local)? {
                    if let (Location::Dir(dir), false) = (location, copy_local) {
                        // The backing path resolves from where the disk really is.
                        let real_dir = paths::resolve_inside(dir, &format!("{VERSIONS_DIR}/{n}"))?;
                        if local.parent() != Some(real_dir.as_path()) {
                            return refuse(format!(
                                "{} is a symbolic link to another folder: a program disk must \
                                 be a plain file in its version's folder",
                                location.file_name(&rel)
                            ));
                        }
                    }
                    if let Err(e) = crate::disk::check_program_disk(&local, file.backing.as_deref())
                    {
                        return refuse(format!("{}: {e}", location.file_name(&rel)));
                    }
                }
                if cached {
                    self.write_stamp(&local, file);
                }
                if let Some(backing) = &file.backing {
                    pending.push(paths::check_backing(n, backing)?);
                }
            }
        }
        Ok(root.join(VERSIONS_DIR).join(version.to_string()))
    }

    /// Where the stamp of a cached file lives: outside the repository's own
    /// names, so no repository file can pose as one.
    fn stamp_path(&self, local: &Path) -> PathBuf {
        self.settings
            .cache_dir()
            .join("verified")
            .join(sha256_hex(local.as_os_str().as_encoded_bytes()))
    }

    fn stamp_of(local: &Path, file: &FileEntry) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(local).ok()?;
        Some(format!(
            "{} {} {} {} {}",
            file.sha256,
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ino()
        ))
    }

    /// Whether `local` is, to the nanosecond and inode, what was verified
    /// against `file` before (hash, size and, for a disk, its qcow2 checks).
    fn stamp_matches(&self, local: &Path, file: &FileEntry) -> bool {
        let (Some(now), Ok(stamp)) = (
            Self::stamp_of(local, file),
            std::fs::read_to_string(self.stamp_path(local)),
        ) else {
            return false;
        };
        now == stamp && now.split(' ').nth(1) == Some(&file.size.to_string())
    }

    fn write_stamp(&self, local: &Path, file: &FileEntry) {
        if let Some(stamp) = Self::stamp_of(local, file) {
            // Best effort: without a stamp the next hit is hashed again.
            let _ = crate::write_atomic(&self.stamp_path(local), stamp.as_bytes());
        }
    }

    /// Downloads `url` to `dest` through `dest.part`, resuming a previous
    /// partial download with an HTTP range request (then it returns `true`).
    /// The caller holds `dest`'s fill lock, so the partial file has one
    /// writer at a time. The index declared the
    /// file's `size`: a server that announces another length, or sends more,
    /// is refused at once and leaves nothing behind.
    fn download(&self, url: &str, dest: &Path, size: u64) -> Result<bool, String> {
        use std::io::Write;
        let part = dest.with_extension(format!(
            "{}part",
            dest.extension()
                .map(|e| format!("{}.", e.to_string_lossy()))
                .unwrap_or_default()
        ));
        if let Some(dir) = part.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let mut have = std::fs::metadata(&part).map_or(0, |m| m.len());
        if have >= size {
            let _ = std::fs::remove_file(&part);
            have = 0;
        }
        let mut request = self.agent.get(url);
        if have > 0 {
            request = request.header("Range", &format!("bytes={have}-"));
        }
        let mut response = request.call().map_err(|e| self.request_error(url, e))?;
        let resumed = have > 0 && response.status().as_u16() == 206;
        let start = if resumed { have } else { 0 };
        let refuse = |why: String| {
            let _ = std::fs::remove_file(&part);
            Err(format!("{url}: {why}; refused, and nothing of it was kept"))
        };
        if let Some(length) = content_length(&response) {
            if length != size - start {
                return refuse(format!(
                    "the server announces {length} bytes where the repository index declares {}",
                    size - start
                ));
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(resumed)
            .write(true)
            .truncate(!resumed)
            .open(&part)
            .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        // One byte more than allowed tells a body that is too long.
        let mut reader = response.body_mut().as_reader().take(size - start + 1);
        let copied = std::io::copy(&mut reader, &mut file);
        file.flush()
            .and_then(|_| file.sync_all())
            .map_err(|e| e.to_string())?;
        let copied = copied.map_err(|e| {
            format!("the download of {url} broke off ({e}); run the command again to resume it")
        })?;
        if start + copied > size {
            return refuse(format!(
                "the server sent more than the {size} bytes the repository index declares"
            ));
        }
        if start + copied < size {
            return Err(format!(
                "the download of {url} broke off ({} of {size} bytes); run the command again to resume it",
                start + copied
            ));
        }
        std::fs::rename(&part, dest).map_err(|e| {
            format!(
                "cannot rename {} to {}: {e}",
                part.display(),
                dest.display()
            )
        })?;
        Ok(resumed)
    }

    fn index_cache_path(&self, url: &str) -> PathBuf {
        self.settings
            .cache_dir()
            .join("index")
            .join(format!("{}.json", sha256_hex(url.as_bytes())))
    }

    fn request_error(&self, url: &str, e: ureq::Error) -> String {
        // Keep the wording `is_unreachable` recognizes.
        let secs = self.settings.timeout.as_secs_f64();
        match e {
            ureq::Error::StatusCode(code) => format!("{url} answered HTTP {code}"),
            ureq::Error::Timeout(_) => format!("{url} did not answer within {secs:.0} s"),
            ureq::Error::Io(io) => format!("cannot reach {url}: {io}"),
            other => format!("cannot fetch {url}: {other}"),
        }
    }

    /// A document of at most `limit` bytes, held in memory: refused as soon
    /// as the server announces or sends more.
    fn get(&self, url: &str, limit: u64) -> Result<Vec<u8>, String> {
        self.get_optional(url, limit)?
            .ok_or_else(|| format!("{url} answered HTTP 404"))
    }

    /// [`Fetcher::get`], but a document the server does not have (`404`)
    /// is `None`.
    pub(crate) fn get_optional(&self, url: &str, limit: u64) -> Result<Option<Vec<u8>>, String> {
        let secs = self.settings.timeout.as_secs_f64();
        let mut response = match self.agent.get(url).call() {
            Err(ureq::Error::StatusCode(404)) => return Ok(None),
            other => other.map_err(|e| self.request_error(url, e))?,
        };
        let expected = content_length(&response);
        if expected.is_some_and(|n| n > limit) {
            return Err(paths::too_large(url, limit));
        }
        let mut bytes = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::TimedOut => format!("{url} stopped sending within {secs:.0} s"),
                _ => format!("the download of {url} broke off: {e}"),
            })?;
        if bytes.len() as u64 > limit {
            return Err(paths::too_large(url, limit));
        }
        if let Some(expected) = expected {
            if bytes.len() as u64 != expected {
                return Err(format!(
                    "the download of {url} was cut short ({} of {expected} bytes)",
                    bytes.len()
                ));
            }
        }
        Ok(Some(bytes))
    }
}

/// Copies `from` to `to` through a temporary file of this writer's own,
/// synced, then renamed; an error names the step and the path that failed.
fn copy_file(from: &Path, to: &Path) -> Result<(), String> {
    let dir = to.parent().expect("a file in a folder");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = crate::fill::unique_part(to);
    let result = (|| {
        let mut input = std::fs::File::open(from)
            .map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        let mut output = std::fs::File::create(&tmp)
            .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
        std::io::copy(&mut input, &mut output)
            .and_then(|_| output.sync_all())
            .map_err(|e| format!("cannot copy {} to {}: {e}", from.display(), tmp.display()))?;
        std::fs::rename(&tmp, to)
            .map_err(|e| format!("cannot rename {} to {}: {e}", tmp.display(), to.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| format!("cannot copy a repository file into the cache: {e}"))
}

fn content_length(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Whether a fetch error says the server could not be reached at all (no
/// connection, no answer), as opposed to an answer that was wrong: what
/// makes a copy (a mirror, files sent by the executor) worth trying.
pub fn is_unreachable(error: &str) -> bool {
    error.contains("cannot reach ") || error.contains(" did not answer within ")
}
