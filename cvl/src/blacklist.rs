//! `cvl blacklist add|list|rm`: the administrator's list of repository
//! versions that must not be run. `cvl check` reports imports that resolve to
//! one as `blacklisted-version`.

use std::process::ExitCode;

use anyhow::{bail, Result};
use cvl_repo::blacklist::{Blacklist, VersionRange};

use crate::render::ListFormat;

#[derive(clap::Subcommand)]
pub enum BlacklistCommand {
    /// Bar versions of a repository.
    #[command(
        after_help = "VERSIONS is one version (3), a range (1-4), an open range (5- or -3), or * for all.\n\
        Example: cvl blacklist add http://virtualappliance.org/DNS 1-2 --reason \"CVE-2003-0001\""
    )]
    Add {
        /// The repository URL, as imports write it.
        url: String,
        /// The versions to bar: 3, 1-4, 5-, -3 or *.
        #[arg(value_parser = VersionRange::parse)]
        versions: VersionRange,
        /// Why, shown to users whose check it fails.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Show the blacklist.
    List {
        /// Output: for people, or JSON for scripts.
        #[arg(long, value_enum, default_value_t = ListFormat::Human)]
        format: ListFormat,
    },
    /// Every appliance the state records running a version the blacklist
    /// bars (the paper's administrator query); exit code 1 when there is any.
    #[command(
        after_help = "The utility service (`cvl utility run`) updates such an appliance to the \
        newest allowed version by itself; when no version is allowed it reports it, and with \
        --enforce-blacklist stops it."
    )]
    Violations {
        /// Output: for people, or JSON for scripts.
        #[arg(long, value_enum, default_value_t = ListFormat::Human)]
        format: ListFormat,
    },
    /// Lift a bar: every entry of the URL, or only the one for VERSIONS.
    Rm {
        /// The repository URL, as the entry names it.
        url: String,
        /// Only the entry for these versions (as `cvl blacklist list` shows them).
        #[arg(value_parser = VersionRange::parse)]
        versions: Option<VersionRange>,
    },
}

pub fn run(command: BlacklistCommand) -> Result<ExitCode> {
    let home = cvl_repo::settings::default_home();
    let mut list = Blacklist::load(&home).map_err(anyhow::Error::msg)?;
    match command {
        BlacklistCommand::Add {
            url,
            versions,
            reason,
        } => {
            if !(url.starts_with("file://")
                || url.starts_with("http://")
                || url.starts_with("https://"))
            {
                bail!("`{url}` is not a repository URL: use file://, http:// or https://");
            }
            list.add(&url, versions, reason);
            list.save(&home).map_err(anyhow::Error::msg)?;
            eprintln!("barred versions {versions} of {url}");
        }
        BlacklistCommand::Violations { format } => {
            let state = cvl_ops::state::open()?.load()?;
            let found = cvl_utility::decide::violations(&state, &list);
            if format == ListFormat::Json {
                let rows: Vec<serde_json::Value> = found
                    .iter()
                    .map(|v| {
                        serde_json::json!({
                            "deployment": v.deployment, "component": v.component.0,
                            "url": v.url, "version": v.version, "reason": v.reason,
                        })
                    })
                    .collect();
                crate::render::print_json(&serde_json::Value::Array(rows))?;
            } else if found.is_empty() {
                println!("no appliance runs a barred version");
            } else {
                for v in &found {
                    println!(
                        "{}/{}  version {} of {}{}",
                        v.deployment,
                        v.component.0,
                        v.version,
                        v.url,
                        v.reason
                            .as_ref()
                            .map(|r| format!("  ({r})"))
                            .unwrap_or_default()
                    );
                }
            }
            if !found.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        BlacklistCommand::List { format } => {
            if format == ListFormat::Json {
                crate::render::print_json(&serde_json::to_value(&list)?)?;
            } else if list.entries.is_empty() {
                println!("the blacklist is empty");
            } else {
                let width = |f: fn(&cvl_repo::blacklist::Entry) -> String| {
                    list.entries
                        .iter()
                        .map(|e| f(e).chars().count())
                        .max()
                        .unwrap_or(0)
                };
                let (url_w, ver_w) = (width(|e| e.url.clone()), width(|e| e.versions.to_string()));
                for e in &list.entries {
                    let reason = e
                        .reason
                        .as_deref()
                        .map(|r| format!("  ({r})"))
                        .unwrap_or_default();
                    println!(
                        "{:<url_w$}  versions {:<ver_w$}  added {}{reason}",
                        e.url,
                        e.versions.to_string(),
                        e.added
                    );
                }
            }
        }
        BlacklistCommand::Rm { url, versions } => {
            let removed = list.remove(&url, versions);
            if removed == 0 {
                bail!(
                    "nothing on the blacklist matches {url}{}",
                    versions.map(|v| format!(" {v}")).unwrap_or_default()
                );
            }
            list.save(&home).map_err(anyhow::Error::msg)?;
            eprintln!(
                "lifted {removed} entr{} for {url}",
                if removed == 1 { "y" } else { "ies" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
