//! A command run in a running appliance through its guest agent: the host
//! agent starts it with its output going to files in the guest's tmpfs,
//! and each poll returns what was written since, so output streams as it
//! comes. No network and no SSH into the guest.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use base64::Engine;
use cvl_executor::protocol::{Request, Response, VmId};
use cvl_executor::transport::Links;
use cvl_planner::model::{ComponentPath, UtilityState};

/// Standard input a command may be given.
pub const INPUT_LIMIT: usize = 16 << 20;

/// What to run, where.
pub struct Command<'a> {
    pub deployment: &'a str,
    /// The component (`""`: the deployment itself).
    pub component: &'a str,
    pub argv: &'a [String],
    /// Its standard input (at most [`INPUT_LIMIT`]).
    pub input: Option<&'a [u8]>,
    /// Give up waiting for it after this.
    pub timeout: Option<Duration>,
}

/// Takes what a command wrote since last time: standard output, then
/// standard error.
pub type Output<'a> = dyn FnMut(&[u8], &[u8]) -> Result<()> + 'a;

/// Runs `command` and returns its exit code; `output` gets what it writes
/// to standard output and standard error as it comes.
pub fn run(state: &UtilityState, command: &Command, output: &mut Output) -> Result<i64> {
    let deployment = command.deployment;
    let Some(recorded) = state.deployments.get(deployment) else {
        bail!("{deployment} is not deployed (nothing in the state)");
    };
    let Some(vm) = recorded
        .vms
        .get(&ComponentPath(command.component.to_string()))
    else {
        let known: Vec<&str> = recorded.vms.keys().map(|p| p.0.as_str()).collect();
        bail!(
            "{deployment} has no VM appliance `{}` (it runs: {})",
            command.component,
            if known.iter().all(|k| k.is_empty()) {
                "`.`, the deployment itself".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    if command.input.is_some_and(|i| i.len() > INPUT_LIMIT) {
        bail!("standard input is over 16 MiB: copy large files another way");
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let connector = crate::hosts::connector(state)?;
    let links = Links::new(&connector);
    let host = &vm.alloc.host;
    let id = VmId {
        deployment: deployment.to_string(),
        path: command.component.to_string(),
    };
    let exec = match links
        .call(
            host,
            &Request::ExecStart {
                vm: id.clone(),
                argv: command.argv.to_vec(),
                input: command.input.map(|i| b64.encode(i)),
            },
        )
        .map_err(anyhow::Error::msg)?
    {
        Response::ExecStarted { exec } => exec,
        Response::Error { message, .. } => bail!("{message}"),
        other => bail!("host {host} answered {other:?}"),
    };
    let deadline = command.timeout.map(|t| Instant::now() + t);
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
            } => (b64.decode(&stdout)?, b64.decode(&stderr)?, exit),
            Response::Error { message, .. } => bail!("{message}"),
            other => bail!("host {host} answered {other:?}"),
        };
        let got = !stdout.is_empty() || !stderr.is_empty();
        if got {
            output(&stdout, &stderr)?;
        }
        out_at += stdout.len() as u64;
        err_at += stderr.len() as u64;
        if let Some(code) = exit {
            return Ok(code);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            bail!(
                "gave up after {}: `{}` still runs in {id} (guest process {})",
                humantime::format_duration(command.timeout.unwrap_or_default()),
                command.argv.first().map_or("", String::as_str),
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
