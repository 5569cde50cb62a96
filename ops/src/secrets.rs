//! Sensitive values for a plan: from `CVL_SECRET_<DEPLOYMENT>_<PARAM>` (or
//! the descriptor `..._FD` names) first, then from the user agent (`cvl
//! agent`), then, where a person can be asked ([`Ask`]), from that person.
//! Values live in memory only ([`Secret`] zeroizes on drop).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use cvl_planner::lower::SensitiveInput;
use cvl_secrets::client::Client;
use cvl_secrets::protocol::{Request, Secret};
use cvl_secrets::Error;

/// The user agent's socket: `$CVL_AGENT_SOCK`, else under `$CVL_HOME`.
pub fn socket() -> PathBuf {
    cvl_secrets::socket_path(&cvl_repo::settings::default_home())
}

/// A person who can be asked (the command at a terminal), or nobody (the
/// service, the editor's preview, CI).
pub trait Ask {
    /// Whether anyone can be asked now.
    fn can_ask(&self) -> bool;
    /// Unlocks the locked agent behind `client`, asking for its passphrase.
    fn unlock(&mut self, client: &mut Client) -> Result<()>;
    /// Asks for the value of `key` (`DEPLOYMENT/PARAM`); empty: none.
    fn value(&mut self, key: &str) -> Result<Secret>;
}

/// Nobody to ask: what the environment and an unlocked agent hold is all.
pub struct Nobody;

impl Ask for Nobody {
    fn can_ask(&self) -> bool {
        false
    }

    fn unlock(&mut self, _: &mut Client) -> Result<()> {
        bail!("the agent is locked and nobody can be asked: `cvl secrets unlock`")
    }

    fn value(&mut self, _: &str) -> Result<Secret> {
        Ok(Secret::new(String::new()))
    }
}

/// The values of `inputs` for `deployment`, by input path: from the
/// environment, then from the agent; what both lack is asked of `ask`
/// (and kept in the agent when one runs). What stays missing is left out:
/// the plan lists it with the ways to supply it.
pub fn supply(
    deployment: &str,
    inputs: &[SensitiveInput],
    ask: &mut dyn Ask,
) -> Result<BTreeMap<String, Secret>> {
    let mut values = BTreeMap::new();
    for input in inputs {
        if let Some(v) = from_env(&input.env)? {
            values.insert(input.path.clone(), v);
        }
    }
    let missing: Vec<&SensitiveInput> = inputs
        .iter()
        .filter(|i| !values.contains_key(&i.path))
        .collect();
    if missing.is_empty() {
        return Ok(values);
    }
    let can_ask = ask.can_ask();
    let mut agent = match Client::connect(&socket()) {
        Ok(c) => Some(c),
        Err(Error::NotRunning(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(c) = agent.as_mut() {
        if c.status()?.locked {
            if can_ask {
                ask.unlock(c)?;
            } else {
                agent = None;
            }
        }
    }
    if let Some(c) = agent.as_mut() {
        let keys: Vec<String> = missing
            .iter()
            .map(|i| cvl_secrets::key(deployment, &i.path))
            .collect();
        let mut got = c.get(&keys)?;
        for (input, key) in missing.iter().zip(&keys) {
            if let Some(v) = got.remove(key) {
                values.insert(input.path.clone(), v);
            }
        }
    }
    if !can_ask {
        return Ok(values);
    }
    for input in inputs {
        if values.contains_key(&input.path) {
            continue;
        }
        let key = cvl_secrets::key(deployment, &input.path);
        let value = ask.value(&key)?;
        if value.is_empty() {
            continue;
        }
        if let Some(c) = agent.as_mut() {
            c.call(&Request::Set {
                key: key.clone(),
                value: value.clone(),
            })?;
        }
        values.insert(input.path.clone(), value);
    }
    Ok(values)
}

/// `NAME` from the environment, or the descriptor `NAME_FD` names (read to
/// its end; one trailing newline dropped).
pub fn from_env(name: &str) -> Result<Option<Secret>> {
    if let Some(v) = std::env::var_os(name) {
        let v = v
            .into_string()
            .map_err(|_| anyhow::anyhow!("{name} is not valid UTF-8"))?;
        return Ok(Some(Secret::new(v)));
    }
    let fd_var = format!("{name}_FD");
    let Ok(fd) = std::env::var(&fd_var) else {
        return Ok(None);
    };
    let fd: i32 = fd
        .trim()
        .parse()
        .ok()
        .filter(|fd| *fd > 2)
        .with_context(|| format!("{fd_var}={fd} is not a file descriptor number above 2"))?;
    // SAFETY: fcntl(F_GETFD) only queries the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        bail!("{fd_var}={fd}: no such open file descriptor");
    }
    // SAFETY: the descriptor is open and was handed to us by the caller for
    // this purpose; we take ownership and close it after reading.
    let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let mut bytes = Vec::new();
    Read::take(&mut file, 1 << 20)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read descriptor {fd} named by {fd_var}"))?;
    let mut value = String::from_utf8(bytes).with_context(|| format!("{fd_var}: not UTF-8"))?;
    if value.ends_with('\n') {
        value.pop();
    }
    Ok(Some(Secret::new(value)))
}

/// What the user agent says of its values now: `None` when none runs (or
/// it cannot be asked), else whether it is locked and its generation (it
/// changes whenever the values it would answer with may have changed). A
/// long-lived reader (the utility service) plans again when it changes.
pub fn agent_generation() -> Option<(bool, u64)> {
    let mut client = Client::connect(&socket()).ok()?;
    let status = client.status().ok()?;
    Some((status.locked, status.generation))
}
