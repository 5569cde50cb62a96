//! Other hosts, over SSH (libssh2 through the `ssh2` crate): one connection
//! per host, its host key checked against the key the utility recorded
//! (`cvl host add`) before anything else happens, key authentication (a
//! key file, or the user's SSH agent). The host agent is this very `cvl`,
//! copied to `ROOT/bin/cvl-DIGEST` when the host lacks that digest, and run
//! on one exec channel whose command line holds only that path and the
//! root; parameters travel inside the conversation, never through a shell.
//! One command both checks for the agent and starts it: every command costs
//! a login shell on the host (its startup files included), so a connection
//! to a host that has the agent runs exactly one.
//!
//! libssh2 serializes every call on a session, so one thread per host
//! ([`pump`]) owns the channel in non-blocking mode: it writes what callers
//! queue, reads answers and hands them to the [`Mux`].

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};
use ssh2::{Channel, HostKeyType, Session};

use super::{Connector, Link, Mux};
use crate::protocol::{Envelope, Fabric, Request, Response, PROTOCOL};

/// A registered host, as the executor needs it.
#[derive(Debug, Clone)]
pub struct SshHost {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// A private key file; the user's SSH agent when absent.
    pub identity: Option<PathBuf>,
    /// The recorded host key, OpenSSH format.
    pub host_key: Option<String>,
    /// The agent's folder on the host.
    pub root: String,
    /// Set on the host as soon as it is reached.
    pub fabric: Option<Fabric>,
}

pub struct SshConnector {
    pub hosts: BTreeMap<String, SshHost>,
    /// This `cvl`, which the hosts run as their agent.
    pub exe: PathBuf,
    /// For the TCP connection, the handshake and each command.
    pub timeout: Duration,
    digest_stamp: Option<PathBuf>,
    digest: OnceLock<Result<String, String>>,
}

impl SshConnector {
    pub fn new(hosts: BTreeMap<String, SshHost>, exe: PathBuf) -> SshConnector {
        SshConnector {
            hosts,
            exe,
            timeout: Duration::from_secs(20),
            digest_stamp: None,
            digest: OnceLock::new(),
        }
    }

    /// Remember the executable's digest in `stamp`, beside the identity of
    /// the file it was computed from (hashing it takes a while).
    pub fn remember_digest_in(self, stamp: PathBuf) -> SshConnector {
        SshConnector {
            digest_stamp: Some(stamp),
            ..self
        }
    }

    /// The SHA-256 of this executable: names the agent on every host.
    fn digest(&self) -> Result<String, String> {
        self.digest
            .get_or_init(|| {
                use std::os::unix::fs::MetadataExt;
                let unreadable =
                    |e: std::io::Error| format!("cannot read {}: {e}", self.exe.display());
                let meta = std::fs::metadata(&self.exe).map_err(unreadable)?;
                let identity = format!(
                    "{} {} {} {}.{}",
                    meta.dev(),
                    meta.ino(),
                    meta.size(),
                    meta.mtime(),
                    meta.mtime_nsec()
                );
                let remembered = self
                    .digest_stamp
                    .as_ref()
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .and_then(|s| {
                        let (id, digest) = s.trim().rsplit_once(' ')?;
                        (id == identity && digest.len() == 32).then(|| digest.to_string())
                    });
                if let Some(digest) = remembered {
                    return Ok(digest);
                }
                let mut file = std::fs::File::open(&self.exe).map_err(unreadable)?;
                let mut hasher = Sha256::new();
                std::io::copy(&mut file, &mut hasher).map_err(unreadable)?;
                let digest = hex(&hasher.finalize()[..16]);
                if let Some(stamp) = &self.digest_stamp {
                    // A cache: when it cannot be written, the next run hashes again.
                    let tmp = stamp.with_extension(format!("tmp{}", std::process::id()));
                    let _ = std::fs::create_dir_all(stamp.parent().unwrap_or(Path::new(".")))
                        .and_then(|_| std::fs::write(&tmp, format!("{identity} {digest}\n")))
                        .and_then(|_| std::fs::rename(&tmp, stamp));
                }
                Ok(digest)
            })
            .clone()
    }
}

impl Connector for SshConnector {
    fn connect(&self, name: &str) -> Result<Arc<dyn Link>, String> {
        let host = self.hosts.get(name).ok_or_else(|| {
            format!("the plan places VMs on the host `{name}`, which is not registered: see `cvl host list`")
        })?;
        let (session, socket) = open(&host.name, &host.address, host.port, self.timeout)?;
        verify(&session, host)?;
        authenticate(&session, host)?;
        let channel = self.start_agent(&session, host)?;
        let (tx, rx) = mpsc::channel();
        let mux = Mux::new(name, Box::new(Queue(tx)));
        let pumped = mux.clone();
        let host_name = name.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("ssh {name}"))
            .spawn(move || pump(&host_name, session, channel, socket, rx, pumped))
            .map_err(|e| e.to_string())?;
        let link = SshLink {
            mux,
            thread: Mutex::new(Some(thread)),
        };
        if let Some(fabric) = &host.fabric {
            match link.call(
                &Request::Fabric(fabric.clone()),
                super::deadline(&Request::Fabric(fabric.clone())),
            )? {
                Response::FabricSet { .. } => {}
                Response::Error { message, .. } => {
                    return Err(format!(
                        "host {name}: cannot join the VANs' fabric: {message}"
                    ))
                }
                other => return Err(format!("host {name} answered the fabric with {other:?}")),
            }
        }
        Ok(Arc::new(link))
    }
}

/// The exit status of the command that starts the agent when the host
/// lacks this version of it.
const AGENT_MISSING: i32 = 97;

/// Milliseconds a freshly installed agent has to answer its first hello.
const FIRST_START_MS: u32 = 300_000;

impl SshConnector {
    /// Starts `ROOT/bin/cvl-DIGEST host serve` on the host, copying the agent
    /// there first when the host lacks it; the channel, past `hello`.
    fn start_agent(&self, session: &Session, host: &SshHost) -> Result<Channel, String> {
        let name = &host.name;
        let agent = format!(
            "{}/bin/cvl-{}",
            host.root.trim_end_matches('/'),
            self.digest()?
        );
        let command = format!(
            "if [ -x {a} ]; then exec {a} host serve --root {r}; fi; exit {AGENT_MISSING}",
            a = quote(&agent),
            r = quote(&host.root)
        );
        let mut installed = false;
        let normal = session.timeout();
        loop {
            let fail = |e: &dyn std::fmt::Display| {
                format!("host {name}: cannot start the host agent: {e}")
            };
            let mut channel = session.channel_session().map_err(|e| fail(&e))?;
            channel.exec(&command).map_err(|e| fail(&e))?;
            let hello = Envelope {
                id: 0,
                body: Request::Hello { protocol: PROTOCOL },
            };
            let mut line = serde_json::to_string(&hello).expect("a request serializes");
            line.push('\n');
            channel
                .write_all(line.as_bytes())
                .and_then(|()| channel.flush())
                .map_err(|e| fail(&e))?;
            // The answer, read byte by byte up to its end of line: nothing
            // else is sent before it.
            let mut answer = Vec::new();
            let mut byte = [0u8; 1];
            while answer.last() != Some(&b'\n') && answer.len() < 64 * 1024 {
                match channel.read(&mut byte) {
                    Ok(0) => break,
                    Ok(_) => answer.push(byte[0]),
                    Err(e) => return Err(fail(&e)),
                }
            }
            if answer.is_empty() {
                let mut said = String::new();
                let _ = channel.stderr().read_to_string(&mut said);
                let _ = channel.wait_close();
                let status = channel.exit_status().unwrap_or(-1);
                if status == AGENT_MISSING && !installed {
                    self.install_agent(session, host, &agent)?;
                    installed = true;
                    // Its first start reads the whole new file from a disk
                    // that may be busy: more time for that one answer.
                    session.set_timeout(normal.max(FIRST_START_MS));
                    continue;
                }
                return Err(format!(
                    "host {name}: the host agent exited before answering (status {status}): {}",
                    said.trim()
                ));
            }
            session.set_timeout(normal);
            return match serde_json::from_slice::<Envelope<Response>>(&answer) {
                Ok(Envelope {
                    body: Response::Hello { .. },
                    ..
                }) => Ok(channel),
                Ok(Envelope {
                    body: Response::Error { message, .. },
                    ..
                }) => Err(format!("host {name}: {message}")),
                Ok(other) => Err(format!(
                    "the host agent on {name} answered hello with {:?}",
                    other.body
                )),
                Err(e) => Err(format!(
                    "the host agent on {name} answered hello with something else ({e}): {}",
                    String::from_utf8_lossy(&answer).trim()
                )),
            };
        }
    }

    /// Copies this `cvl` to `agent` on the host (through a temporary file,
    /// then renamed: a host never runs half an agent).
    fn install_agent(&self, session: &Session, host: &SshHost, agent: &str) -> Result<(), String> {
        let bin = agent.rsplit_once('/').map_or(".", |(dir, _)| dir);
        let (status, said) = run(session, &format!("mkdir -p {}", quote(bin)), &host.name)?;
        if status != 0 {
            return Err(format!("host {}: cannot create {bin}: {said}", host.name));
        }
        let size = std::fs::metadata(&self.exe)
            .map_err(|e| format!("cannot read {}: {e}", self.exe.display()))?
            .len();
        // A name of this copy's own: two controllers installing the same
        // agent at once never write into one file.
        let tmp = format!(
            "{agent}.part-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        );
        let mut remote = session
            .scp_send(Path::new(&tmp), 0o755, size, None)
            .map_err(|e| format!("host {}: cannot copy the agent to {tmp}: {e}", host.name))?;
        let mut local = std::fs::File::open(&self.exe)
            .map_err(|e| format!("cannot read {}: {e}", self.exe.display()))?;
        std::io::copy(&mut local, &mut remote)
            .map_err(|e| format!("host {}: copying the agent to {tmp} failed: {e}", host.name))?;
        for step in [
            Channel::send_eof,
            Channel::wait_eof,
            Channel::close,
            Channel::wait_close,
        ] {
            step(&mut remote)
                .map_err(|e| format!("host {}: copying the agent failed: {e}", host.name))?;
        }
        // Verified on the host before it takes the agent's name: its name
        // is the first 128 bits of its SHA-256.
        let digest = agent.rsplit_once("/cvl-").map_or("", |(_, d)| d);
        let (status, said) = run(
            session,
            &format!(
                "d=$(sha256sum < {t} | cut -c1-32); if [ \"$d\" = {digest} ]; then mv -f {t} {a}; \
                 else rm -f {t}; echo \"the copy of the agent at {t} hashes to $d, not {digest}\" >&2; exit 1; fi",
                t = quote(&tmp),
                a = quote(agent),
            ),
            &host.name,
        )?;
        if status != 0 {
            return Err(format!(
                "host {}: cannot install the agent at {agent}: {said}",
                host.name
            ));
        }
        Ok(())
    }
}

/// A host key: its algorithm's name and its blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    pub kind: String,
    pub blob: Vec<u8>,
}

impl HostKey {
    /// As OpenSSH prints it: `SHA256:` and the unpadded base64 of the digest.
    pub fn fingerprint(&self) -> String {
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(&self.blob))
        )
    }

    /// The OpenSSH public key line (`ssh-ed25519 AAAA...`).
    pub fn openssh(&self) -> String {
        format!(
            "{} {}",
            self.kind,
            base64::engine::general_purpose::STANDARD.encode(&self.blob)
        )
    }

    pub fn parse(line: &str) -> Result<HostKey, String> {
        let mut parts = line.split_whitespace();
        let (Some(kind), Some(data)) = (parts.next(), parts.next()) else {
            return Err("a host key is `TYPE BASE64` (as `ssh-keyscan` prints it)".to_string());
        };
        let blob = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("the host key's base64 is damaged ({e})"))?;
        Ok(HostKey {
            kind: kind.to_string(),
            blob,
        })
    }
}

/// The key a host presents, from the SSH handshake alone.
pub fn scan(name: &str, address: &str, port: u16, timeout: Duration) -> Result<HostKey, String> {
    let (session, _) = open(name, address, port, timeout)?;
    presented(&session, name)
}

fn presented(session: &Session, name: &str) -> Result<HostKey, String> {
    let (blob, kind) = session
        .host_key()
        .ok_or_else(|| format!("host {name} presented no host key"))?;
    let kind = match kind {
        HostKeyType::Rsa => "ssh-rsa",
        HostKeyType::Dss => "ssh-dss",
        HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        HostKeyType::Ed25519 => "ssh-ed25519",
        HostKeyType::Unknown => "unknown",
    };
    Ok(HostKey {
        kind: kind.to_string(),
        blob: blob.to_vec(),
    })
}

fn open(
    name: &str,
    address: &str,
    port: u16,
    timeout: Duration,
) -> Result<(Session, TcpStream), String> {
    let unreachable =
        |e: &dyn std::fmt::Display| format!("host {name} is unreachable at {address}:{port}: {e}");
    let addr = (address, port)
        .to_socket_addrs()
        .map_err(|e| unreachable(&e))?
        .next()
        .ok_or_else(|| unreachable(&"the name has no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| unreachable(&e))?;
    let _ = tcp.set_nodelay(true);
    let socket = tcp.try_clone().map_err(|e| unreachable(&e))?;
    let mut session = Session::new().map_err(|e| unreachable(&e))?;
    session.set_tcp_stream(tcp);
    session.set_timeout(timeout.as_millis().min(u128::from(u32::MAX)) as u32);
    // Ed25519 first, as OpenSSH does: the key `cvl host add` records.
    let _ = session.method_pref(
        ssh2::MethodType::HostKey,
        "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256,ssh-rsa",
    );
    session
        .handshake()
        .map_err(|e| format!("host {name} at {address}:{port}: the SSH handshake failed: {e}"))?;
    Ok((session, socket))
}

fn verify(session: &Session, host: &SshHost) -> Result<(), String> {
    let got = presented(session, &host.name)?;
    let Some(recorded) = &host.host_key else {
        return Err(format!(
            "host {} has no recorded host key; it presents {} {}. Check that fingerprint on \
             the host (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then run \
             `cvl host trust {} --fingerprint {}`",
            host.name,
            got.kind,
            got.fingerprint(),
            host.name,
            got.fingerprint()
        ));
    };
    let recorded = HostKey::parse(recorded)?;
    if got != recorded {
        return Err(format!(
            "host {} presented the {} key {}, not the recorded {} key {}: it may be another \
             machine, or the host was reinstalled. Nothing was run there. Check the new \
             fingerprint on the host (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then \
             accept it with `cvl host trust {} --fingerprint {}`",
            host.name,
            got.kind,
            got.fingerprint(),
            recorded.kind,
            recorded.fingerprint(),
            host.name,
            got.fingerprint()
        ));
    }
    Ok(())
}

fn authenticate(session: &Session, host: &SshHost) -> Result<(), String> {
    let result = match &host.identity {
        Some(key) => session.userauth_pubkey_file(&host.user, None, key, None),
        None => session.userauth_agent(&host.user),
    };
    match result {
        Ok(()) if session.authenticated() => Ok(()),
        Ok(()) => Err(format!(
            "host {}: authentication did not complete",
            host.name
        )),
        Err(e) => Err(format!(
            "host {}: {}@{} refused the key {} ({e}); give a key it accepts with \
             `cvl host add {} ... --identity FILE`",
            host.name,
            host.user,
            host.address,
            host.identity
                .as_ref()
                .map_or("of the SSH agent".to_string(), |k| k.display().to_string()),
            host.name
        )),
    }
}

/// Runs a fixed command (no value from any appliance in it) and returns its
/// exit status and what it printed.
fn run(session: &Session, command: &str, host: &str) -> Result<(i32, String), String> {
    let fail = |e: ssh2::Error| format!("host {host}: `{command}` failed: {e}");
    let mut channel = session.channel_session().map_err(fail)?;
    channel.exec(command).map_err(fail)?;
    let mut said = String::new();
    let _ = channel.read_to_string(&mut said);
    let _ = channel.stderr().read_to_string(&mut said);
    channel.wait_close().map_err(fail)?;
    Ok((
        channel.exit_status().map_err(fail)?,
        said.trim().to_string(),
    ))
}

/// `'...'` for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What callers write: queued for the pump thread.
struct Queue(mpsc::Sender<Vec<u8>>);

impl Write for Queue {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.send(buf.to_vec()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "connection closed")
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct SshLink {
    mux: Arc<Mux>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Link for SshLink {
    fn call(&self, request: &Request, timeout: Duration) -> Result<Response, String> {
        self.mux.call(request, timeout)
    }

    fn remote(&self) -> bool {
        true
    }
}

impl Drop for SshLink {
    fn drop(&mut self) {
        self.mux.finish();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

/// Owns the session: sends what is queued, delivers what arrives, forwards
/// the agent's own messages (stderr) prefixed with the host's name, keeps
/// the connection alive; at the end of the queue, ends the agent's input
/// and waits (a bounded time) for it to finish what is under way.
fn pump(
    host: &str,
    session: Session,
    mut channel: Channel,
    socket: TcpStream,
    queue: mpsc::Receiver<Vec<u8>>,
    mux: Arc<Mux>,
) {
    session.set_blocking(false);
    session.set_keepalive(false, 15);
    let would_block = |e: &std::io::Error| e.kind() == std::io::ErrorKind::WouldBlock;
    let mut out: Vec<u8> = Vec::new();
    let mut lines: Vec<u8> = Vec::new();
    let mut errors: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut closing: Option<Instant> = None;
    let mut eof_sent = false;
    let why = loop {
        let mut progress = false;
        loop {
            match queue.try_recv() {
                Ok(bytes) => out.extend(bytes),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    closing.get_or_insert_with(Instant::now);
                    break;
                }
            }
        }
        if !out.is_empty() {
            match channel.write(&out) {
                Ok(n) => {
                    out.drain(..n);
                    progress |= n > 0;
                }
                Err(e) if would_block(&e) => {}
                Err(e) => break format!("the connection to host {host} broke: {e}"),
            }
        }
        if closing.is_some() && out.is_empty() && !eof_sent {
            match channel.send_eof() {
                Ok(()) => eof_sent = true,
                Err(e) if e.code() == ssh2::ErrorCode::Session(-37) => {} // EAGAIN
                Err(e) => break format!("the connection to host {host} broke: {e}"),
            }
        }
        match channel.read(&mut buf) {
            Ok(0) if channel.eof() => break format!("the host agent on {host} exited"),
            Ok(0) => {}
            Ok(n) => {
                progress = true;
                // Only the new bytes are looked at for an end of line: an
                // answer of megabytes (a migration's piece) arrives in many
                // reads, and scanning it whole each time was quadratic.
                let mut from = lines.len();
                lines.extend_from_slice(&buf[..n]);
                while let Some(at) = lines[from..].iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = lines.drain(..=from + at).collect();
                    mux.deliver(&String::from_utf8_lossy(&line));
                    from = 0;
                }
            }
            Err(e) if would_block(&e) => {}
            Err(e) => break format!("the connection to host {host} broke: {e}"),
        }
        match channel.stderr().read(&mut buf) {
            Ok(n) if n > 0 => {
                progress = true;
                errors.extend_from_slice(&buf[..n]);
                while let Some(end) = errors.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = errors.drain(..=end).collect();
                    eprint!("{host}: {}", String::from_utf8_lossy(&line));
                }
            }
            _ => {}
        }
        let _ = session.keepalive_send();
        if closing.is_some_and(|t| t.elapsed() > Duration::from_secs(30)) {
            break format!("the host agent on {host} did not finish in time");
        }
        if !progress {
            let mut fd = libc::pollfd {
                fd: socket.as_raw_fd(),
                events: libc::POLLIN | if out.is_empty() { 0 } else { libc::POLLOUT },
                revents: 0,
            };
            // SAFETY: one pollfd that lives across the call.
            unsafe { libc::poll(&mut fd, 1, 5) };
        }
    };
    mux.close(why);
    session.set_blocking(true);
    session.set_timeout(2000);
    let _ = channel.close();
}
