//! The utility administrator's blacklist (paper §5): repository URLs and the
//! versions of them that must not be run, kept in `$CVL_HOME/blacklist.json`.
//! `cvl check` reports imports that resolve to a blacklisted version, naming
//! the newest version that is allowed.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::index::Index;

/// Versions: `3`, `1-4`, `5-` (5 and later), `-3` (up to 3), `*` (all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    pub from: u32,
    pub to: u32,
}

impl VersionRange {
    pub fn parse(text: &str) -> Result<VersionRange, String> {
        let number = |s: &str| -> Result<u32, String> {
            s.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("`{s}` is not a version number (1, 2, ...)"))
        };
        let text = text.trim();
        let range = if text == "*" {
            VersionRange {
                from: 1,
                to: u32::MAX,
            }
        } else if let Some((a, b)) = text.split_once('-') {
            let from = if a.trim().is_empty() { 1 } else { number(a)? };
            let to = if b.trim().is_empty() {
                u32::MAX
            } else {
                number(b)?
            };
            VersionRange { from, to }
        } else {
            let n = number(text)?;
            VersionRange { from: n, to: n }
        };
        if range.from > range.to {
            return Err(format!("`{text}` is an empty range"));
        }
        Ok(range)
    }

    pub fn contains(&self, version: u32) -> bool {
        (self.from..=self.to).contains(&version)
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.from, self.to) {
            (1, u32::MAX) => write!(f, "*"),
            (a, b) if a == b => write!(f, "{a}"),
            (a, u32::MAX) => write!(f, "{a}-"),
            (a, b) => write!(f, "{a}-{b}"),
        }
    }
}

impl Serialize for VersionRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for VersionRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        VersionRange::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The repository URL, as imports write it.
    pub url: String,
    pub versions: VersionRange,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// RFC 3339, UTC.
    pub added: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Blacklist {
    #[serde(default)]
    pub entries: Vec<Entry>,
}

fn normalize(url: &str) -> &str {
    url.trim_end_matches('/')
}

impl Blacklist {
    pub fn path(home: &Path) -> PathBuf {
        home.join("blacklist.json")
    }

    /// The blacklist in `home`; none is an empty one.
    pub fn load(home: &Path) -> Result<Blacklist, String> {
        crate::read_json(&Self::path(home), "blacklist", "fix or remove it")
    }

    pub fn save(&self, home: &Path) -> Result<(), String> {
        crate::write_json(&Self::path(home), self)
    }

    pub fn add(&mut self, url: &str, versions: VersionRange, reason: Option<String>) {
        self.entries.push(Entry {
            url: normalize(url).to_string(),
            versions,
            reason,
            added: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        });
    }

    /// Removes the entries for `url` (only those of `versions` when given);
    /// returns how many went.
    pub fn remove(&mut self, url: &str, versions: Option<VersionRange>) -> usize {
        let before = self.entries.len();
        self.entries
            .retain(|e| !(e.url == normalize(url) && versions.is_none_or(|v| v == e.versions)));
        before - self.entries.len()
    }

    /// The entry that bars `version` of `url`, if any.
    pub fn bars(&self, url: &str, version: u32) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.url == normalize(url) && e.versions.contains(version))
    }

    /// The newest version of the repository that is not barred.
    pub fn newest_allowed(&self, url: &str, index: &Index) -> Option<u32> {
        index
            .versions
            .iter()
            .rev()
            .map(|v| v.version)
            .find(|&v| self.bars(url, v).is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        for (text, inside, outside, shown) in [
            ("3", 3, 4, "3"),
            ("1-4", 4, 5, "1-4"),
            ("5-", 99, 4, "5-"),
            ("-3", 1, 4, "1-3"),
            ("*", 7, 0, "*"),
        ] {
            let r = VersionRange::parse(text).unwrap();
            assert!(r.contains(inside) && !r.contains(outside), "{text}");
            assert_eq!(r.to_string(), shown);
        }
        assert!(VersionRange::parse("4-2").is_err());
        assert!(VersionRange::parse("0").is_err());
        assert!(VersionRange::parse("x").is_err());
    }
}
