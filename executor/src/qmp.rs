//! The two JSON channels QEMU offers per VM, on Unix sockets: QMP (the
//! machine: status, power down, quit) and the QEMU guest agent (the guest:
//! ping, files, exec, shutdown). Every read has a deadline.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

pub struct Channel {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Channel {
    fn open(path: &Path, timeout: Duration) -> std::io::Result<Channel> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Channel {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
        })
    }

    fn send(&mut self, message: &Value) -> std::io::Result<()> {
        let mut line = message.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes())
    }

    fn read(&mut self) -> std::io::Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the channel closed",
            ));
        }
        // A guest agent may send a 0xFF sync byte before its answer.
        let text = line.trim_start_matches('\u{FF}').trim();
        serde_json::from_str(text).map_err(std::io::Error::other)
    }

    /// Sends a command and returns its `return` (skipping QMP events).
    fn call(&mut self, command: &str, arguments: Option<Value>) -> std::io::Result<Value> {
        let mut message = json!({ "execute": command });
        if let Some(a) = arguments {
            message["arguments"] = a;
        }
        self.send(&message)?;
        loop {
            let reply = self.read()?;
            if let Some(r) = reply.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = reply.get("error") {
                return Err(std::io::Error::other(format!(
                    "{command}: {}",
                    e["desc"].as_str().unwrap_or("error")
                )));
            }
        }
    }
}

/// A QMP session, past its greeting and capabilities negotiation.
pub struct Qmp(Channel);

impl Qmp {
    pub fn connect(path: &Path, timeout: Duration) -> std::io::Result<Qmp> {
        let mut channel = Channel::open(path, timeout)?;
        channel.read()?; // the greeting
        channel.call("qmp_capabilities", None)?;
        Ok(Qmp(channel))
    }

    pub fn status(&mut self) -> std::io::Result<String> {
        let r = self.0.call("query-status", None)?;
        Ok(r["status"].as_str().unwrap_or("unknown").to_string())
    }

    pub fn powerdown(&mut self) -> std::io::Result<()> {
        self.0.call("system_powerdown", None).map(|_| ())
    }

    /// Takes the medium out of a removable drive (the device's id).
    pub fn eject(&mut self, device: &str) -> std::io::Result<()> {
        self.0
            .call("eject", Some(json!({ "id": device, "force": true })))
            .map(|_| ())
    }

    pub fn quit(&mut self) -> std::io::Result<()> {
        self.0.call("quit", None).map(|_| ())
    }
}

/// A guest agent session.
pub struct Agent(Channel);

impl Agent {
    /// Connects and synchronizes (the agent may hold stale output from an
    /// earlier client).
    pub fn connect(path: &Path, timeout: Duration) -> std::io::Result<Agent> {
        let mut channel = Channel::open(path, timeout)?;
        let id = (std::process::id() as u64) << 20 ^ nanos();
        channel.send(&json!({ "execute": "guest-sync", "arguments": { "id": id } }))?;
        loop {
            let reply = channel.read()?;
            if reply.get("return").and_then(Value::as_u64) == Some(id) {
                return Ok(Agent(channel));
            }
        }
    }

    /// Waits until the agent answers, up to `deadline`.
    pub fn wait(path: &Path, deadline: Instant) -> std::io::Result<Agent> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match Agent::connect(
                path,
                left.min(Duration::from_secs(2))
                    .max(Duration::from_millis(50)),
            ) {
                Ok(agent) => return Ok(agent),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    pub fn ping(&mut self) -> std::io::Result<()> {
        self.0.call("guest-ping", None).map(|_| ())
    }

    /// Writes `bytes` to `path` in the guest.
    pub fn write_file(&mut self, path: &str, bytes: &[u8]) -> std::io::Result<()> {
        let handle = self.0.call(
            "guest-file-open",
            Some(json!({ "path": path, "mode": "w" })),
        )?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let written = self.0.call(
            "guest-file-write",
            Some(json!({ "handle": handle, "buf-b64": b64 })),
        );
        let closed = self
            .0
            .call("guest-file-close", Some(json!({ "handle": handle })));
        written.and(closed).map(|_| ())
    }

    /// Reads up to 1 MiB of `path` in the guest.
    pub fn read_file(&mut self, path: &str) -> std::io::Result<Vec<u8>> {
        let handle = self.0.call(
            "guest-file-open",
            Some(json!({ "path": path, "mode": "r" })),
        )?;
        let read = self.0.call(
            "guest-file-read",
            Some(json!({ "handle": handle, "count": 1 << 20 })),
        );
        let _ = self
            .0
            .call("guest-file-close", Some(json!({ "handle": handle })));
        let b64 = read?["buf-b64"].as_str().unwrap_or("").to_string();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(std::io::Error::other)
    }

    /// Runs `argv` in the guest and waits for it: exit code and stdout.
    pub fn exec(&mut self, argv: &[&str], timeout: Duration) -> std::io::Result<(i64, Vec<u8>)> {
        let started = self.0.call(
            "guest-exec",
            Some(json!({ "path": argv[0], "arg": &argv[1..], "capture-output": true })),
        )?;
        let pid = started["pid"].clone();
        let deadline = Instant::now() + timeout;
        loop {
            let status = self
                .0
                .call("guest-exec-status", Some(json!({ "pid": pid })))?;
            if status["exited"] == true {
                let out = status["out-data"].as_str().unwrap_or("");
                let out = base64::engine::general_purpose::STANDARD
                    .decode(out)
                    .unwrap_or_default();
                return Ok((status["exitcode"].as_i64().unwrap_or(-1), out));
            }
            if Instant::now() >= deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{} did not finish within {} s", argv[0], timeout.as_secs()),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `argv` in the guest without waiting: its process id in the
    /// guest. `input`, when given, is its standard input.
    pub fn spawn(&mut self, argv: &[String], input: Option<&[u8]>) -> std::io::Result<i64> {
        let mut arguments = json!({ "path": argv[0], "arg": &argv[1..] });
        if let Some(input) = input {
            arguments["input-data"] = base64::engine::general_purpose::STANDARD
                .encode(input)
                .into();
        }
        let started = self.0.call("guest-exec", Some(arguments))?;
        started["pid"]
            .as_i64()
            .ok_or_else(|| std::io::Error::other("guest-exec answered no pid"))
    }

    /// Whether a process [`Agent::spawn`] started has exited: its exit code.
    pub fn exited(&mut self, pid: i64) -> std::io::Result<Option<i64>> {
        let status = self
            .0
            .call("guest-exec-status", Some(json!({ "pid": pid })))?;
        Ok((status["exited"] == true).then(|| {
            status["exitcode"]
                .as_i64()
                .or_else(|| status["signal"].as_i64().map(|s| 128 + s))
                .unwrap_or(-1)
        }))
    }

    /// Up to `count` bytes of the guest's file `path` from `offset`; empty
    /// at its end.
    pub fn read_at(&mut self, path: &str, offset: u64, count: u64) -> std::io::Result<Vec<u8>> {
        let handle = self.0.call(
            "guest-file-open",
            Some(json!({ "path": path, "mode": "r" })),
        )?;
        let read = self
            .0
            .call(
                "guest-file-seek",
                Some(json!({ "handle": handle, "offset": offset, "whence": "set" })),
            )
            .and_then(|_| {
                self.0.call(
                    "guest-file-read",
                    Some(json!({ "handle": handle, "count": count })),
                )
            });
        let _ = self
            .0
            .call("guest-file-close", Some(json!({ "handle": handle })));
        let b64 = read?["buf-b64"].as_str().unwrap_or("").to_string();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(std::io::Error::other)
    }

    /// Asks the guest to power off (the agent sends no answer on success).
    pub fn shutdown(&mut self) -> std::io::Result<()> {
        self.0.send(&json!({ "execute": "guest-shutdown" }))
    }
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64)
}
