//! The version an upgrade is tested from (`cvl test --previous
//! REPO[@VERSION]`): what the option says, and the version's files once the
//! caller has fetched and verified them (as `cvl repo fetch` does: any
//! repository a reader takes, signed or not, on this machine or a web
//! server), which the test publishes into its own repository.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// `--previous REPO[@VERSION]`, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// A folder, or a repository URL (file://, http://, https://).
    pub repo: String,
    /// `None`: the newest.
    pub version: Option<u32>,
}

impl Wanted {
    pub fn parse(text: &str) -> Result<Wanted> {
        let (repo, version) = match text.rsplit_once('@') {
            Some((repo, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                let v: u32 = v
                    .parse()
                    .with_context(|| format!("--previous: `{v}` is not a version number"))?;
                if v == 0 {
                    bail!("--previous {text}: versions count from 1");
                }
                (repo, Some(v))
            }
            _ => (text, None),
        };
        if repo.is_empty() {
            bail!("--previous: name a repository (`--previous repos/DNS`, `--previous http://repos.example.org/DNS@3`)");
        }
        Ok(Wanted {
            repo: repo.to_string(),
            version,
        })
    }
}

/// The version an upgrade is tested from: its files, verified, in a
/// folder of this machine.
#[derive(Debug, Clone)]
pub struct Previous {
    /// The version's folder: its CVL file and program disks (backing files
    /// where their chains say).
    pub dir: PathBuf,
    pub version: u32,
    /// What the report and the manifest call it: `REPO@N`.
    pub label: String,
}

impl Previous {
    /// The version's CVL file for the appliance `name`.
    pub(super) fn file(&self, name: &str) -> Result<PathBuf> {
        let file = self.dir.join(format!("{name}.cvl"));
        if !file.is_file() {
            bail!(
                "{} holds no {name}.cvl: is it a version of {name}? (--previous names the \
                 repository of the appliance under test)",
                self.label
            );
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_follows_the_last_at() {
        let w = Wanted::parse("http://user@repos.example.org/DNS@3").unwrap();
        assert_eq!(w.repo, "http://user@repos.example.org/DNS");
        assert_eq!(w.version, Some(3));
        let w = Wanted::parse("repos/DNS").unwrap();
        assert_eq!((w.repo.as_str(), w.version), ("repos/DNS", None));
        let w = Wanted::parse("http://user@repos.example.org/DNS").unwrap();
        assert_eq!(w.version, None, "`@repos...` is not a version");
        assert!(Wanted::parse("repos/DNS@0").is_err());
        assert!(Wanted::parse("@2").is_err());
    }
}
