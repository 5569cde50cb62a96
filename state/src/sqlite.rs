//! The state in an SQLite file (bundled), the default: WAL with
//! `synchronous=FULL`, every write one `BEGIN IMMEDIATE` transaction (one
//! writer at a time, the last committed state whole after a crash), the
//! schema version in `PRAGMA user_version` and `CVL1` in the header's
//! application id, so that a foreign, damaged or newer file is refused
//! before anything writes. The apply lock is an `flock` on a file beside it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::schema::{self, DbError, Sql, Value, APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION};
use crate::{ApplyLock, Result, StateError};

pub(crate) fn open(path: &Path) -> Result<Connection> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| StateError::Io {
            path: dir.to_path_buf(),
            detail: e.to_string(),
        })?;
    }
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StateError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    init(&mut conn, path)?;
    Ok(conn)
}

/// Opens an existing state for reading only (a language server's plan
/// preview): nothing is created, migrated or written, not even the journal
/// mode. A state of another schema version is refused: a command that
/// writes migrates it first.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StateError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let (version, app, _) = header(&conn, path)?;
    if app != APPLICATION_ID {
        return Err(StateError::Corrupt {
            path: path.to_path_buf(),
            detail: "it is not a CVL state".to_string(),
        });
    }
    not_newer(version, path)?;
    if version < SCHEMA_VERSION {
        return Err(StateError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "its schema is version {version}, older than this cvl's {SCHEMA_VERSION}: \
                 any command that writes it (`cvl apply`, `cvl pool show`) migrates it"
            ),
        });
    }
    set_busy_wait(&conn, Duration::from_secs(2));
    Ok(conn)
}

pub(crate) fn in_memory() -> Result<Connection> {
    let path = Path::new(":memory:");
    let mut conn = Connection::open_in_memory().map_err(|e| StateError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    init(&mut conn, path)?;
    Ok(conn)
}

fn init(conn: &mut Connection, path: &Path) -> Result<()> {
    let corrupt = |e: rusqlite::Error| StateError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    // Read before anything writes: a damaged or foreign file fails here.
    let (version, app, tables) = header(conn, path)?;
    if tables > 0 && app != APPLICATION_ID {
        return Err(StateError::Corrupt {
            path: path.to_path_buf(),
            detail: "it is an SQLite database of something else".to_string(),
        });
    }
    not_newer(version, path)?;
    set_busy_wait(conn, Duration::from_secs(10));
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(corrupt)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(corrupt)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(corrupt)?;
    if version < SCHEMA_VERSION {
        migrate(conn, path)?;
    }
    Ok(())
}

/// A file's schema version, application id and number of tables, read
/// without writing.
fn header(conn: &Connection, path: &Path) -> Result<(i64, i64, i64)> {
    let corrupt = |e: rusqlite::Error| StateError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let read =
        |sql: &str| -> Result<i64> { conn.query_row(sql, [], |r| r.get(0)).map_err(corrupt) };
    let version = read("PRAGMA user_version")?;
    let app = read("PRAGMA application_id")?;
    let tables = read("SELECT count(*) FROM sqlite_master")?;
    Ok((version, app, tables))
}

/// Refuses a schema newer than this cvl's (a newer cvl wrote it).
fn not_newer(version: i64, path: &Path) -> Result<()> {
    if version > SCHEMA_VERSION {
        return Err(StateError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
        });
    }
    Ok(())
}

pub(crate) fn set_busy_wait(conn: &Connection, wait: Duration) {
    let _ = conn.busy_timeout(wait);
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let fail = |e: DbError| crate::db_error(path, Duration::from_secs(10), e);
    let sql = |e: rusqlite::Error| fail(map(e));
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    // Another process may have migrated while this one waited.
    let now: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql)?;
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(now as usize) {
        tx.execute_batch(migration).map_err(sql)?;
        if i == 0 {
            let lineage = crate::hex(&crate::random_bytes(16, path)?);
            let key = crate::hex(&crate::random_bytes(32, path)?);
            tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))
                .map_err(sql)?;
            schema::seed(&mut Tx(&tx), &lineage, &key).map_err(fail)?;
        }
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
        .map_err(sql)?;
    tx.commit().map_err(sql)
}

/// Runs `f` in a read transaction.
pub(crate) fn read<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut dyn Sql) -> std::result::Result<T, DbError>,
) -> std::result::Result<T, DbError> {
    let tx = conn.transaction().map_err(map)?;
    let out = f(&mut Tx(&tx))?;
    tx.commit().map_err(map)?;
    Ok(out)
}

/// Runs `f` in a write transaction (`BEGIN IMMEDIATE`: one writer at a
/// time), committed only when it succeeds.
pub(crate) fn write<T>(
    conn: &mut Connection,
    f: impl FnOnce(&mut dyn Sql) -> std::result::Result<T, DbError>,
) -> std::result::Result<T, DbError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(map)?;
    let out = f(&mut Tx(&tx))?;
    tx.commit().map_err(map)?;
    Ok(out)
}

pub(crate) fn integrity_check(conn: &Connection) -> std::result::Result<(), DbError> {
    let result: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(map)?;
    if result == "ok" {
        Ok(())
    } else {
        Err(DbError::Corrupt(result))
    }
}

struct Tx<'a, 'c>(&'a rusqlite::Transaction<'c>);

fn bind(params: &[Value]) -> Vec<SqlValue> {
    params
        .iter()
        .map(|v| match v {
            Value::Null => SqlValue::Null,
            Value::Int(i) => SqlValue::Integer(*i),
            Value::Text(s) => SqlValue::Text(s.clone()),
        })
        .collect()
}

impl Sql for Tx<'_, '_> {
    fn query(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> std::result::Result<Vec<Vec<Value>>, DbError> {
        let mut stmt = self.0.prepare(sql).map_err(map)?;
        let columns = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(bind(params)))
            .map_err(map)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(map)? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i).map_err(map)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::Int(n),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    other => {
                        return Err(DbError::Corrupt(format!(
                            "a column holds {:?}, not text or an integer",
                            other.data_type()
                        )))
                    }
                });
            }
            out.push(values);
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> std::result::Result<u64, DbError> {
        self.0
            .execute(sql, rusqlite::params_from_iter(bind(params)))
            .map(|n| n as u64)
            .map_err(map)
    }
}

fn map(e: rusqlite::Error) -> DbError {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => DbError::Busy,
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
            DbError::Corrupt(e.to_string())
        }
        Some(ErrorCode::ConstraintViolation) => DbError::Conflict(e.to_string()),
        _ => DbError::Other(e.to_string()),
    }
}

/// `state.db.apply-lock` (or `.service-lock`, as `kind` says) beside the
/// database, `flock`ed while held; it says who holds it.
pub(crate) fn lock(
    db: &Path,
    kind: crate::LockKind,
    who: &str,
    wait: Duration,
) -> Result<ApplyLock> {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(match kind {
        crate::LockKind::Apply => ".apply-lock",
        crate::LockKind::Service => ".service-lock",
    });
    let path: PathBuf = db.with_file_name(name);
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
            return Err(kind.held(db, crate::holder_or_unknown(&holder), wait));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    use std::io::{Seek, Write};
    file.set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(crate::holder(who).as_bytes()))
        .and_then(|_| file.flush())
        .map_err(io)?;
    Ok(ApplyLock::File(file))
}
