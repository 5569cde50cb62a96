//! Settings for loading imports: the utility home (cache), URL mirrors,
//! offline mode and network timeouts.

use std::path::PathBuf;
use std::time::Duration;

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
            blacklist: Default::default(),
        }
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
