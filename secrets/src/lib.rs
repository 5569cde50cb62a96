//! Sensitive parameters at deploy time (the paper's section 3.3): values
//! rest only in the [`vault`], encrypted with the user's passphrase; the
//! user [`agent`] holds them decrypted in memory behind a Unix socket only
//! its user may use, and `cvl plan` / `cvl apply` ask it through the
//! [`client`]. The wire between them is [`protocol`].

pub mod agent;
pub mod client;
pub mod protocol;
pub mod vault;

use std::path::{Path, PathBuf};

/// What goes wrong, by kind: the command line words each for its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// No agent answers on the socket.
    NotRunning(String),
    /// The socket or its folder belongs to someone else.
    Foreign(String),
    /// The agent holds no values until `cvl secrets unlock`.
    Locked(String),
    /// `unlock` without a vault and without asking to create one.
    NoVault(String),
    WrongPassphrase(String),
    Damaged(String),
    /// Written by a newer cvl.
    Newer(String),
    Io(String),
    /// The other side said something this build does not understand.
    Protocol(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotRunning(m)
            | Error::Foreign(m)
            | Error::Locked(m)
            | Error::NoVault(m)
            | Error::WrongPassphrase(m)
            | Error::Damaged(m)
            | Error::Newer(m)
            | Error::Io(m)
            | Error::Protocol(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// Where the vault of a utility home is.
pub fn vault_path(home: &Path) -> PathBuf {
    home.join("vault")
}

/// Where the agent's socket is: `$CVL_AGENT_SOCK`, else `HOME/run/agent.sock`.
pub fn socket_path(home: &Path) -> PathBuf {
    match std::env::var_os("CVL_AGENT_SOCK") {
        Some(s) if !s.is_empty() => PathBuf::from(s),
        _ => home.join("run").join("agent.sock"),
    }
}

/// The key a value is kept under: the deployed object and the parameter's
/// path relative to it (`AcmeSuite/rootpw`), so one value serves every
/// component the deployment passes it to.
pub fn key(deployment: &str, path: &str) -> String {
    format!("{deployment}/{path}")
}

/// This process's effective user.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
