//! The user agent (like ssh-agent): a process that holds the vault's values
//! decrypted in memory, answers requests on a Unix socket in a folder only
//! its user can enter, checks every peer's credentials, and forgets the
//! values a lifetime after they were unlocked. Its memory is kept out of
//! swap where the system allows and out of core dumps.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::protocol::{Failure, Request, Response, Status, MAX_LINE};
use crate::vault::{Cost, Key, Values, Vault};
use crate::Error;

#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub vault: PathBuf,
    /// How long values stay decrypted after an unlock.
    pub lifetime: Duration,
    pub cost: Cost,
    /// What [`harden`] returned: shown by `status`.
    pub memory_locked: bool,
}

struct Unlocked {
    values: Values,
    key: Key,
    at: Instant,
}

struct Shared {
    config: Config,
    vault: Vault,
    unlocked: Mutex<Option<Unlocked>>,
    /// Wakes the timer when an unlock resets the lifetime, or to stop.
    wake: Condvar,
    stopping: Mutex<bool>,
    memory_locked: bool,
    /// Raised whenever the values it answers with may change (unlocked,
    /// locked, forgotten, set, removed): a reader such as the utility
    /// service asks again only then.
    generation: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn changed(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A bound socket, ready to serve: binding first lets the caller that
/// starts the agent in the background learn of a failure before it detaches.
pub struct Agent {
    listener: UnixListener,
    shared: Arc<Shared>,
}

impl Agent {
    /// Binds the socket. Refuses a folder someone else can enter and a
    /// socket another agent answers on; removes a stale one.
    pub fn bind(config: Config) -> Result<Agent, Error> {
        let memory_locked = config.memory_locked;
        let dir = config
            .socket
            .parent()
            .ok_or_else(|| Error::Io("the socket path has no folder".into()))?;
        prepare_dir(dir)?;
        if config.socket.as_os_str().len() > 100 {
            return Err(Error::Io(format!(
                "the socket path {} is too long for a Unix socket: set CVL_AGENT_SOCK to a \
                 shorter path",
                config.socket.display()
            )));
        }
        if config.socket.exists() {
            if UnixStream::connect(&config.socket).is_ok() {
                return Err(Error::Io(format!(
                    "an agent already answers on {}: stop it with `cvl agent --stop` first",
                    config.socket.display()
                )));
            }
            std::fs::remove_file(&config.socket).map_err(|e| {
                Error::Io(format!(
                    "cannot remove the stale socket {}: {e}",
                    config.socket.display()
                ))
            })?;
        }
        let listener = UnixListener::bind(&config.socket)
            .map_err(|e| Error::Io(format!("cannot listen on {}: {e}", config.socket.display())))?;
        std::fs::set_permissions(&config.socket, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::Io(format!("{}: {e}", config.socket.display())))?;
        let vault = Vault::new(config.vault.clone());
        Ok(Agent {
            listener,
            shared: Arc::new(Shared {
                config,
                vault,
                unlocked: Mutex::new(None),
                wake: Condvar::new(),
                stopping: Mutex::new(false),
                memory_locked,
                generation: Default::default(),
            }),
        })
    }

    pub fn memory_locked(&self) -> bool {
        self.shared.memory_locked
    }

    /// Serves until a `stop` request; then removes the socket.
    pub fn serve(self) -> Result<(), Error> {
        let shared = self.shared.clone();
        std::thread::spawn(move || forget_when_due(&shared));
        let socket = self.shared.config.socket.clone();
        for stream in self.listener.incoming() {
            if *self.shared.stopping.lock().unwrap() {
                break;
            }
            let Ok(stream) = stream else { continue };
            let shared = self.shared.clone();
            std::thread::spawn(move || {
                if let Err(e) = serve_one(&shared, stream) {
                    eprintln!("cvl agent: a client: {e}");
                }
            });
        }
        let _ = std::fs::remove_file(&socket);
        Ok(())
    }
}

/// Prepares the agent's process: no core dumps, no ptrace by the user's
/// other processes, memory locked against swapping where allowed (returned).
pub fn harden() -> bool {
    // SAFETY: prctl with PR_SET_DUMPABLE takes an integer and has no
    // memory effects.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    lock_memory()
}

/// Locks the agent's pages in memory (as they are touched) where the limit
/// allows: the key derivation alone touches 64 MiB.
fn lock_memory() -> bool {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } == 0;
    let enough = ok && (limit.rlim_cur == libc::RLIM_INFINITY || limit.rlim_cur >= 512 << 20);
    if !(enough || crate::euid() == 0) {
        return false;
    }
    // SAFETY: mlockall takes flags only.
    unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE | libc::MCL_ONFAULT) == 0 }
}

/// The socket's folder: created 0700; if it exists, it must be ours and
/// closed to others.
fn prepare_dir(dir: &Path) -> Result<(), Error> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Io(format!("cannot create {}: {e}", dir.display())))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    }
    let meta = std::fs::metadata(dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    if meta.uid() != crate::euid() || meta.mode() & 0o077 != 0 {
        return Err(Error::Foreign(format!(
            "the agent's folder {} belongs to uid {} with mode {:o}: it must be yours with \
             mode 700",
            dir.display(),
            meta.uid(),
            meta.mode() & 0o777
        )));
    }
    Ok(())
}

fn forget_when_due(shared: &Shared) {
    let mut unlocked = shared.unlocked.lock().unwrap();
    loop {
        if *shared.stopping.lock().unwrap() {
            return;
        }
        let wait = match &*unlocked {
            Some(u) => {
                let due = u.at + shared.config.lifetime;
                let now = Instant::now();
                if now >= due {
                    *unlocked = None; // values and key zeroized on drop
                    shared.changed();
                    continue;
                }
                due - now
            }
            None => Duration::from_secs(3600),
        };
        unlocked = shared.wake.wait_timeout(unlocked, wait).unwrap().0;
    }
}

/// The uid of the process at the other end.
fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is
    // a ucred as SO_PEERCRED requires.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

fn serve_one(shared: &Shared, stream: UnixStream) -> std::io::Result<()> {
    let uid = peer_uid(&stream)?;
    if uid != crate::euid() {
        return Err(std::io::Error::other(format!(
            "refused a connection from uid {uid}"
        )));
    }
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    let mut reader = BufReader::new(std::io::Read::take(stream.try_clone()?, u64::MAX));
    let mut writer = stream;
    loop {
        let mut line = Zeroizing::new(String::new());
        reader.get_mut().set_limit(MAX_LINE);
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let (response, stop) = match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                let stop = matches!(request, Request::Stop);
                (handle(shared, request), stop)
            }
            Err(e) => (
                failure(
                    Failure::BadRequest,
                    format!("a request this agent does not understand: {e}"),
                ),
                false,
            ),
        };
        let mut out = Zeroizing::new(serde_json::to_vec(&response).expect("responses serialize"));
        drop(response);
        out.push(b'\n');
        writer.write_all(&out)?;
        if stop {
            *shared.stopping.lock().unwrap() = true;
            *shared.unlocked.lock().unwrap() = None;
            shared.wake.notify_all();
            // Wake the accept loop so that it sees `stopping`.
            let _ = UnixStream::connect(&shared.config.socket);
            return Ok(());
        }
    }
}

fn failure(kind: Failure, message: String) -> Response {
    Response {
        failure: Some(kind),
        message,
        ..Default::default()
    }
}

fn from_error(e: Error) -> Response {
    let kind = match &e {
        Error::Locked(_) => Failure::Locked,
        Error::NoVault(_) => Failure::NoVault,
        Error::WrongPassphrase(_) => Failure::WrongPassphrase,
        Error::Damaged(_) => Failure::Damaged,
        Error::Newer(_) => Failure::Newer,
        _ => Failure::Io,
    };
    failure(kind, e.to_string())
}

fn handle(shared: &Shared, request: Request) -> Response {
    match handle_inner(shared, &request) {
        Ok(r) => r,
        Err(e) => from_error(e),
    }
}

fn locked(shared: &Shared) -> Error {
    Error::Locked(format!(
        "the agent is locked: unlock the vault {} with `cvl secrets unlock`",
        shared.vault.path.display()
    ))
}

fn handle_inner(shared: &Shared, request: &Request) -> Result<Response, Error> {
    let mut unlocked = shared.unlocked.lock().unwrap();
    match request {
        Request::Status => Ok(Response {
            status: Some(status(shared, &unlocked)),
            ..Default::default()
        }),
        Request::Unlock { passphrase, create } => {
            let (values, key) = if shared.vault.exists() {
                shared.vault.open(passphrase.as_bytes())?
            } else if *create {
                let key = Key::new(passphrase.as_bytes(), shared.config.cost)?;
                let values = Values::default();
                shared.vault.write(&values, &key)?;
                (values, key)
            } else {
                return Err(Error::NoVault(format!(
                    "there is no vault at {} yet: `cvl secrets unlock` creates one",
                    shared.vault.path.display()
                )));
            };
            *unlocked = Some(Unlocked {
                values,
                key,
                at: Instant::now(),
            });
            shared.changed();
            shared.wake.notify_all();
            Ok(Response {
                status: Some(status(shared, &unlocked)),
                ..Default::default()
            })
        }
        Request::Lock => {
            *unlocked = None;
            shared.changed();
            Ok(Response::default())
        }
        Request::Stop => Ok(Response::default()),
        Request::Get { keys } => {
            let u = unlocked.as_ref().ok_or_else(|| locked(shared))?;
            Ok(Response {
                values: keys
                    .iter()
                    .filter_map(|k| u.values.0.get(k).map(|v| (k.clone(), v.clone())))
                    .collect(),
                ..Default::default()
            })
        }
        Request::List => {
            let u = unlocked.as_ref().ok_or_else(|| locked(shared))?;
            Ok(Response {
                keys: u.values.0.keys().cloned().collect(),
                ..Default::default()
            })
        }
        Request::Set { key, value } => {
            check_key(key)?;
            let u = unlocked.as_mut().ok_or_else(|| locked(shared))?;
            let old = u.values.0.insert(key.clone(), value.clone());
            if let Err(e) = shared.vault.write(&u.values, &u.key) {
                match old {
                    Some(old) => u.values.0.insert(key.clone(), old),
                    None => u.values.0.remove(key),
                };
                return Err(e);
            }
            shared.changed();
            Ok(Response::default())
        }
        Request::Remove { key } => {
            let u = unlocked.as_mut().ok_or_else(|| locked(shared))?;
            let Some(old) = u.values.0.remove(key) else {
                return Ok(failure(
                    Failure::BadRequest,
                    format!("the vault has no value {key}"),
                ));
            };
            if let Err(e) = shared.vault.write(&u.values, &u.key) {
                u.values.0.insert(key.clone(), old);
                return Err(e);
            }
            shared.changed();
            Ok(Response::default())
        }
        Request::Passwd { old, new } => {
            let (values, _) = shared.vault.open(old.as_bytes())?;
            let key = Key::new(new.as_bytes(), shared.config.cost)?;
            shared.vault.write(&values, &key)?;
            *unlocked = Some(Unlocked {
                values,
                key,
                at: Instant::now(),
            });
            shared.changed();
            shared.wake.notify_all();
            Ok(Response::default())
        }
    }
}

/// `Deployment/param.path`: what `cvl plan` asks for.
fn check_key(key: &str) -> Result<(), Error> {
    let ok = key.split_once('/').is_some_and(|(d, p)| {
        !d.is_empty()
            && !p.is_empty()
            && key
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Io(format!(
            "`{key}` is not a secret's name: write DEPLOYMENT/PARAMETER, e.g. AcmeSuite/rootpw"
        )))
    }
}

fn status(shared: &Shared, unlocked: &Option<Unlocked>) -> Status {
    Status {
        pid: std::process::id(),
        locked: unlocked.is_none(),
        vault: shared.vault.path.display().to_string(),
        vault_exists: shared.vault.exists(),
        forget_in_secs: unlocked.as_ref().map(|u| {
            (u.at + shared.config.lifetime)
                .saturating_duration_since(Instant::now())
                .as_secs()
        }),
        memory_locked: shared.memory_locked,
        values: unlocked.as_ref().map_or(0, |u| u.values.0.len()),
        generation: shared.generation.load(std::sync::atomic::Ordering::Relaxed),
    }
}
