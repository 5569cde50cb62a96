//! Program files sent by the executor to hosts that cannot fetch them
//! themselves: a `file://` repository or a folder on this machine means
//! nothing to another host. [`Staging`] lists what a program needs (a
//! repository's index and the files of the version and its backing chain,
//! or a folder's files), each with its SHA-256; the host is asked which it
//! lacks and gets only those, in pieces, verifying each whole file before
//! putting it in place, so a program reaches a host once.

use std::path::{Path, PathBuf};

use cvl_repo::index::INDEX_FILE;

use crate::protocol::{Incoming, ProgramSource};

/// What a program needs on a host, and where this machine has it.
#[derive(Debug, Clone)]
pub struct Staging {
    /// The folder under `ROOT/incoming` (from the source's identity).
    pub name: String,
    /// A repository's version; `None` for a folder.
    pub version: Option<u32>,
    pub files: Vec<(Incoming, PathBuf)>,
}

impl Staging {
    /// The program source a host uses once the files are there.
    pub fn source(&self) -> ProgramSource {
        ProgramSource::Staged {
            name: self.name.clone(),
            version: self.version,
        }
    }

    /// A repository in the folder `dir` on this machine: its index, and
    /// every file `version` needs.
    pub fn repository(url: &str, dir: &Path, version: u32) -> Result<Staging, String> {
        let name = format!("repo-{}", &sha256_hex(url.as_bytes())[..16]);
        let settings = cvl_repo::Settings::plain(std::env::temp_dir());
        let fetcher = cvl_repo::Fetcher::new(settings);
        let location = cvl_repo::Location::Dir(dir.to_path_buf());
        let index = fetcher
            .index(&location)?
            .ok_or_else(|| format!("{} is not a repository", dir.display()))?;
        let mut files = vec![local_file(&name, INDEX_FILE, &dir.join(INDEX_FILE))?];
        for (rel, entry) in index.files_with_backing(version)? {
            let local = cvl_repo::paths::resolve_inside(dir, &rel)?;
            files.push((
                Incoming {
                    dest: format!("{name}/{rel}"),
                    sha256: entry.sha256,
                    size: entry.size,
                },
                local,
            ));
        }
        Ok(Staging {
            name,
            version: Some(version),
            files,
        })
    }

    /// A folder holding a VM description and its files (not its
    /// subfolders, nor hidden files).
    pub fn folder(dir: &Path) -> Result<Staging, String> {
        let name = format!(
            "dir-{}",
            &sha256_hex(dir.as_os_str().as_encoded_bytes())[..16]
        );
        let mut files = Vec::new();
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('.') || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            files.push(local_file(&name, &file_name, &entry.path())?);
        }
        files.sort_by(|a, b| a.0.dest.cmp(&b.0.dest));
        Ok(Staging {
            name,
            version: None,
            files,
        })
    }
}

/// A program a host was to fetch from a web repository it cannot reach
/// (a repository on this machine's network only, a host without a route to
/// it): this machine downloads the version once into its own cache,
/// verified as every download is, lays it out as the repository, and sends
/// it like a local repository's. Built on first need, shared by every host.
pub struct WebFallback {
    url: String,
    version: u32,
    settings: cvl_repo::Settings,
    built: std::sync::OnceLock<Result<std::sync::Arc<Staging>, String>>,
}

impl WebFallback {
    /// `url` is the repository's URL after mirrors; `settings` give this
    /// machine's cache and timeouts.
    pub fn new(url: String, version: u32, settings: cvl_repo::Settings) -> WebFallback {
        WebFallback {
            url,
            version,
            settings,
            built: std::sync::OnceLock::new(),
        }
    }

    pub fn staging(&self) -> Result<std::sync::Arc<Staging>, String> {
        self.built
            .get_or_init(|| self.build().map(std::sync::Arc::new))
            .clone()
    }

    fn build(&self) -> Result<Staging, String> {
        let fetcher = cvl_repo::Fetcher::new(self.settings.clone());
        let location = cvl_repo::Location::parse(&self.url, None)?;
        let index = fetcher
            .index(&location)?
            .ok_or_else(|| format!("{} is not a repository", self.url))?;
        let version_dir = fetcher.cache_version(&location, &index, self.version)?;
        // The cache keeps the repository's layout: ROOT/versions/N.
        let root = version_dir
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| format!("{} is not in a repository layout", version_dir.display()))?;
        let json = serde_json::to_vec_pretty(&index).map_err(|e| e.to_string())?;
        cvl_repo::write_atomic(&root.join(INDEX_FILE), &json)
            .map_err(|e| format!("cannot write {}: {e}", root.join(INDEX_FILE).display()))?;
        Staging::repository(&self.url, root, self.version)
    }
}

fn local_file(name: &str, rel: &str, path: &Path) -> Result<(Incoming, PathBuf), String> {
    let (sha256, size) = cvl_repo::disk::hash_file(path)?;
    Ok((
        Incoming {
            dest: format!("{name}/{rel}"),
            sha256,
            size,
        },
        path.to_path_buf(),
    ))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
