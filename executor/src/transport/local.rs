//! The agent on this machine: `EXE host serve --root ROOT` as a child
//! process, its stdin and stdout the conversation.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::{Connector, Link, Mux};
use crate::protocol::Request;

pub struct LocalConnector {
    pub exe: PathBuf,
    pub root: PathBuf,
    /// The name the planner gives this machine.
    pub name: String,
}

impl Connector for LocalConnector {
    fn connect(&self, host: &str) -> Result<Arc<dyn Link>, String> {
        if host != self.name {
            return Err(format!(
                "the plan places VMs on the host `{host}`, which is not registered: \
                 see `cvl host list`"
            ));
        }
        let mut command = Command::new(&self.exe);
        // The agent and the QEMUs it starts live long: they get none of the
        // user's secrets or credentials from this process's environment.
        for (name, _) in std::env::vars_os() {
            let n = name.to_string_lossy();
            if n.starts_with("CVL_SECRET_") || n == "CVL_STATE" || n == "PGPASSWORD" {
                command.env_remove(&name);
            }
        }
        let mut child = command
            .args(["host", "serve", "--root"])
            .arg(&self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the host agent {}: {e}", self.exe.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mux = Mux::new(host, Box::new(stdin));
        let reader = mux.clone();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                match line {
                    Ok(line) => reader.deliver(&line),
                    Err(_) => break,
                }
            }
            reader.close("the host agent on this machine exited".to_string());
        });
        let link = ChildLink {
            mux,
            child: Mutex::new(child),
        };
        link.mux.hello()?;
        Ok(Arc::new(link))
    }
}

struct ChildLink {
    mux: Arc<Mux>,
    child: Mutex<Child>,
}

impl Link for ChildLink {
    fn call(
        &self,
        request: &Request,
        timeout: std::time::Duration,
    ) -> Result<super::Response, String> {
        self.mux.call(request, timeout)
    }
}

impl Drop for ChildLink {
    fn drop(&mut self) {
        self.mux.finish(); // the agent ends at the end of its input
        let _ = self.child.lock().unwrap_or_else(|e| e.into_inner()).wait();
    }
}
