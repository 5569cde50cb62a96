//! How the executor reaches a host's agent. One set of operations
//! ([`Request`]), and transports under it: here a `cvl host serve` child
//! process on this machine; over SSH (an exec channel running the same
//! command on another host) is the next transport. Each session is one
//! agent conversation; the executor opens one per concurrent action.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::protocol::{Request, Response, PROTOCOL};

/// Opens sessions with hosts, by the name the plan placed VMs on.
pub trait Connector: Send + Sync {
    fn connect(&self, host: &str) -> Result<Box<dyn Session>, String>;
}

/// One conversation with a host agent.
pub trait Session: Send {
    fn call(&mut self, request: &Request) -> Result<Response, String>;
}

/// This machine: the agent as a child process (`EXE host serve --root ROOT`).
pub struct LocalConnector {
    pub exe: PathBuf,
    pub root: PathBuf,
    /// The name the planner gives this machine.
    pub name: String,
}

impl Connector for LocalConnector {
    fn connect(&self, host: &str) -> Result<Box<dyn Session>, String> {
        if host != self.name {
            return Err(format!(
                "the plan places VMs on the host `{host}`, reached over SSH, which this cvl \
                 cannot do yet: only this machine (`{}`) is supported",
                self.name
            ));
        }
        let mut child = Command::new(&self.exe)
            .args(["host", "serve", "--root"])
            .arg(&self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the host agent {}: {e}", self.exe.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut session = ChildSession {
            child,
            stdin: Some(stdin),
            stdout,
        };
        match session.call(&Request::Hello { protocol: PROTOCOL })? {
            Response::Hello { .. } => Ok(Box::new(session)),
            Response::Error { message, .. } => Err(message),
            other => Err(format!("the host agent answered hello with {other:?}")),
        }
    }
}

struct ChildSession {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Session for ChildSession {
    fn call(&mut self, request: &Request) -> Result<Response, String> {
        let mut line = serde_json::to_string(request).expect("a request serializes");
        line.push('\n');
        let stdin = self.stdin.as_mut().expect("open until drop");
        stdin
            .write_all(line.as_bytes())
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("the host agent went away: {e}"))?;
        let mut answer = String::new();
        match self.stdout.read_line(&mut answer) {
            Ok(0) => Err("the host agent exited without answering".to_string()),
            Ok(_) => serde_json::from_str(&answer)
                .map_err(|e| format!("the host agent answered something else ({e})")),
            Err(e) => Err(format!("the host agent went away: {e}")),
        }
    }
}

impl Drop for ChildSession {
    fn drop(&mut self) {
        drop(self.stdin.take()); // the agent ends at end of input
        let _ = self.child.wait();
    }
}
