//! Settings for loading imports: the utility home (cache), URL mirrors,
//! offline mode and network timeouts; and the workspace settings file,
//! `cvl.toml`, found by walking up from the file being read (as cargo
//! finds `.cargo/config.toml`), which holds mirrors a project shares.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The workspace settings file's name.
pub const WORKSPACE_FILE: &str = "cvl.toml";

/// What a `cvl.toml` holds, as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceSettings {
    pub path: PathBuf,
    /// `[mirrors]`, in file order, relative targets made absolute.
    pub mirrors: Vec<Mirror>,
    /// `[trust]`: the root.json an administrator pins for a repository (by
    /// the URL imports write), relative paths made absolute.
    pub trust: Vec<(String, PathBuf)>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkspaceFile {
    #[serde(default)]
    mirrors: toml::Table,
    #[serde(default)]
    trust: toml::Table,
}

/// The nearest `cvl.toml` in `start` (a file's folder, or the file itself)
/// or a parent folder, parsed; an error names the file and what is wrong.
pub fn find_workspace_settings(start: &Path) -> Result<Option<WorkspaceSettings>, String> {
    let start = std::path::absolute(start).map_err(|e| format!("{}: {e}", start.display()))?;
    let mut dir = if start.is_dir() {
        Some(start.as_path())
    } else {
        start.parent()
    };
    while let Some(d) = dir {
        let path = d.join(WORKSPACE_FILE);
        if path.is_file() {
            return read_workspace_settings(&path).map(Some);
        }
        dir = d.parent();
    }
    Ok(None)
}

fn read_workspace_settings(path: &Path) -> Result<WorkspaceSettings, String> {
    let bytes = crate::paths::read_limited(path, crate::paths::DOCUMENT_LIMIT)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", path.display()))?;
    let file: WorkspaceFile = toml::from_str(&text).map_err(|e| {
        format!(
            "{}: {} (it holds `[mirrors]` entries like \"http://virtualappliance.org/\" = \"repos/\")",
            path.display(),
            e.to_string().trim_end()
        )
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut mirrors = Vec::new();
    for (from, to) in file.mirrors {
        let Some(to) = to.as_str() else {
            return Err(format!(
                "{}: the mirror of `{from}` must be a string (a folder relative to this file, or a URL)",
                path.display()
            ));
        };
        if from.is_empty() || to.is_empty() {
            return Err(format!(
                "{}: the mirror `{from}` has an empty side",
                path.display()
            ));
        }
        let to = if to.contains("://") {
            to.to_string()
        } else {
            // A folder relative to the settings file; keep a trailing slash.
            let joined = dir.join(to);
            let mut t = format!("file://{}", joined.display());
            if to.ends_with('/') && !t.ends_with('/') {
                t.push('/');
            }
            t
        };
        mirrors.push(Mirror { from, to });
    }
    let mut trust = Vec::new();
    for (url, root) in file.trust {
        let Some(root) = root.as_str().filter(|r| !r.is_empty()) else {
            return Err(format!(
                "{}: the trusted root of `{url}` must be the path of a root.json (relative to \
                 this file)",
                path.display()
            ));
        };
        trust.push((url, dir.join(root)));
    }
    Ok(WorkspaceSettings {
        path: path.to_path_buf(),
        mirrors,
        trust,
    })
}

/// Maps every URL that starts with `from` to the same URL starting with `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub from: String,
    pub to: String,
}

impl Mirror {
    /// Parses `FROM=TO`.
    pub fn parse(text: &str) -> Result<Mirror, String> {
        let (from, to) = text.split_once('=').ok_or_else(|| {
            format!("mirror `{text}` is not FROM=TO (e.g. http://virtualappliance.org/=file:///srv/repos/)")
        })?;
        if from.is_empty() || to.is_empty() {
            return Err(format!("mirror `{text}` has an empty side"));
        }
        Ok(Mirror {
            from: from.to_string(),
            to: to.to_string(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// The utility home: the download cache lives in `home/cache`.
    pub home: PathBuf,
    pub mirrors: Vec<Mirror>,
    /// Use only what is cached; never touch the network.
    pub offline: bool,
    /// How long one HTTP request may take in all.
    pub timeout: Duration,
    /// The administrator's blacklist (from the home).
    pub blacklist: crate::blacklist::Blacklist,
    /// The `cvl.toml` whose mirrors were added, for messages.
    pub workspace_file: Option<PathBuf>,
    /// How long a fill of the cache waits for another writer of the same
    /// entry (see [`crate::fill`]).
    pub fill_wait: Duration,
    /// Signed repositories: where trust in each starts, and what was
    /// verified, shared by every reader made from these settings.
    pub trust: std::sync::Arc<crate::trust::Table>,
    /// Roots pinned by a `cvl.toml`'s `[trust]` table: import URL to a
    /// root.json.
    pub anchors: std::collections::BTreeMap<String, PathBuf>,
}

impl Settings {
    /// The defaults: `$CVL_HOME`, else `~/.cvl`; mirrors from `$CVL_MIRRORS`
    /// (`FROM=TO` pairs separated by `;`); a 30 s timeout.
    pub fn from_env() -> Result<Settings, String> {
        let mut mirrors = Vec::new();
        if let Ok(text) = std::env::var("CVL_MIRRORS") {
            for part in text.split(';').filter(|p| !p.trim().is_empty()) {
                mirrors.push(Mirror::parse(part.trim())?);
            }
        }
        let home = default_home();
        Ok(Settings {
            blacklist: crate::blacklist::Blacklist::load(&home)?,
            mirrors,
            ..Settings::plain(home)
        })
    }

    /// Settings with nothing configured: no mirrors, no blacklist, online,
    /// a 30 s timeout, the cache in `home`.
    pub fn plain(home: PathBuf) -> Settings {
        Settings {
            home,
            mirrors: Vec::new(),
            offline: false,
            timeout: Duration::from_secs(30),
            fill_wait: crate::fill::DEFAULT_WAIT,
            blacklist: Default::default(),
            workspace_file: None,
            trust: Default::default(),
            anchors: Default::default(),
        }
    }

    /// Adds the mirrors of the `cvl.toml` nearest to `start`, after those
    /// of the command line and the environment (which win).
    pub fn with_workspace(mut self, start: &Path) -> Result<Settings, String> {
        if let Some(ws) = find_workspace_settings(start)? {
            self.mirrors.extend(ws.mirrors);
            self.anchors.extend(ws.trust);
            self.workspace_file = Some(ws.path);
        }
        Ok(self)
    }

    /// `url` after the first mirror whose prefix matches.
    pub fn map_url(&self, url: &str) -> String {
        for mirror in &self.mirrors {
            if let Some(rest) = url.strip_prefix(&mirror.from) {
                return format!("{}{rest}", mirror.to);
            }
        }
        url.to_string()
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.home.join("cache")
    }
}

pub fn default_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CVL_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    let user_home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    user_home.join(".cvl")
}
