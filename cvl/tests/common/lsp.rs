//! A minimal LSP client over a child process's stdio: what the protocol
//! tests and the latency benchmark drive `cvl lsp` with.
#![allow(dead_code)] // each user needs a part

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct Client {
    pub child: Child,
    stdin: ChildStdin,
    incoming: Receiver<Value>,
    next_id: i64,
    /// Notifications received while waiting for responses.
    pub notifications: Vec<Value>,
    root: String,
}

impl Client {
    pub fn start(cvl: &Path, root: &Path) -> Client {
        Client::start_with_home(cvl, root, &root.join(".home"))
    }

    /// As [`Client::start`], with the utility home elsewhere (to leave
    /// `root` untouched).
    pub fn start_with_home(cvl: &Path, root: &Path, home: &Path) -> Client {
        Client::start_with_env(cvl, root, home, &[])
    }

    /// As [`Client::start_with_home`], with more environment (mirrors,
    /// secrets).
    pub fn start_with_env(
        cvl: &Path,
        root: &Path,
        home: &Path,
        env: &[(String, String)],
    ) -> Client {
        let mut child = Command::new(cvl)
            .arg("lsp")
            .current_dir(root)
            .env_remove("CVL_MIRRORS")
            .env("CVL_HOME", home)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts cvl lsp");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, incoming) = channel();
        std::thread::spawn(move || loop {
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim();
                if line.is_empty() {
                    break;
                }
                if let Some(n) = line.strip_prefix("Content-Length: ") {
                    length = n.parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            if stdout.read_exact(&mut body).is_err() {
                return;
            }
            if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                return;
            }
        });
        Client {
            child,
            stdin,
            incoming,
            next_id: 1,
            notifications: Vec::new(),
            root: root.to_string_lossy().to_string(),
        }
    }

    pub fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        let mut message = json!({ "jsonrpc": "2.0", "method": method });
        if !params.is_null() {
            message["params"] = params;
        }
        self.send(message);
    }

    /// The result of a request that must succeed.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_request(method, params);
        let answer = self.response(id);
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// The error message of a request that must fail.
    pub fn request_error(&mut self, method: &str, params: Value) -> String {
        let id = self.send_request(method, params);
        self.response(id)["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `initialize` on the workspace `root` (its answer), then `initialized`.
    pub fn initialize(&mut self, root: &Path) -> Value {
        let answer = self.request(
            "initialize",
            json!({ "processId": null, "rootUri": format!("file://{}", root.display()), "capabilities": {} }),
        );
        self.notify("initialized", json!({}));
        answer
    }

    /// Opens a document at version 1.
    pub fn open(&mut self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": uri, "languageId": "cvl", "version": 1, "text": text } }),
        );
    }

    /// Sends a request without waiting for its answer; its id.
    pub fn send_request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "jsonrpc": "2.0", "id": id, "method": method });
        if !params.is_null() {
            message["params"] = params;
        }
        self.send(message);
        id
    }

    /// The whole answer to request `id` (`result` or `error`), keeping the
    /// notifications that come before it.
    pub fn response(&mut self, id: i64) -> Value {
        let answer = |m: &Value| m["id"] == id && m.get("method").is_none();
        if let Some(i) = self.notifications.iter().position(answer) {
            return self.notifications.remove(i);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let message = self
                .incoming
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no answer to request {id}"));
            if answer(&message) {
                return message;
            }
            self.notifications.push(message);
        }
    }

    /// Waits for a request from the server (`workspace/codeLens/refresh`),
    /// answers it with `null`, and returns it.
    pub fn server_request(&mut self, method: &str) -> Value {
        let matches = |m: &Value| m["method"] == method && m.get("id").is_some();
        let found = match self.notifications.iter().position(matches) {
            Some(i) => self.notifications.remove(i),
            None => {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let message = self
                        .incoming
                        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                        .unwrap_or_else(|_| panic!("the server sent no {method}"));
                    if matches(&message) {
                        break message;
                    }
                    self.notifications.push(message);
                }
            }
        };
        self.send(json!({ "jsonrpc": "2.0", "id": found["id"].clone(), "result": null }));
        found
    }

    /// Waits for diagnostics of `uri` at `version` (or any, when `None`).
    pub fn diagnostics(&mut self, uri: &str, version: Option<i64>) -> Value {
        let matches = |m: &Value| {
            m["method"] == "textDocument/publishDiagnostics"
                && m["params"]["uri"] == uri
                && version.is_none_or(|v| m["params"]["version"] == v)
        };
        if let Some(i) = self.notifications.iter().rposition(matches) {
            return self.notifications.remove(i)["params"]["diagnostics"].clone();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let message = self
                .incoming
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no diagnostics for {uri} {version:?}"));
            if matches(&message) {
                return message["params"]["diagnostics"].clone();
            }
            self.notifications.push(message);
        }
    }

    /// A value with the workspace path written as `$ROOT`.
    pub fn relative(&self, value: &Value) -> Value {
        serde_json::from_str(
            &value
                .to_string()
                .replace(&format!("file://{}", self.root), "$ROOT"),
        )
        .unwrap()
    }

    /// Sends `exit` (after `shutdown` when asked) but keeps the input open,
    /// as some editors do: the server must end on `exit` alone. Returns
    /// its exit code.
    pub fn exit_keeping_input_open(mut self, shutdown: bool) -> Option<i32> {
        if shutdown {
            self.request("shutdown", Value::Null);
        }
        self.notify("exit", Value::Null);
        let mut child = self.child;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                drop(self.stdin);
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        panic!("the server did not exit after `exit` while its input stayed open");
    }

    /// The server's resident memory, MiB (for the benchmarks).
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    pub fn stop(mut self) {
        self.request("shutdown", Value::Null);
        self.notify("exit", Value::Null);
        drop(self.stdin); // as an editor does: the pipe closes
        let mut child = self.child;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        panic!("the server did not exit after `exit`");
    }
}
