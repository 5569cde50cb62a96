//! `cvl history` (who or what did what to a deployment, when, from which
//! version to which, and how it went: the utility service's automatic
//! actions and people's applies alike) and `cvl policy` (what the service
//! may do to a deployment by itself).

use std::process::ExitCode;

use anyhow::{bail, Result};
use cvl_planner::model::Policy;

use cvl_utility::decide;

use crate::render;
use crate::render::ListFormat;

#[derive(clap::Args)]
pub struct HistoryArgs {
    /// Only this deployment's (default: every deployment's).
    pub deployment: Option<String>,
    /// At most this many entries, the newest.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: u32,
    /// Output: for people, or JSON for scripts.
    #[arg(long, value_enum, default_value_t = ListFormat::Human)]
    pub format: ListFormat,
}

pub fn history(args: HistoryArgs) -> Result<ExitCode> {
    let mut store = cvl_ops::state::open()?;
    let entries = store.history(args.deployment.as_deref(), args.limit)?;
    if args.format == ListFormat::Json {
        render::print_json(&serde_json::json!({
            "format_version": "1",
            "entries": entries,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        match &args.deployment {
            Some(d) => println!("nothing recorded for {d}"),
            None => println!("nothing recorded yet"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    for e in &entries {
        let versions = match (e.from_version, e.to_version) {
            (Some(a), Some(b)) => format!(" {a} -> {b}"),
            (None, Some(b)) => format!(" version {b}"),
            (Some(a), None) => format!(" from {a}"),
            (None, None) => String::new(),
        };
        let what = if e.component.is_empty() {
            e.deployment.clone()
        } else {
            format!("{}/{}", e.deployment, e.component)
        };
        println!(
            "{}  {:<8} {what}{versions}: {} by {}",
            e.at, e.action, e.outcome, e.actor
        );
        if !e.detail.is_empty() {
            println!("    {}", e.detail.replace('\n', "\n    "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Show each deployment's policy (or one's).
    Show {
        /// Only this deployment's (default: every deployment's).
        deployment: Option<String>,
        /// Output: for people, or JSON for scripts.
        #[arg(long, value_enum, default_value_t = ListFormat::Human)]
        format: ListFormat,
    },
    /// Change what the utility service may do to a deployment by itself.
    #[command(after_help = "Examples:\n  cvl policy set AcmeSuite --auto off\n  \
        cvl policy set AcmeSuite --window 02:00-04:00\n  \
        cvl policy set AcmeSuite --backup-every 1h --backup-to /srv/cvl-backups --keep-last 24 \
        --keep-daily 7\n  \
        cvl policy set AcmeSuite --backup-every off")]
    Set {
        /// The deployment (as `cvl status` names it).
        deployment: String,
        /// Updates and resends taken automatically (`on`), or left for a
        /// person (`off`).
        #[arg(long, value_parser = on_off)]
        auto: Option<bool>,
        /// Only inside this daily window, UTC (`02:00-04:00`; it may wrap
        /// past midnight); `none` for any time.
        #[arg(long, value_name = "HH:MM-HH:MM|none")]
        window: Option<String>,
        /// Start again an appliance whose QEMU crashed (`on`, the default:
        /// at any time, with back-off, given up after 5 crashes in a
        /// minute), or leave it for a person (`off`).
        #[arg(long, value_parser = on_off)]
        restart: Option<bool>,
        /// Take updates from repositories nobody signed too (`on`), or
        /// leave them for a person (`off`, the default).
        #[arg(long, value_parser = on_off)]
        allow_unsigned: Option<bool>,
        /// Back up the deployment's data disks this often (`1h`, `30m`,
        /// `1day`; at least 1 s), live, one appliance at a time, never during
        /// its update; `off` to stop. Needs --backup-to the first time.
        #[arg(long, value_name = "DURATION|off")]
        backup_every: Option<String>,
        /// The backup store the service's backups go to (as `cvl backup
        /// --to`: an absolute folder on the appliances' hosts, or
        /// `ssh://HOST/DIR` on a registered host).
        #[arg(long, value_name = "DIR|URL")]
        backup_to: Option<String>,
        /// After each backup keep only the newest N restore points (and
        /// what --keep-daily keeps); `all` for no limit.
        #[arg(long, value_name = "N|all")]
        keep_last: Option<String>,
        /// After each backup keep the newest restore point of each of the
        /// newest N days (and what --keep-last keeps); `all` for no limit.
        #[arg(long, value_name = "N|all")]
        keep_daily: Option<String>,
    },
}

fn on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("`{text}`: say on or off")),
    }
}

pub fn policy(command: PolicyCommand) -> Result<ExitCode> {
    let mut store = cvl_ops::state::open()?;
    let state = store.load()?;
    match command {
        PolicyCommand::Show { deployment, format } => {
            let rows: Vec<(&String, &Policy)> = state
                .deployments
                .iter()
                .filter(|(name, _)| deployment.as_ref().is_none_or(|d| d == *name))
                .map(|(name, d)| (name, &d.policy))
                .collect();
            if let (Some(d), true) = (&deployment, rows.is_empty()) {
                bail!("no deployment named {d} in the state (see `cvl status`)");
            }
            let minute = decide::minute_of_day(std::time::SystemTime::now());
            if format == ListFormat::Json {
                let json: serde_json::Map<String, serde_json::Value> = rows
                    .iter()
                    .map(|(n, p)| {
                        let mut value = serde_json::to_value(p).unwrap_or_default();
                        value["updates"] = decide::runs_when(p, minute).into();
                        ((*n).clone(), value)
                    })
                    .collect();
                render::print_json(&serde_json::Value::Object(json))?;
            } else {
                for (name, policy) in rows {
                    println!("{name}: {policy}; {}", decide::runs_when(policy, minute));
                }
            }
        }
        PolicyCommand::Set {
            deployment,
            auto,
            window,
            restart,
            allow_unsigned,
            backup_every,
            backup_to,
            keep_last,
            keep_daily,
        } => {
            let Some(d) = state.deployments.get(&deployment) else {
                bail!(
                    "no deployment named {deployment} in the state (it has: {})",
                    state
                        .deployments
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            let policy = cvl_ops::policy::PolicyChange {
                auto,
                window,
                restart,
                allow_unsigned,
                backup_every,
                backup_to,
                keep_last,
                keep_daily,
            }
            .apply(&d.policy)?;
            store.commit(&[cvl_planner::Change::PolicySet {
                deployment: deployment.clone(),
                policy: policy.clone(),
            }])?;
            let minute = decide::minute_of_day(std::time::SystemTime::now());
            println!(
                "{deployment}: {policy}; {}",
                decide::runs_when(&policy, minute)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
