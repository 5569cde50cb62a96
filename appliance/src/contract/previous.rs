//! The version an upgrade is tested from (`cvl test --previous
//! REPO[@VERSION]`): a version of a repository on this machine, as its
//! publisher has it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// The version an upgrade is tested from: a version of the publisher's
/// repository (a folder, or `file://`).
#[derive(Debug, Clone)]
pub struct Previous {
    pub repo: PathBuf,
    pub version: u32,
}

impl Previous {
    /// `REPO[@VERSION]`: the newest version when none is named.
    pub fn parse(text: &str) -> Result<Previous> {
        let (repo, version) = match text.rsplit_once('@') {
            Some((repo, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                let v: u32 = v
                    .parse()
                    .with_context(|| format!("--previous: `{v}` is not a version number"))?;
                (repo, Some(v))
            }
            _ => (text, None),
        };
        if repo.starts_with("http://") || repo.starts_with("https://") {
            bail!(
                "--previous {text}: only a repository on this machine (a folder or file://) is \
                 taken for now; fetch a copy (`cvl repo` tooling, rsync) and name its folder"
            );
        }
        let repo = PathBuf::from(repo.strip_prefix("file://").unwrap_or(repo));
        if !repo.join("cvl-repository.json").is_file() {
            bail!(
                "--previous {text}: {} is not a repository (no cvl-repository.json): name the \
                 folder `cvl repo create` made and `cvl publish` publishes into",
                repo.display()
            );
        }
        let versions: Vec<u32> = std::fs::read_dir(repo.join("versions"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let version = match version {
            Some(v) if versions.contains(&v) => v,
            Some(v) => bail!(
                "--previous {text}: {} has no version {v} (it has {})",
                repo.display(),
                if versions.is_empty() {
                    "none".to_string()
                } else {
                    let mut v = versions.clone();
                    v.sort_unstable();
                    v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                }
            ),
            None => *versions.iter().max().with_context(|| {
                format!("--previous {text}: {} has no version yet", repo.display())
            })?,
        };
        Ok(Previous {
            repo: std::path::absolute(repo)?,
            version,
        })
    }

    /// The version's CVL file for the appliance `name`.
    pub(super) fn file(&self, name: &str) -> PathBuf {
        self.repo
            .join("versions")
            .join(self.version.to_string())
            .join(format!("{name}.cvl"))
    }
}
