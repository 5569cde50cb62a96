//! Fencing a host that stopped answering: making sure it runs none of its
//! VMs before any of them is started elsewhere (Pacemaker's rule: never a
//! second copy of a VM that may still run). A host is fenced by its fence
//! command (`cvl host set NAME --fence COMMAND`, e.g. an IPMI or PDU
//! power-off, which exits 0 once the host is off) or by a person who knows
//! it is dead (`cvl host fence NAME --confirm-dead`). A fenced host takes
//! no VMs; when it answers again its old VMs' folders go to its attic, and
//! `cvl host rejoin NAME` puts it back into placement.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cvl_executor::protocol::{Request, Response, VmId};
use cvl_executor::transport::Links;
use cvl_planner::model::{Change, Host, UtilityState};

use crate::registry::registered;

/// How long a fence command may run before it counts as failed.
pub const FENCE_TIMEOUT: Duration = Duration::from_secs(120);

/// Registers (or with `None`, removes) `name`'s fence command.
pub fn set_command(name: &str, command: Option<&str>) -> Result<()> {
    if command.is_some_and(|c| c.trim().is_empty()) {
        bail!("--fence '': give the command that powers the host off, or --no-fence");
    }
    let mut store = crate::state::open()?;
    let state = store.load()?;
    let mut host = registered(&state.hosts, name)?.clone();
    host.fence = command.map(str::to_string);
    store.commit(&[Change::HostAdded(host)])?;
    Ok(())
}

/// How a host came to be fenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Its fence command ran and exited 0.
    Command,
    /// A person confirmed it dead.
    Person,
}

/// Fences `name`: runs its fence command (or, with `How::Person`, takes a
/// person's word) and records it fenced. Its VMs are then placed anew by
/// the next plan. What it says is the record's text.
pub fn fence(name: &str, how: How) -> Result<String> {
    let state = crate::state::open()?.load()?;
    let host = registered(&state.hosts, name)?.clone();
    if let Some(at) = &host.fenced {
        return Ok(at.clone());
    }
    if how == How::Command {
        let command = host.fence.as_deref().with_context(|| {
            format!(
                "host {name} has no fence command: register one (`cvl host set {name} --fence \
                 'COMMAND'`), or, once you know it is off, `cvl host fence {name} --confirm-dead`"
            )
        })?;
        run_command(&host, command).map_err(anyhow::Error::msg)?;
    }
    record(name, how)
}

/// Records `name` fenced now (in one transaction, re-reading the host).
fn record(name: &str, how: How) -> Result<String> {
    let mut store = crate::state::open()?;
    let state = store.load()?;
    let mut host = registered(&state.hosts, name)?.clone();
    let said = format!(
        "{} ({})",
        crate::state::now(),
        match how {
            How::Command => "by its fence command",
            How::Person => "confirmed dead by a person",
        }
    );
    host.fenced = Some(said.clone());
    store.commit(&[Change::HostAdded(host)])?;
    Ok(said)
}

/// When a fenced host's record says it was fenced.
pub fn fenced_at(fenced: &str) -> Option<std::time::SystemTime> {
    humantime::parse_rfc3339_weak(fenced.split_whitespace().next()?).ok()
}

/// Seconds since `host` was fenced, as the state says now.
pub fn since_fenced(host: &str) -> Option<u64> {
    let state = crate::state::open().ok()?.load().ok()?;
    let at = fenced_at(
        state
            .hosts
            .iter()
            .find(|h| h.name == host)?
            .fenced
            .as_deref()?,
    )?;
    Some(at.elapsed().ok()?.as_secs())
}

/// Runs `command` through `sh -c` with the host's name and address in
/// `CVL_HOST` and `CVL_HOST_ADDRESS` (never in its arguments): Ok when it
/// exits 0 within [`FENCE_TIMEOUT`]; else what it said.
pub fn run_command(host: &Host, command: &str) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("CVL_HOST", &host.name)
        .env("CVL_HOST_ADDRESS", host.address.as_deref().unwrap_or(""))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run the fence command of {}: {e}", host.name))?;
    // Its output read as it comes (a full pipe would stall it), the end of
    // each kept; waited for a second at most once it exits (a process it
    // left in the background may hold the pipe open).
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(mut pipe) = pipe {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                    kept.extend_from_slice(&chunk[..n]);
                    let over = kept.len().saturating_sub(4096);
                    kept.drain(..over);
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&kept).into_owned());
        });
        rx
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < FENCE_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the fence command of {} ran for {} s without finishing: killed; the host \
                     is not known to be off",
                    host.name,
                    FENCE_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("the fence command of {}: {e}", host.name)),
        }
    };
    let said = [out, err]
        .map(|rx| rx.recv_timeout(Duration::from_secs(1)).unwrap_or_default())
        .join("\n");
    let said = said.trim();
    if status.success() {
        return Ok(());
    }
    let last: Vec<&str> = said
        .lines()
        .filter(|l| !l.trim().is_empty())
        .rev()
        .take(3)
        .collect();
    Err(format!(
        "the fence command of {} failed ({status}){}: the host is not known to be off",
        host.name,
        if last.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                last.into_iter().rev().collect::<Vec<_>>().join(" / ")
            )
        }
    ))
}

/// The VMs a fenced host answering again must not run: every VM the state
/// places on another host, whose folder (if the host has one) goes to its
/// attic. Returns the folders moved.
pub fn retire(state: &UtilityState, name: &str) -> Result<Vec<String>> {
    let connector = crate::hosts::connector(state)?;
    let links = Links::new(&connector);
    let mut moved = Vec::new();
    for (deployment, d) in &state.deployments {
        for (path, vm) in &d.vms {
            if vm.alloc.host == name {
                continue;
            }
            let id = VmId {
                deployment: deployment.clone(),
                path: path.0.clone(),
            };
            match links
                .call(name, &Request::Attic { vm: id.clone() })
                .map_err(anyhow::Error::msg)?
            {
                Response::Moved { to } if to.is_empty() => {}
                Response::Moved { to } => moved.push(to),
                Response::Error { message, .. } => {
                    bail!("host {name} could not put {id} in its attic: {message}")
                }
                other => bail!("host {name} answered {other:?} to an attic request"),
            }
        }
    }
    Ok(moved)
}

/// Puts fenced `name` back into placement, once it answers: the folders of
/// its VMs that now run elsewhere go to its attic first. Returns them.
pub fn rejoin(name: &str) -> Result<Vec<String>> {
    let state = crate::state::open()?.load()?;
    let host = registered(&state.hosts, name)?;
    if host.fenced.is_none() {
        bail!("host {name} is not fenced: nothing to rejoin");
    }
    let moved = retire(&state, name).with_context(|| {
        format!("host {name} must answer before it rejoins (its old VMs go to its attic first)")
    })?;
    let mut store = crate::state::open()?;
    let state = store.load()?;
    let mut host = registered(&state.hosts, name)?.clone();
    host.fenced = None;
    store.commit(&[Change::HostAdded(host)])?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            name: "h1".into(),
            ..Host::default()
        }
    }

    #[test]
    fn a_verbose_command_is_not_stalled_by_its_pipe_and_its_last_words_are_said() {
        let started = Instant::now();
        let err = run_command(
            &host(),
            "yes filler | head -c 300000; echo the PDU said no >&2; exit 3",
        )
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(30), "{err}");
        assert!(err.contains("failed (exit status: 3)"), "{err}");
        assert!(err.contains("the PDU said no"), "{err}");
    }

    #[test]
    fn a_command_that_leaves_a_process_behind_is_not_waited_for() {
        let started = Instant::now();
        run_command(&host(), "test \"$CVL_HOST\" = h1 && { sleep 30 & }").unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
