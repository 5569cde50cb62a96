//! Where the utility's state is (`--state`, `$CVL_STATE`, or
//! `$CVL_HOME/state.db`), and opening it: read-write for what changes it,
//! read-only for what only looks (the status page, the editor's preview).

use anyhow::Result;
use cvl_state::Store;

static LOCATION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `--state`: overrides `$CVL_STATE` for this process.
pub fn set_location(location: &str) {
    let _ = LOCATION.set(location.to_string());
}

/// Where the state is: `--state`, else `$CVL_STATE`, else
/// `$CVL_HOME/state.db`. A `postgres://` or `postgresql://` URL names a
/// PostgreSQL database; anything else is a SQLite file.
pub fn location() -> String {
    LOCATION
        .get()
        .cloned()
        .or_else(|| std::env::var("CVL_STATE").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| {
            cvl_repo::settings::default_home()
                .join("state.db")
                .display()
                .to_string()
        })
}

/// Whether the state is a PostgreSQL database.
pub fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

pub fn open() -> Result<Store> {
    let location = location();
    if is_postgres(&location) {
        Store::open_url(&location).map_err(anyhow::Error::new)
    } else {
        Store::open(std::path::Path::new(&location)).map_err(anyhow::Error::new)
    }
}

/// The state for looking only: `None` when there is none yet. SQLite is
/// opened read-only; a PostgreSQL state is only ever read through it.
pub fn open_read_only() -> Result<Option<Store>> {
    let location = location();
    if is_postgres(&location) {
        return Store::open_url(&location)
            .map(Some)
            .map_err(anyhow::Error::new);
    }
    let path = std::path::Path::new(&location);
    if !cvl_state::exists(path) {
        return Ok(None);
    }
    Store::open_read_only(path)
        .map(Some)
        .map_err(anyhow::Error::new)
}

/// The state as it is now, read-only; empty when there is none yet.
pub fn read() -> Result<cvl_planner::model::UtilityState> {
    match open_read_only()? {
        Some(mut store) => Ok(store.load()?),
        None => Ok(Default::default()),
    }
}

/// Something that changes whenever the state does: for SQLite, the sizes
/// and times of its file and write-ahead log; for PostgreSQL, its serial.
pub fn version() -> Option<String> {
    let location = location();
    if is_postgres(&location) {
        let mut store = Store::open_url(&location).ok()?;
        return store
            .load()
            .ok()
            .map(|s| format!("{}:{}", s.lineage, s.serial));
    }
    let stamp = |p: &str| {
        std::fs::metadata(p).ok().map(|m| {
            let time = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{}@{time}", m.len())
        })
    };
    let db = stamp(&location)?;
    let wal = stamp(&format!("{location}-wal")).unwrap_or_default();
    Some(format!("{db}/{wal}"))
}

/// Now, as the history and logs write it (RFC 3339, seconds, UTC).
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
