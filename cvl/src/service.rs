//! `cvl utility run`: the utility service's arguments, handed to
//! `cvl-service` (the loop, its decisions in `cvl-utility`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

#[derive(clap::Subcommand)]
pub enum UtilityCommand {
    /// Run the utility service in the foreground (for systemd; see
    /// docs/utility.md).
    #[command(
        after_help = "Every --interval it asks each deployment's repositories whether they \
        changed (HTTP If-None-Match / If-Modified-Since; a folder's index by its time), plans \
        the deployments whose repositories did from the newest allowed versions, and carries \
        out their updates and resends, one appliance at a time, each held to its health gate \
        (not ready in --ready-timeout: its previous version goes back, and its data disks as they \
        were before the update, from the snapshot the update took; that version is never taken \
        again). What a person decided stands: starts, stops, \
        removals and moves wait for a person and are reported; an appliance a person stopped is \
        never started (not even to update it); a sensitive value a person applied is never put \
        back (the service resends one only when its own source, the user agent or its \
        environment, changed it). Updates its policy holds (`cvl policy set`: auto off, a \
        maintenance window) run once the policy lets them: when it is set on again, when the \
        window opens. An appliance whose QEMU crashed (recorded running, no process: \
        killed, or its host restarted) is started again within a --survey-interval, with \
        back-off, and left failed for a person when it crashes again after --restart-burst \
        restarts within --restart-window (5 crashes in a minute by default; `cvl policy set \
        --restart off` to leave every crash to a person). What it did: `cvl history`. One \
        JSON line per event on stderr.\n\n\
        Sensitive values come from the environment (CVL_SECRET_...) or the user agent's \
        socket; rotate them with `cvl secrets set` (docs/utility.md); a deployment whose values \
        cannot be had is reported and skipped.\n\n\
        Exit codes: 0 after --once, 2 when it cannot start (another service on the state, \
        without --standby), 1 when it lost the state's service lock.\n\n\
        The status page (--http) shows every deployment and appliance with its state (running, \
        stopped, drift, blacklisted, update pending, rolled back), each deployment's VANs as a \
        picture, the hosts' load, and the same as JSON under /api/ (format_version 1); an open \
        page follows changes by itself. Off loopback it needs --http-token-file. /metrics \
        (--metrics) is in the OpenMetrics text format Prometheus scrapes.\n\n\
        Examples:\n  cvl utility run --interval 5m --metrics 127.0.0.1:9464\n  \
        cvl utility run --http 127.0.0.1:8080\n  \
        cvl utility run --http 0.0.0.0:8443 --http-token-file /etc/cvl/status-token\n  \
        cvl utility run --once   (one round, from cron)\n  \
        CVL_STATE=postgresql://cvl@db/cvl cvl utility run --standby   (on a second machine)"
    )]
    Run(ServiceArgs),
}

#[derive(clap::Args)]
pub struct ServiceArgs {
    /// How often to ask the repositories (`30s`, `5m`; a bare number is
    /// seconds).
    #[arg(long, default_value = "30s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Serve Prometheus text metrics at http://ADDR/metrics (a loopback
    /// address: 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Serve the status page (deployments, their VANs as pictures, hosts,
    /// and the same as JSON under /api/) at http://ADDR/ (127.0.0.1:8080;
    /// port 0 picks one, logged at start). Read-only.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// The token the status page asks of every request (`Authorization:
    /// Bearer TOKEN`, or the password of the browser's login), from a file
    /// only you can read; needed when --http is not a loopback address.
    #[arg(long, value_name = "FILE", requires = "http")]
    pub http_token_file: Option<PathBuf>,
    /// How often the hosts are asked about their VMs: a crashed appliance
    /// is restarted (its policy permitting) that soon after its crash, and
    /// the status page shows drift and each host's last contact.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub survey_interval: Duration,
    /// A host that has not answered the survey for this long is reported
    /// unreachable (log, history of each deployment with appliances there,
    /// /metrics, the status page), and again when it answers. Then its fence
    /// command runs (`cvl host set NAME --fence`), and once it is fenced its
    /// appliances are recovered on the other hosts from their newest
    /// backups; without fencing nothing moves (it may still run them).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub host_dead_after: Duration,
    /// Stop appliances that run a barred version when no allowed version is
    /// published (without it they are only reported).
    #[arg(long)]
    pub enforce_blacklist: bool,
    /// One round, then exit.
    #[arg(long)]
    pub once: bool,
    /// Seconds an updated guest has to become ready (its health gate).
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub ready_timeout: u64,
    /// Seconds a guest has to power off before QEMU is told to quit.
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    pub stop_timeout: u64,
    /// How long an automatic change waits for the state's apply lock (a
    /// person's `cvl apply`) before it tries again next round.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub lock_timeout: Duration,
    /// How many times a crashed appliance is restarted within
    /// --restart-window before it is left failed for a person.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub restart_burst: u32,
    /// The window --restart-burst counts restarts in.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub restart_window: Duration,
    /// How many snapshots of its data from before an update each data disk
    /// keeps (an update takes one; a failed update's rollback puts it back).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_snapshots: u32,
    /// When another service already runs on this state, wait as its
    /// standby (the status page says so) and take over when it ends or
    /// dies, instead of exiting: run one on another machine sharing the
    /// PostgreSQL state. A service that loses the state's service lock
    /// writes nothing more, so two never act at once.
    #[arg(long)]
    pub standby: bool,
}

/// `30s`, `5m`, or a bare number of seconds.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let interval = match text.trim().parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("`{text}` is not a duration like 30s or 5m: {e}"))?,
    };
    if interval < Duration::from_secs(1) {
        return Err("the interval must be at least a second".to_string());
    }
    Ok(interval)
}

pub fn run(command: UtilityCommand) -> Result<ExitCode> {
    let UtilityCommand::Run(args) = command;
    if let Some(addr) = args.metrics {
        if !addr.ip().is_loopback() {
            bail!("--metrics {addr}: serve metrics on a loopback address (127.0.0.1:PORT), behind a proxy that guards them elsewhere");
        }
    }
    let http_token = match (&args.http, &args.http_token_file) {
        (_, Some(file)) => Some(cvl_service::page::read_token(file)?),
        (Some(addr), None) if !addr.ip().is_loopback() => {
            eprintln!(
                "error: --http {addr}: a status page off loopback needs a token: \
                 --http-token-file FILE (a line of at least 16 bytes, mode 600), or use \
                 --http 127.0.0.1:{}",
                addr.port()
            );
            return Ok(ExitCode::from(2));
        }
        _ => None,
    };
    let config = cvl_service::Config {
        interval: args.interval,
        metrics: args.metrics,
        http: args.http,
        http_token,
        survey_interval: args.survey_interval,
        host_dead_after: args.host_dead_after,
        enforce_blacklist: args.enforce_blacklist,
        once: args.once,
        ready_timeout: args.ready_timeout,
        stop_timeout: args.stop_timeout,
        lock_timeout: args.lock_timeout,
        restart_limit: cvl_utility::decide::RestartLimit {
            burst: args.restart_burst as usize,
            window: args.restart_window.as_secs().max(1),
        },
        keep_snapshots: args.keep_snapshots,
        standby: args.standby,
    };
    match cvl_service::run(config)? {
        cvl_service::Ended::Once => Ok(ExitCode::SUCCESS),
        cvl_service::Ended::AnotherRuns(why) => {
            eprintln!("error: {why}");
            Ok(ExitCode::from(2))
        }
        cvl_service::Ended::LostLock(why) => {
            eprintln!("error: {why}");
            Ok(ExitCode::from(1))
        }
    }
}
