//! The state in PostgreSQL (`--state postgres://...` or `$CVL_STATE`), for a
//! team and its CI sharing one utility: the same schema and migrations as
//! SQLite, the version and an application mark in `meta`, every write one
//! transaction behind a transaction-scoped advisory lock (one writer at a
//! time), and the apply lock a session-scoped advisory lock held on a
//! connection of its own: released when the apply ends or its process dies.
//! TCP connections use TLS (OpenSSL) as libpq's `sslmode` says: `disable`,
//! `prefer` (the default), `require`, `verify-ca` and `verify-full`, the
//! last two checking the server's certificate against `sslrootcert` (or the
//! system's roots); a local socket never uses TLS.

use std::error::Error as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres::error::SqlState;
use postgres::types::{FromSql, IsNull, ToSql, Type};
use postgres::{Client, IsolationLevel, NoTls};
use postgres_openssl::MakeTlsConnector;

use crate::schema::{self, DbError, Sql, Value, APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION};
use crate::{ApplyLock, Result, StateError};

/// The apply lock's key (`CVL2`); writers use `CVL1`.
pub const APPLY_LOCK: i64 = 0x4356_4C32;

/// What `meta` says of a PostgreSQL database holding a CVL state.
const APPLICATION: &str = "cvl-state";

/// `url` without its password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// How to reach the server: the URL for rust-postgres (which knows
/// `sslmode` up to `require` only) and the TLS that libpq's `sslmode` and
/// `sslrootcert` ask for.
fn tls_of(url: &str) -> std::result::Result<(String, SslMode, Option<PathBuf>), String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut mode = SslMode::Prefer;
    let mut root = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                mode = match value {
                    "disable" => SslMode::Disable,
                    "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode={other} is not one of disable, prefer, require, verify-ca, \
                             verify-full"
                        ))
                    }
                };
            }
            "sslrootcert" => {
                let path = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
                root = Some(PathBuf::from(path.into_owned()));
            }
            _ => kept.push(pair),
        }
    }
    match mode {
        SslMode::Disable => kept.push("sslmode=disable"),
        SslMode::Prefer => kept.push("sslmode=prefer"),
        _ => kept.push("sslmode=require"),
    }
    Ok((format!("{base}?{}", kept.join("&")), mode, root))
}

/// The TLS connector for `mode`: certificates checked for `verify-ca` (the
/// chain) and `verify-full` (the chain and the host name), against `root`
/// when given, else the system's roots.
fn tls(mode: SslMode, root: Option<&PathBuf>) -> std::result::Result<MakeTlsConnector, String> {
    let mut builder = SslConnector::builder(SslMethod::tls()).map_err(|e| e.to_string())?;
    if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) {
        builder.set_verify(SslVerifyMode::PEER);
        if let Some(root) = root {
            builder.set_ca_file(root).map_err(|e| {
                format!(
                    "cannot read sslrootcert {} (a PEM file of the CA certificates to trust): {e}",
                    root.display()
                )
            })?;
        }
    } else {
        // libpq's prefer and require: encrypted, the certificate unchecked.
        builder.set_verify(SslVerifyMode::NONE);
    }
    let mut connector = MakeTlsConnector::new(builder.build());
    if mode != SslMode::VerifyFull {
        connector.set_callback(|config, _| {
            config.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(connector)
}

/// The password libpq would use when the URL has none: `PGPASSWORD`, else
/// the first line of `PGPASSFILE` (default `~/.pgpass`) that matches the
/// connection. As libpq does, a password file that others may read is
/// ignored.
fn password_for(config: &postgres::Config) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(password) = std::env::var("PGPASSWORD").ok().filter(|p| !p.is_empty()) {
        return Some(password);
    }
    let file = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pgpass")))?;
    let meta = std::fs::metadata(&file).ok()?;
    if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 || meta.len() > 1 << 20 {
        return None;
    }
    let text = std::fs::read_to_string(&file).ok()?;
    // A socket connection matches `localhost`, as in libpq.
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user()?;
    let dbname = config.get_dbname().unwrap_or(user);
    pgpass_lookup(&text, [&host, &port, dbname, user])
}

/// The password of the first `.pgpass` line whose host, port, database and
/// user fields match `wanted` (`*` matches anything; `\:` and `\\` escape).
fn pgpass_lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => field.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
                c => field.push(c),
            }
        }
        fields.push(field);
        if fields.len() == 5
            && fields[..4]
                .iter()
                .zip(wanted)
                .all(|(have, want)| have == "*" || have == want)
        {
            return fields.pop();
        }
    }
    None
}

fn connect(url: &str) -> Result<Client> {
    let fail = |detail: String| StateError::Io {
        path: PathBuf::from(redact(url)),
        detail,
    };
    let (pg_url, mode, root) = tls_of(url).map_err(&fail)?;
    let mut config: postgres::Config = pg_url
        .parse()
        .map_err(|e| fail(format!("not a PostgreSQL URL: {e}")))?;
    if config.get_password().is_none() {
        if let Some(password) = password_for(&config) {
            config.password(password);
        }
    }
    let connected = match mode {
        SslMode::Disable => config.connect(NoTls),
        _ => config.connect(tls(mode, root.as_ref()).map_err(&fail)?),
    };
    connected.map_err(|e| {
        let why = e.source().map_or(e.to_string(), |s| s.to_string());
        let hint = if why.contains("certificate verify failed") {
            ": the server's certificate did not verify; give the CA that signed it with \
             sslrootcert=FILE (verify-full also checks that the certificate names the host)"
        } else {
            ""
        };
        fail(format!(
            "cannot connect to the state's PostgreSQL server: {why}{hint}"
        ))
    })
}

pub(crate) fn open(url: &str) -> Result<Client> {
    let mut client = connect(url)?;
    let place = PathBuf::from(redact(url));
    let fail = |e: DbError| crate::db_error(&place, Duration::from_secs(10), e);
    let mut tx = client.transaction().map_err(|e| fail(map(e)))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPLICATION_ID])
        .map_err(|e| fail(map(e)))?;
    let has_meta: bool = tx
        .query_one("SELECT to_regclass('meta') IS NOT NULL", &[])
        .map_err(|e| fail(map(e)))?
        .get(0);
    let version: i64 = if has_meta {
        let application = schema::meta(&mut Tx(&mut tx), "application").ok();
        if application.as_deref() != Some(APPLICATION) {
            return Err(StateError::Corrupt {
                path: place,
                detail: "its `meta` table is not a CVL state's".to_string(),
            });
        }
        schema::meta(&mut Tx(&mut tx), "schema")
            .map_err(fail)?
            .parse()
            .unwrap_or(0)
    } else {
        let tables: i64 = tx
            .query_one(
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema()",
                &[],
            )
            .map_err(|e| fail(map(e)))?
            .get(0);
        if tables > 0 {
            return Err(StateError::Corrupt {
                path: place,
                detail: "its schema holds tables of something else; give the state a \
                         database (or schema) of its own"
                    .to_string(),
            });
        }
        0
    };
    if version > SCHEMA_VERSION {
        return Err(StateError::NewerSchema {
            path: place,
            found: version,
        });
    }
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(migration).map_err(|e| fail(map(e)))?;
        if i == 0 {
            let lineage = crate::hex(&crate::random_bytes(16, &place)?);
            let key = crate::hex(&crate::random_bytes(32, &place)?);
            let tx = &mut Tx(&mut tx);
            schema::seed(tx, &lineage, &key).map_err(fail)?;
            schema::set_meta(tx, "application", APPLICATION).map_err(fail)?;
        }
    }
    if version < SCHEMA_VERSION {
        schema::set_meta(&mut Tx(&mut tx), "schema", &SCHEMA_VERSION.to_string()).map_err(fail)?;
    }
    tx.commit().map_err(|e| fail(map(e)))?;
    Ok(client)
}

/// Runs `f` in a read-only snapshot.
pub(crate) fn read<T>(
    client: &mut Client,
    f: impl FnOnce(&mut dyn Sql) -> std::result::Result<T, DbError>,
) -> std::result::Result<T, DbError> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(map)?;
    let out = f(&mut Tx(&mut tx))?;
    tx.commit().map_err(map)?;
    Ok(out)
}

/// Runs `f` in a write transaction, behind the writers' advisory lock
/// (waited for up to `wait`), committed only when it succeeds.
pub(crate) fn write<T>(
    client: &mut Client,
    wait: Duration,
    f: impl FnOnce(&mut dyn Sql) -> std::result::Result<T, DbError>,
) -> std::result::Result<T, DbError> {
    let mut tx = client.transaction().map_err(map)?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{}ms'",
        wait.as_millis().max(1)
    ))
    .map_err(map)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPLICATION_ID])
        .map_err(map)?;
    if let Some(pid) = SERVICE_SESSION.get() {
        let held: bool = tx
            .query_one(HOLDS, &[pid, &SERVICE_LOCK])
            .map_err(map)?
            .get(0);
        if !held {
            return Err(DbError::Other(
                "this utility service no longer holds the state's service lock (its database \
                 session ended; another service may be active now): it writes nothing more"
                    .to_string(),
            ));
        }
    }
    let out = f(&mut Tx(&mut tx))?;
    tx.commit().map_err(map)?;
    Ok(out)
}

/// The service lock's advisory key: one `cvl utility run` per state.
pub const SERVICE_LOCK: i64 = 0x4356_4C33;

/// The database session (its backend's pid) that holds this process's
/// service lock, once it took it. Every later write of this process checks
/// in its transaction that the session still holds it: a service whose
/// session ended (its connection cut, a standby active since) writes
/// nothing, and so starts nothing (each action is written before it runs).
static SERVICE_SESSION: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

/// The advisory lock `key` held by the session `pid` (`pg_locks` splits a
/// bigint key into `classid`, its high half, and `objid`).
const HOLDS: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                     AND granted AND pid = $1 AND classid::bigint = ($2::bigint >> 32) \
                     AND objid::bigint = ($2::bigint & 4294967295) AND objsubid = 1)";

/// Whether the session of `client` still holds an advisory lock it took.
pub(crate) fn session_holds_a_lock(client: &mut Client) -> bool {
    client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND pid = pg_backend_pid())",
            &[],
        )
        .is_ok_and(|row| row.get::<_, bool>(0))
}

/// The apply (or service) lock: a session-scoped advisory lock on a
/// connection of its own; who holds it is written in `meta`.
pub(crate) fn lock(
    url: &str,
    kind: crate::LockKind,
    who: &str,
    wait: Duration,
) -> Result<ApplyLock> {
    let (key, meta_key) = match kind {
        crate::LockKind::Apply => (APPLY_LOCK, "apply_lock"),
        crate::LockKind::Service => (SERVICE_LOCK, "service_lock"),
    };
    let place = PathBuf::from(redact(url));
    let fail = |e: postgres::Error| crate::db_error(&place, wait, map(e));
    let mut client = connect(url)?;
    let started = Instant::now();
    loop {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .map_err(fail)?
            .get(0);
        if got {
            break;
        }
        if started.elapsed() >= wait {
            let holder = client
                .query_opt("SELECT value FROM meta WHERE key = $1", &[&meta_key])
                .map_err(fail)?
                .map(|r| r.get::<_, String>(0))
                .unwrap_or_default();
            return Err(kind.held(&place, crate::holder_or_unknown(&holder), wait));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    client
        .execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&meta_key, &crate::holder(who)],
        )
        .map_err(fail)?;
    if matches!(kind, crate::LockKind::Service) {
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .map_err(fail)?
            .get(0);
        let _ = SERVICE_SESSION.set(pid);
    }
    Ok(ApplyLock::Session(Box::new(client)))
}

struct Tx<'a, 'c>(&'a mut postgres::Transaction<'c>);

/// `?N` placeholders as PostgreSQL writes them (`$N`); the statements hold
/// no `?` of their own.
fn dollars(sql: &str) -> String {
    sql.replace('?', "$")
}

impl Sql for Tx<'_, '_> {
    fn query(
        &mut self,
        sql: &str,
        params: &[Value],
    ) -> std::result::Result<Vec<Vec<Value>>, DbError> {
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = self.0.query(&dollars(sql), &params).map_err(map)?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| row.try_get::<_, Value>(i).map_err(map))
                    .collect()
            })
            .collect()
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> std::result::Result<u64, DbError> {
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        self.0.execute(&dollars(sql), &params).map_err(map)
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(n) if *ty == Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
            Value::Int(n) if *ty == Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
            Value::Int(n) => n.to_sql(ty, out),
            Value::Text(s) => s.as_str().to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::INT2,
            Type::INT4,
            Type::INT8,
            Type::TEXT,
            Type::VARCHAR,
            Type::BPCHAR,
            Type::NAME,
        ]
        .contains(ty)
    }

    postgres::types::to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Value, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match *ty {
            Type::INT2 => Value::Int(i64::from(i16::from_sql(ty, raw)?)),
            Type::INT4 => Value::Int(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            _ => Value::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(
        _: &Type,
    ) -> std::result::Result<Value, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Value::Null)
    }

    fn accepts(ty: &Type) -> bool {
        <Value as ToSql>::accepts(ty)
    }
}

fn map(e: postgres::Error) -> DbError {
    match e.code() {
        Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE => DbError::Busy,
        Some(c) if c.code().starts_with("23") => DbError::Conflict(
            e.as_db_error()
                .map_or(e.to_string(), |d| d.message().to_string()),
        ),
        _ => DbError::Other(
            e.as_db_error()
                .map_or(e.to_string(), |d| d.message().to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_takes_the_first_matching_line() {
        let text = "# team\n\
                    db.example:5432:cvl:ci:first\n\
                    *:*:cvl:ci:second\n\
                    db\\:odd:5432:*:ci:with\\:colon\\\\\n\
                    localhost:*:*:*:any\n";
        let find = |host, port, db, user| pgpass_lookup(text, [host, port, db, user]);
        assert_eq!(
            find("db.example", "5432", "cvl", "ci").as_deref(),
            Some("first")
        );
        assert_eq!(
            find("db.example", "6432", "cvl", "ci").as_deref(),
            Some("second")
        );
        assert_eq!(
            find("db:odd", "5432", "x", "ci").as_deref(),
            Some("with:colon\\")
        );
        assert_eq!(find("localhost", "1", "x", "y").as_deref(), Some("any"));
        assert_eq!(find("elsewhere", "5432", "x", "ci"), None);
        assert_eq!(
            pgpass_lookup("short:line\n", ["short", "line", "a", "b"]),
            None
        );
    }

    #[test]
    fn sslmode_is_read_as_libpq_reads_it() {
        let (url, mode, root) =
            tls_of("postgresql://ci@db/cvl?sslmode=verify-full&sslrootcert=/etc/ca%20x.pem&application_name=cvl")
                .unwrap();
        assert_eq!(mode, SslMode::VerifyFull);
        assert_eq!(root, Some(PathBuf::from("/etc/ca x.pem")));
        assert_eq!(
            url,
            "postgresql://ci@db/cvl?application_name=cvl&sslmode=require"
        );
        let (url, mode, _) = tls_of("postgresql:///cvl?host=/run/postgresql").unwrap();
        assert_eq!(mode, SslMode::Prefer);
        assert_eq!(url, "postgresql:///cvl?host=/run/postgresql&sslmode=prefer");
        let err = tls_of("postgresql://db/cvl?sslmode=verify").unwrap_err();
        assert!(err.contains("verify-full"), "{err}");
    }
}
