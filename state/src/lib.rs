//! The utility's state store: the only code that opens `state.db`.
//!
//! SQLite (bundled) in WAL mode with `synchronous=FULL`: every commit is one
//! `BEGIN IMMEDIATE` transaction, so there is one writer at a time and a
//! crash at any instant leaves the last committed state, whole. The schema
//! has a version (`PRAGMA user_version`) with migrations, and an
//! application id, so a file that is not ours, is damaged, or was written by
//! a newer `cvl` is refused with a message and never rewritten. A serial
//! counts every commit; a random lineage names the state, so that a saved
//! plan can tell it is applied to the state it was made from.
//!
//! Hosts, pools, VANs and interfaces are columns (with uniqueness of MACs,
//! IPs and network numbers enforced by the database itself); what a VM runs
//! with is kept beside them as the JSON of its [`VmRecord`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cvl_planner::model::{
    Change, ComponentPath, DeploymentState, Host, Pools, Status, UtilityState, VmRecord,
};
use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};

/// `CVL1`, in the SQLite header: this file is a CVL state database.
const APPLICATION_ID: i64 = 0x4356_4C31;

/// Migrations: entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE hosts (
    name TEXT PRIMARY KEY,
    address TEXT,
    port INTEGER NOT NULL,
    host_key TEXT,
    memory_mib INTEGER NOT NULL,
    max_vms INTEGER NOT NULL,
    uplink TEXT
);
CREATE TABLE pools (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    networks_first INTEGER NOT NULL,
    networks_last INTEGER NOT NULL,
    public_first TEXT NOT NULL,
    public_last TEXT NOT NULL,
    mac_prefix TEXT NOT NULL
);
CREATE TABLE vans (
    deployment TEXT NOT NULL,
    path TEXT NOT NULL,
    network INTEGER NOT NULL UNIQUE,
    PRIMARY KEY (deployment, path)
);
CREATE TABLE vms (
    deployment TEXT NOT NULL,
    path TEXT NOT NULL,
    host TEXT NOT NULL,
    status TEXT NOT NULL,
    appliance_source TEXT NOT NULL,
    appliance_version INTEGER,
    appliance_digest TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (deployment, path)
);
CREATE TABLE interfaces (
    deployment TEXT NOT NULL,
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    mac TEXT NOT NULL UNIQUE,
    ip TEXT UNIQUE,
    network INTEGER,
    PRIMARY KEY (deployment, path, name),
    FOREIGN KEY (deployment, path) REFERENCES vms (deployment, path) ON DELETE CASCADE
);
"#,
    r#"
ALTER TABLE hosts ADD COLUMN ssh_user TEXT;
ALTER TABLE hosts ADD COLUMN identity TEXT;
ALTER TABLE hosts ADD COLUMN root TEXT;
"#,
];

/// The schema version this `cvl` writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

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
            StateError::Conflict { detail } => {
                write!(f, "the change contradicts the state: {detail}")
            }
            StateError::Io { path, detail } => write!(f, "{}: {detail}", path.display()),
        }
    }
}

impl std::error::Error for StateError {}

pub type Result<T> = std::result::Result<T, StateError>;

/// The apply lock, released when dropped (or when the process dies: the
/// kernel drops its `flock`).
pub struct ApplyLock {
    _file: Option<std::fs::File>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "this machine".to_string())
}

/// The open state database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    busy_wait: Duration,
}

impl Store {
    /// Opens (creating when missing) the state at `path`, migrating an older
    /// schema; refuses a damaged, foreign or newer one without writing.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StateError::Io {
                path: dir.to_path_buf(),
                detail: e.to_string(),
            })?;
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StateError::Io {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        Store::init(conn, path.to_path_buf())
    }

    /// A state in memory, for tests.
    pub fn in_memory() -> Result<Store> {
        let conn = Connection::open_in_memory().map_err(|e| StateError::Io {
            path: PathBuf::from(":memory:"),
            detail: e.to_string(),
        })?;
        Store::init(conn, PathBuf::from(":memory:"))
    }

    /// How long a writer waits for another to finish (default 10 s).
    pub fn set_busy_wait(&mut self, wait: Duration) {
        self.busy_wait = wait;
        let _ = self.conn.busy_timeout(wait);
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Store> {
        let corrupt = |e: rusqlite::Error| StateError::Corrupt {
            path: path.clone(),
            detail: e.to_string(),
        };
        // Read before anything writes: a damaged or foreign file fails here.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(corrupt)?;
        let app: i64 = conn
            .query_row("PRAGMA application_id", [], |r| r.get(0))
            .map_err(corrupt)?;
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(corrupt)?;
        if tables > 0 && app != APPLICATION_ID {
            return Err(StateError::Corrupt {
                path,
                detail: "it is an SQLite database of something else".to_string(),
            });
        }
        if version > SCHEMA_VERSION {
            return Err(StateError::NewerSchema {
                path,
                found: version,
            });
        }
        let wait = Duration::from_secs(10);
        conn.busy_timeout(wait).map_err(corrupt)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(corrupt)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(corrupt)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(corrupt)?;
        let mut store = Store {
            conn,
            path,
            busy_wait: wait,
        };
        store.migrate(version)?;
        Ok(store)
    }

    fn migrate(&mut self, from: i64) -> Result<()> {
        if from == SCHEMA_VERSION {
            return Ok(());
        }
        let path = self.path.clone();
        let busy_wait = self.busy_wait;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sql_error(&path, busy_wait, e))?;
        // Another process may have migrated while this one waited.
        let now: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| sql_error(&path, busy_wait, e))?;
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(now as usize) {
            tx.execute_batch(migration)
                .map_err(|e| sql_error(&path, busy_wait, e))?;
            if i == 0 {
                let lineage = hex(&random_bytes(16, &path)?);
                let key = hex(&random_bytes(32, &path)?);
                let pools = Pools::default();
                tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))
                    .map_err(|e| sql_error(&path, busy_wait, e))?;
                for (k, v) in [
                    ("lineage", lineage),
                    ("serial", "0".to_string()),
                    ("fingerprint_key", key),
                ] {
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                        params![k, v],
                    )
                    .map_err(|e| sql_error(&path, busy_wait, e))?;
                }
                write_pools(&tx, &pools).map_err(|e| sql_error(&path, busy_wait, e))?;
            }
        }
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(|e| sql_error(&path, busy_wait, e))?;
        tx.commit().map_err(|e| sql_error(&path, busy_wait, e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the state's apply lock, held until the returned guard drops:
    /// one apply at a time (each of its steps is a transaction of its own,
    /// so transactions alone would let two applies interleave). Waits up to
    /// `wait` for a holder to finish, then fails naming it. `who` says what
    /// this process is doing, for the next one to read.
    pub fn lock_apply(&self, who: &str, wait: Duration) -> Result<ApplyLock> {
        if self.path == Path::new(":memory:") {
            return Ok(ApplyLock { _file: None });
        }
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".apply-lock");
        let path = self.path.with_file_name(name);
        let io = |e: std::io::Error| StateError::Io {
            path: path.clone(),
            detail: e.to_string(),
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let started = std::time::Instant::now();
        use std::os::fd::AsRawFd;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                break;
            }
            if started.elapsed() >= wait {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(StateError::Locked {
                    path: self.path.clone(),
                    holder: if holder.trim().is_empty() {
                        "it did not say who it is".to_string()
                    } else {
                        holder.trim().to_string()
                    },
                    waited: wait,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        use std::io::{Seek, Write};
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| {
                write!(
                    file,
                    "{who}, pid {} on {}, since {} (Unix time {since})",
                    std::process::id(),
                    hostname(),
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + Duration::from_secs(since)
                    )
                )
            })
            .and_then(|_| file.flush())
            .map_err(io)?;
        Ok(ApplyLock { _file: Some(file) })
    }

    /// The key sensitive values are fingerprinted under. It never leaves the
    /// state database.
    pub fn fingerprint_key(&self) -> Result<Vec<u8>> {
        let hex_key = self.meta("fingerprint_key")?;
        unhex(&hex_key).ok_or_else(|| StateError::Corrupt {
            path: self.path.clone(),
            detail: "the fingerprint key is not hex".to_string(),
        })
    }

    fn meta(&self, key: &str) -> Result<String> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .map_err(|e| StateError::Corrupt {
                path: self.path.clone(),
                detail: format!("{key}: {e}"),
            })
    }

    /// Everything the utility knows, read in one transaction.
    pub fn load(&mut self) -> Result<UtilityState> {
        let path = self.path.clone();
        let wait = self.busy_wait;
        let err = |e: rusqlite::Error| sql_error(&path, wait, e);
        let tx = self.conn.transaction().map_err(err)?;
        let meta = |key: &str| -> std::result::Result<String, rusqlite::Error> {
            tx.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        };
        let lineage = meta("lineage").map_err(err)?;
        let serial: u64 = meta("serial").map_err(err)?.parse().unwrap_or(0);
        let mut hosts = Vec::new();
        {
            let mut stmt = tx
                .prepare(
                    "SELECT name, address, port, host_key, memory_mib, max_vms, uplink, \
                     ssh_user, identity, root FROM hosts ORDER BY name",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(Host {
                        name: r.get(0)?,
                        address: r.get(1)?,
                        port: r.get(2)?,
                        host_key: r.get(3)?,
                        memory_mib: r.get::<_, i64>(4)? as u64,
                        max_vms: r.get(5)?,
                        uplink: r.get(6)?,
                        user: r.get(7)?,
                        identity: r.get(8)?,
                        root: r.get(9)?,
                    })
                })
                .map_err(err)?;
            for h in rows {
                hosts.push(h.map_err(err)?);
            }
        }
        let pools = tx
            .query_row(
                "SELECT networks_first, networks_last, public_first, public_last, mac_prefix \
                 FROM pools WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, u32>(0)?,
                        r.get::<_, u32>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )
            .map_err(err)?;
        let bad = |what: &str| StateError::Corrupt {
            path: path.clone(),
            detail: format!("the pools' {what} is unreadable"),
        };
        let pools = Pools {
            networks: (pools.0, pools.1),
            public: (
                pools
                    .2
                    .parse::<Ipv4Addr>()
                    .map_err(|_| bad("public range"))?,
                pools
                    .3
                    .parse::<Ipv4Addr>()
                    .map_err(|_| bad("public range"))?,
            ),
            mac_prefix: parse_prefix(&pools.4).ok_or_else(|| bad("MAC prefix"))?,
        };
        let mut deployments: BTreeMap<String, DeploymentState> = BTreeMap::new();
        {
            let mut stmt = tx
                .prepare("SELECT deployment, path, status, record FROM vms")
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })
                .map_err(err)?;
            for row in rows {
                let (deployment, vm, status, record) = row.map_err(err)?;
                let mut record: VmRecord =
                    serde_json::from_str(&record).map_err(|e| StateError::Corrupt {
                        path: path.clone(),
                        detail: format!("the record of {deployment}/{vm}: {e}"),
                    })?;
                record.status = Status::parse(&status).ok_or_else(|| StateError::Corrupt {
                    path: path.clone(),
                    detail: format!("{deployment}/{vm} has the unknown status {status:?}"),
                })?;
                deployments
                    .entry(deployment)
                    .or_default()
                    .vms
                    .insert(ComponentPath(vm), record);
            }
        }
        {
            let mut stmt = tx
                .prepare("SELECT deployment, path, network FROM vans")
                .map_err(err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, u32>(2)?,
                    ))
                })
                .map_err(err)?;
            for row in rows {
                let (deployment, van, network) = row.map_err(err)?;
                deployments
                    .entry(deployment)
                    .or_default()
                    .vans
                    .insert(ComponentPath(van), network);
            }
        }
        Ok(UtilityState {
            lineage,
            serial,
            hosts,
            pools,
            deployments,
        })
    }

    /// Records `changes` in one transaction (one writer at a time) and
    /// returns the new serial. All or nothing.
    pub fn commit(&mut self, changes: &[Change]) -> Result<u64> {
        let path = self.path.clone();
        let wait = self.busy_wait;
        let err = |e: rusqlite::Error| sql_error(&path, wait, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        for change in changes {
            apply(&tx, change).map_err(err)?;
        }
        // Deployments are implied by their rows: nothing to tidy.
        let serial: u64 = tx
            .query_row("SELECT value FROM meta WHERE key = 'serial'", [], |r| {
                r.get::<_, String>(0)
            })
            .map_err(err)?
            .parse::<u64>()
            .unwrap_or(0)
            + 1;
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'serial'",
            [serial.to_string()],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(serial)
    }

    /// `PRAGMA integrity_check`: `Ok` when the database is whole.
    pub fn integrity_check(&self) -> Result<()> {
        let result: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| sql_error(&self.path, self.busy_wait, e))?;
        if result == "ok" {
            Ok(())
        } else {
            Err(StateError::Corrupt {
                path: self.path.clone(),
                detail: result,
            })
        }
    }
}

fn apply(tx: &rusqlite::Transaction<'_>, change: &Change) -> rusqlite::Result<()> {
    match change {
        Change::HostAdded(h) => {
            tx.execute(
                "INSERT OR REPLACE INTO hosts (name, address, port, host_key, memory_mib, max_vms, \
                 uplink, ssh_user, identity, root) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    h.name,
                    h.address,
                    h.port,
                    h.host_key,
                    h.memory_mib as i64,
                    h.max_vms,
                    h.uplink,
                    h.user,
                    h.identity,
                    h.root
                ],
            )?;
        }
        Change::HostRemoved { name } => {
            tx.execute("DELETE FROM hosts WHERE name = ?1", [name])?;
        }
        Change::PoolsSet(pools) => write_pools(tx, pools)?,
        Change::VmRecorded {
            deployment,
            path,
            record,
        } => {
            let json = serde_json::to_string(record).expect("a record serializes");
            tx.execute(
                "DELETE FROM interfaces WHERE deployment = ?1 AND path = ?2",
                params![deployment, path.0],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO vms (deployment, path, host, status, appliance_source, \
                 appliance_version, appliance_digest, record) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    deployment,
                    path.0,
                    record.alloc.host,
                    record.status.as_str(),
                    record.spec.appliance.source,
                    record.spec.appliance.version,
                    record.spec.appliance.digest,
                    json
                ],
            )?;
            for (name, iface) in &record.alloc.interfaces {
                tx.execute(
                    "INSERT INTO interfaces (deployment, path, name, mac, ip, network) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![deployment, path.0, name, iface.mac, iface.ip, iface.network],
                )?;
            }
        }
        Change::VmStatus {
            deployment,
            path,
            status,
        } => {
            tx.execute(
                "UPDATE vms SET status = ?3 WHERE deployment = ?1 AND path = ?2",
                params![deployment, path.0, status.as_str()],
            )?;
        }
        Change::VmRemoved { deployment, path } => {
            tx.execute(
                "DELETE FROM vms WHERE deployment = ?1 AND path = ?2",
                params![deployment, path.0],
            )?;
        }
        Change::VanRecorded {
            deployment,
            path,
            network,
        } => {
            tx.execute(
                "INSERT OR REPLACE INTO vans (deployment, path, network) VALUES (?1, ?2, ?3)",
                params![deployment, path.0, network],
            )?;
        }
        Change::VanRemoved { deployment, path } => {
            tx.execute(
                "DELETE FROM vans WHERE deployment = ?1 AND path = ?2",
                params![deployment, path.0],
            )?;
        }
    }
    Ok(())
}

fn write_pools(tx: &rusqlite::Transaction<'_>, pools: &Pools) -> rusqlite::Result<()> {
    let p = pools.mac_prefix;
    tx.execute(
        "INSERT OR REPLACE INTO pools (id, networks_first, networks_last, public_first, public_last, mac_prefix) \
         VALUES (1, ?1, ?2, ?3, ?4, ?5)",
        params![
            pools.networks.0,
            pools.networks.1,
            pools.public.0.to_string(),
            pools.public.1.to_string(),
            format!("{:02x}:{:02x}:{:02x}", p[0], p[1], p[2])
        ],
    )?;
    Ok(())
}

/// `0a:c7:1a` as bytes.
pub fn parse_prefix(text: &str) -> Option<[u8; 3]> {
    let parts: Vec<u8> = text
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).ok().filter(|_| p.len() == 2))
        .collect::<Option<_>>()?;
    <[u8; 3]>::try_from(parts).ok()
}

fn sql_error(path: &Path, waited: Duration, e: rusqlite::Error) -> StateError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => StateError::Busy {
            path: path.to_path_buf(),
            waited,
        },
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => StateError::Corrupt {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
        Some(ErrorCode::ConstraintViolation) => StateError::Conflict {
            detail: e.to_string(),
        },
        _ => StateError::Io {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
    }
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
