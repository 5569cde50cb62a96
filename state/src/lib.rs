//! The utility's state store: the only code that opens the state.
//!
//! By default an SQLite file (`$CVL_HOME/state.db`, [`sqlite`]); for a team
//! and its CI, a PostgreSQL database ([`pg`]). Both hold the same
//! schema, written once with every statement on it ([`schema`]); every
//! commit is one transaction with one writer at a time, so a crash at any
//! instant leaves the last committed state, whole. A state that is not
//! ours, is damaged, or was written by a newer `cvl` is refused with a
//! message and never rewritten. A serial counts every commit; a random
//! lineage names the state, so that a saved plan can tell it is applied to
//! the state it was made from. The apply lock keeps a second `cvl apply` out
//! while one runs.
//!
//! Hosts, pools, VANs and interfaces are columns (with uniqueness of MACs,
//! IPs and network numbers enforced by the database itself); what a VM runs
//! with is kept beside them as the JSON of its [`VmRecord`].

mod pg;
mod schema;
mod sqlite;

pub use pg::APPLY_LOCK as POSTGRES_APPLY_LOCK;
pub use schema::SCHEMA_VERSION;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cvl_planner::model::{Change, UtilityState};

/// What can go wrong with the state.
#[derive(Debug)]
pub enum StateError {
    /// Not a CVL state database, or damaged. Never modified.
    Corrupt {
        path: PathBuf,
        detail: String,
    },
    /// Written by a newer `cvl`. Never modified.
    NewerSchema {
        path: PathBuf,
        found: i64,
    },
    /// Another `cvl` holds the write lock past the wait.
    Busy {
        path: PathBuf,
        waited: Duration,
    },
    /// A `cvl utility run` already serves this state.
    ServiceRunning {
        path: PathBuf,
        holder: String,
    },
    /// Another `cvl` is applying a plan to this state.
    Locked {
        path: PathBuf,
        /// Who holds it and since when, as the holder wrote it.
        holder: String,
        waited: Duration,
    },
    /// A change contradicts the state (a MAC or address already taken).
    Conflict {
        detail: String,
    },
    Io {
        path: PathBuf,
        detail: String,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Corrupt { path, detail } => write!(
                f,
                "{} is not a CVL state database or is damaged ({detail}); it was not modified: \
                 restore it from a backup, or move it aside to start with an empty state",
                path.display()
            ),
            StateError::NewerSchema { path, found } => write!(
                f,
                "{} was written by a newer cvl (state schema {found}; this cvl reads up to \
                 {SCHEMA_VERSION}); it was not modified: upgrade cvl",
                path.display()
            ),
            StateError::Busy { path, waited } => write!(
                f,
                "another cvl is writing {} and did not finish within {} s; try again when it \
                 has finished",
                path.display(),
                waited.as_secs()
            ),
            StateError::Locked {
                path,
                holder,
                waited,
            } => write!(
                f,
                "another cvl is applying a plan to {} ({holder}){}; wait for it to finish, or \
                 give --lock-timeout to wait here",
                path.display(),
                if waited.is_zero() {
                    String::new()
                } else {
                    format!(", still after {} s", waited.as_secs())
                }
            ),
            StateError::ServiceRunning { path, holder } => write!(
                f,
                "a utility service already runs on {} ({holder}): one service per state; stop \
                 it first (or use another state)",
                path.display()
            ),
            StateError::Conflict { detail } => {
                write!(f, "the change contradicts the state: {detail}")
            }
            StateError::Io { path, detail } => write!(f, "{}: {detail}", path.display()),
        }
    }
}

impl std::error::Error for StateError {}

pub type Result<T> = std::result::Result<T, StateError>;

/// Which of the state's two locks: one apply at a time, one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockKind {
    Apply,
    Service,
}

impl LockKind {
    fn held(self, path: &Path, holder: String, waited: Duration) -> StateError {
        match self {
            LockKind::Apply => StateError::Locked {
                path: path.to_path_buf(),
                holder,
                waited,
            },
            LockKind::Service => StateError::ServiceRunning {
                path: path.to_path_buf(),
                holder,
            },
        }
    }
}

/// A lock on the state (the apply lock, the service lock), released when
/// dropped, or when the process holding it dies (the kernel drops its
/// `flock`; PostgreSQL ends its session).
pub enum ApplyLock {
    None,
    File(std::fs::File),
    Session(Box<::postgres::Client>),
}

impl ApplyLock {
    /// Whether the lock is still held: a file lock is while its process
    /// lives; a PostgreSQL session lock only while its session does (a cut
    /// connection ends it, and another may take the lock).
    pub fn held(&mut self) -> bool {
        match self {
            ApplyLock::None | ApplyLock::File(_) => true,
            ApplyLock::Session(client) => pg::session_holds_a_lock(client),
        }
    }
}

/// What a lock holder says of itself.
fn holder(who: &str) -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this machine".to_string());
    format!(
        "{who}, pid {} on {host}, since {}",
        std::process::id(),
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(since))
    )
}

fn holder_or_unknown(said: &str) -> String {
    if said.trim().is_empty() {
        "it did not say who it is".to_string()
    } else {
        said.trim().to_string()
    }
}

enum Backend {
    Sqlite(rusqlite::Connection),
    Postgres {
        client: Box<::postgres::Client>,
        url: String,
    },
}

/// The open state.
pub struct Store {
    backend: Backend,
    /// The file, or the database's URL without its password: for messages.
    place: PathBuf,
    busy_wait: Duration,
}

impl Store {
    /// Opens (creating when missing) the state at `path`, migrating an older
    /// schema; refuses a damaged, foreign or newer one without writing.
    pub fn open(path: &Path) -> Result<Store> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::open(path)?),
            place: path.to_path_buf(),
            busy_wait: Duration::from_secs(10),
        })
    }

    /// Opens the state in the PostgreSQL database at `url`
    /// (`postgres://user@host/db`, or `postgresql:///db?host=/run/postgresql`
    /// for a local socket), creating the schema in an empty one.
    pub fn open_url(url: &str) -> Result<Store> {
        Ok(Store {
            backend: Backend::Postgres {
                client: Box::new(pg::open(url)?),
                url: url.to_string(),
            },
            place: PathBuf::from(pg::redact(url)),
            busy_wait: Duration::from_secs(10),
        })
    }

    /// Opens an existing SQLite state for reading only: nothing is created
    /// or written (see `sqlite::open_read_only`). For looking, never for
    /// `commit`, which then fails.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::open_read_only(path)?),
            place: path.to_path_buf(),
            busy_wait: Duration::from_secs(2),
        })
    }

    /// A state in memory, for tests.
    pub fn in_memory() -> Result<Store> {
        Ok(Store {
            backend: Backend::Sqlite(sqlite::in_memory()?),
            place: PathBuf::from(":memory:"),
            busy_wait: Duration::from_secs(10),
        })
    }

    /// How long a writer waits for another to finish (default 10 s).
    pub fn set_busy_wait(&mut self, wait: Duration) {
        self.busy_wait = wait;
        if let Backend::Sqlite(conn) = &self.backend {
            sqlite::set_busy_wait(conn, wait);
        }
    }

    /// The file, or the database's URL without its password.
    pub fn path(&self) -> &Path {
        &self.place
    }

    /// Takes the state's apply lock, held until the returned guard drops:
    /// one apply at a time (each of its steps is a transaction of its own,
    /// so transactions alone would let two applies interleave). Waits up to
    /// `wait` for a holder to finish, then fails naming it. `who` says what
    /// this process is doing, for the next one to read.
    pub fn lock_apply(&self, who: &str, wait: Duration) -> Result<ApplyLock> {
        self.lock(LockKind::Apply, who, wait)
    }

    /// Takes the state's service lock for the life of a `cvl utility run`:
    /// a second service on the same state is refused, naming the first.
    pub fn lock_service(&self, who: &str) -> Result<ApplyLock> {
        self.lock(LockKind::Service, who, Duration::ZERO)
    }

    fn lock(&self, kind: LockKind, who: &str, wait: Duration) -> Result<ApplyLock> {
        match &self.backend {
            Backend::Sqlite(_) if self.place == Path::new(":memory:") => Ok(ApplyLock::None),
            Backend::Sqlite(_) => sqlite::lock(&self.place, kind, who, wait),
            Backend::Postgres { url, .. } => pg::lock(url, kind, who, wait),
        }
    }

    fn read<T>(
        &mut self,
        f: impl FnOnce(&mut dyn schema::Sql) -> std::result::Result<T, schema::DbError>,
    ) -> Result<T> {
        let result = match &mut self.backend {
            Backend::Sqlite(conn) => sqlite::read(conn, f),
            Backend::Postgres { client, .. } => pg::read(client, f),
        };
        result.map_err(|e| db_error(&self.place, self.busy_wait, e))
    }

    fn write<T>(
        &mut self,
        f: impl FnOnce(&mut dyn schema::Sql) -> std::result::Result<T, schema::DbError>,
    ) -> Result<T> {
        let result = match &mut self.backend {
            Backend::Sqlite(conn) => sqlite::write(conn, f),
            Backend::Postgres { client, .. } => pg::write(client, self.busy_wait, f),
        };
        result.map_err(|e| db_error(&self.place, self.busy_wait, e))
    }

    /// The key sensitive values are fingerprinted under. It never leaves the
    /// state database.
    pub fn fingerprint_key(&mut self) -> Result<Vec<u8>> {
        let hex_key = self.read(|tx| schema::meta(tx, "fingerprint_key"))?;
        unhex(&hex_key).ok_or_else(|| StateError::Corrupt {
            path: self.place.clone(),
            detail: "the fingerprint key is not hex".to_string(),
        })
    }

    /// Everything the utility knows, read in one transaction.
    pub fn load(&mut self) -> Result<UtilityState> {
        self.read(schema::load)
    }

    /// The log of what was done (`cvl history`), newest last: at most
    /// `limit` entries, of one deployment or of all.
    pub fn history(
        &mut self,
        deployment: Option<&str>,
        limit: u32,
    ) -> Result<Vec<cvl_planner::model::HistoryEntry>> {
        self.read(|tx| schema::history(tx, deployment, limit))
    }

    /// Records `changes` in one transaction (one writer at a time) and
    /// returns the new serial. All or nothing.
    pub fn commit(&mut self, changes: &[Change]) -> Result<u64> {
        self.write(|tx| schema::commit(tx, changes))
    }

    /// Checks the database whole (SQLite's `PRAGMA integrity_check`;
    /// PostgreSQL checks its own pages).
    pub fn integrity_check(&self) -> Result<()> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                sqlite::integrity_check(conn).map_err(|e| db_error(&self.place, self.busy_wait, e))
            }
            Backend::Postgres { .. } => Ok(()),
        }
    }
}

fn db_error(place: &Path, waited: Duration, e: schema::DbError) -> StateError {
    match e {
        schema::DbError::Busy => StateError::Busy {
            path: place.to_path_buf(),
            waited,
        },
        schema::DbError::Conflict(detail) => StateError::Conflict { detail },
        schema::DbError::Corrupt(detail) => StateError::Corrupt {
            path: place.to_path_buf(),
            detail,
        },
        schema::DbError::Other(detail) => StateError::Io {
            path: place.to_path_buf(),
            detail,
        },
    }
}

/// `0a:c7:1a` as bytes.
pub fn parse_prefix(text: &str) -> Option<[u8; 3]> {
    let parts: Vec<u8> = text
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).ok().filter(|_| p.len() == 2))
        .collect::<Option<_>>()?;
    <[u8; 3]>::try_from(parts).ok()
}

fn random_bytes(n: usize, path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| StateError::Io {
            path: path.to_path_buf(),
            detail: format!("cannot read /dev/urandom for a new state's keys: {e}"),
        })?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

/// Whether `path` holds a state at all (without creating one).
pub fn exists(path: &Path) -> bool {
    path.is_file()
}

/// Opens read-only, for commands that only look (`cvl plan`, `status`) when
/// no state exists yet: `None` means an empty, never-written state.
pub fn open_existing(path: &Path) -> Result<Option<Store>> {
    if !exists(path) {
        return Ok(None);
    }
    Store::open(path).map(Some)
}
