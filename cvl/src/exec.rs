//! `cvl exec`: a command run in a running appliance through its QEMU guest
//! agent (no network, no SSH into the guest), its output streamed back as
//! it comes and its exit code cvl's own, as `docker exec` and `kubectl
//! exec` do. The host agent starts the command with its output going to
//! files in the guest's tmpfs, and each poll returns what was written since.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine;
use cvl_executor::protocol::{Request, Response, VmId};
use cvl_executor::transport::Links;
use cvl_planner::model::ComponentPath;

/// What `cvl exec` exits with when it cannot run the command at all (as
/// `docker exec` does): the command's own codes stay unambiguous.
pub const CANNOT_RUN: u8 = 125;

/// The most standard input `--stdin` passes.
const INPUT_LIMIT: usize = 16 << 20;

#[derive(clap::Args)]
pub struct ExecArgs {
    /// The CVL file of the deployment (its only object is the deployment,
    /// or the one --deploy names).
    pub file: PathBuf,
    /// The appliance to run in: its component path in the deployment (`d`,
    /// `g.f`), or `.` for a deployed VM appliance itself.
    pub component: String,
    /// The deployed object of FILE, when it declares several.
    #[arg(long, value_name = "OBJ")]
    pub deploy: Option<String>,
    /// Pass standard input to the command (read whole first, at most 16 MiB).
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Give up waiting after this long (`30s`, `5m`); the command goes on
    /// in the guest. Default: wait as long as it runs.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<humantime::Duration>,
    /// The command and its arguments, after `--`: passed as they are, never
    /// parsed by a shell (run `sh -c '...'` for one).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub fn run(args: ExecArgs) -> Result<ExitCode> {
    match exec(&args) {
        Ok(code) => Ok(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            Ok(ExitCode::from(CANNOT_RUN))
        }
    }
}

fn exec(args: &ExecArgs) -> Result<ExitCode> {
    let deployment = cvl_ops::plan::deployment_of(&args.file, args.deploy.as_deref())?;
    let path = if args.component == "." {
        String::new()
    } else {
        args.component.clone()
    };
    let mut store = cvl_ops::state::open()?;
    let state = store.load()?;
    let Some(recorded) = state.deployments.get(&deployment) else {
        bail!(
            "{deployment} is not deployed (nothing in the state): run `cvl apply {}` first",
            args.file.display()
        );
    };
    let Some(vm) = recorded.vms.get(&ComponentPath(path.clone())) else {
        let known: Vec<&str> = recorded.vms.keys().map(|p| p.0.as_str()).collect();
        bail!(
            "{deployment} has no VM appliance `{}` (it runs: {})",
            args.component,
            if known.iter().all(|k| k.is_empty()) {
                "`.`, the deployment itself".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let input = if args.stdin {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(INPUT_LIMIT as u64 + 1)
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        if bytes.len() > INPUT_LIMIT {
            bail!("standard input is over 16 MiB: copy large files another way");
        }
        Some(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        None
    };
    let connector = cvl_ops::hosts::connector(&state)?;
    let links = Links::new(&connector);
    let host = &vm.alloc.host;
    let id = VmId {
        deployment: deployment.clone(),
        path,
    };
    let exec = match links
        .call(
            host,
            &Request::ExecStart {
                vm: id.clone(),
                argv: args.command.clone(),
                input,
            },
        )
        .map_err(anyhow::Error::msg)?
    {
        Response::ExecStarted { exec } => exec,
        Response::Error { message, .. } => bail!("{message}"),
        other => bail!("host {host} answered {other:?}"),
    };
    let deadline = args.timeout.map(|t| Instant::now() + Duration::from(t));
    let (mut out_at, mut err_at) = (0u64, 0u64);
    let mut pause = Duration::from_millis(50);
    loop {
        let answer = links
            .call(
                host,
                &Request::ExecPoll {
                    vm: id.clone(),
                    exec: exec.clone(),
                    stdout_offset: out_at,
                    stderr_offset: err_at,
                },
            )
            .map_err(anyhow::Error::msg)?;
        let (stdout, stderr, exit) = match answer {
            Response::ExecOutput {
                stdout,
                stderr,
                exit,
            } => (stdout, stderr, exit),
            Response::Error { message, .. } => bail!("{message}"),
            other => bail!("host {host} answered {other:?}"),
        };
        let decode = |b: &str| base64::engine::general_purpose::STANDARD.decode(b);
        let (stdout, stderr) = (decode(&stdout)?, decode(&stderr)?);
        if !stdout.is_empty() {
            let mut out = std::io::stdout().lock();
            out.write_all(&stdout)?;
            out.flush()?;
        }
        if !stderr.is_empty() {
            std::io::stderr().write_all(&stderr)?;
        }
        let got = !stdout.is_empty() || !stderr.is_empty();
        out_at += stdout.len() as u64;
        err_at += stderr.len() as u64;
        if let Some(code) = exit {
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(CANNOT_RUN)));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            bail!(
                "gave up after {}: `{}` still runs in {id} (guest process {})",
                args.timeout.unwrap(),
                args.command[0],
                exec.pid
            );
        }
        // Quick while output flows, then at most every half second.
        pause = if got {
            Duration::from_millis(50)
        } else {
            (pause * 2).min(Duration::from_millis(500))
        };
        std::thread::sleep(pause);
    }
}
