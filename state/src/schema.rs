//! The schema and every statement on it, written once for both databases:
//! the migrations, and reading and writing the utility's state through the
//! small [`Sql`] interface that SQLite ([`crate::sqlite`]) and PostgreSQL
//! ([`crate::pg`]) transactions implement. Statements use `?N`
//! placeholders and standard upserts, which both understand.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use cvl_planner::model::{
    Change, ComponentPath, DeploymentState, FailedVersion, HistoryEntry, Host, Policy, Pools,
    Status, UtilityState, VmRecord,
};

/// `CVL1`: in SQLite's header, this file is a CVL state database; in
/// PostgreSQL, the advisory lock key of its writers.
pub const APPLICATION_ID: i64 = 0x4356_4C31;

/// Migrations: entry `i` takes the schema from version `i` to `i + 1`. The
/// same SQL runs on SQLite and PostgreSQL.
pub const MIGRATIONS: &[&str] = &[
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
    r#"
ALTER TABLE hosts ADD COLUMN draining INTEGER NOT NULL DEFAULT 0;
"#,
    // The utility service: how each deployment was applied and what it may
    // do to it, the versions that failed there, and the log of what was done.
    r#"
CREATE TABLE deployments (
    name TEXT PRIMARY KEY,
    source TEXT,
    policy TEXT NOT NULL
);
CREATE TABLE failed_versions (
    deployment TEXT NOT NULL,
    url TEXT NOT NULL,
    version INTEGER NOT NULL,
    component TEXT NOT NULL,
    at TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (deployment, url, version)
);
CREATE TABLE history (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    deployment TEXT NOT NULL,
    component TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    from_version INTEGER,
    to_version INTEGER,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX history_by_deployment ON history (deployment, id);
"#,
    // Fencing: a host's fence command, and when it was fenced.
    r#"
ALTER TABLE hosts ADD COLUMN fence TEXT;
ALTER TABLE hosts ADD COLUMN fenced TEXT;
"#,
    // A move's figures in its history entry (JSON: from, to, live, millis,
    // bytes, downtime_ms), for the status page and metrics.
    r#"
ALTER TABLE history ADD COLUMN moved TEXT;
"#,
];

/// The schema version this `cvl` writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// A value in a statement or a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.to_string())
    }
}

impl From<&String> for Value {
    fn from(s: &String) -> Value {
        Value::Text(s.clone())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<u32> for Value {
    fn from(i: u32) -> Value {
        Value::Int(i64::from(i))
    }
}

impl From<u16> for Value {
    fn from(i: u16) -> Value {
        Value::Int(i64::from(i))
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl<'a, T> From<&'a Option<T>> for Value
where
    &'a T: Into<Value>,
{
    fn from(v: &'a Option<T>) -> Value {
        v.as_ref().map_or(Value::Null, Into::into)
    }
}

/// Why a statement failed, in the database's own words.
#[derive(Debug)]
pub enum DbError {
    /// Another writer holds the lock past the wait.
    Busy,
    /// A uniqueness or other constraint refused the change.
    Conflict(String),
    /// The data is not what this schema stores.
    Corrupt(String),
    Other(String),
}

/// A transaction, as the statements below need it.
pub trait Sql {
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Vec<Value>>, DbError>;
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError>;
}

fn text(row: &[Value], i: usize) -> Result<String, DbError> {
    match row.get(i) {
        Some(Value::Text(s)) => Ok(s.clone()),
        other => Err(DbError::Corrupt(format!("expected text, found {other:?}"))),
    }
}

fn opt_text(row: &[Value], i: usize) -> Result<Option<String>, DbError> {
    match row.get(i) {
        Some(Value::Null) => Ok(None),
        _ => text(row, i).map(Some),
    }
}

fn int<T: TryFrom<i64>>(row: &[Value], i: usize) -> Result<T, DbError> {
    match row.get(i) {
        Some(Value::Int(n)) => {
            T::try_from(*n).map_err(|_| DbError::Corrupt(format!("{n} is out of range")))
        }
        other => Err(DbError::Corrupt(format!(
            "expected an integer, found {other:?}"
        ))),
    }
}

pub fn meta(tx: &mut dyn Sql, key: &str) -> Result<String, DbError> {
    let rows = tx.query("SELECT value FROM meta WHERE key = ?1", &[key.into()])?;
    match rows.first() {
        Some(row) => text(row, 0),
        None => Err(DbError::Corrupt(format!("the meta entry {key} is missing"))),
    }
}

pub fn set_meta(tx: &mut dyn Sql, key: &str, value: &str) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[key.into(), value.into()],
    )?;
    Ok(())
}

/// What the first migration seeds: a lineage, the serial, the fingerprint
/// key and the default pools.
pub fn seed(tx: &mut dyn Sql, lineage: &str, fingerprint_key: &str) -> Result<(), DbError> {
    for (k, v) in [
        ("lineage", lineage),
        ("serial", "0"),
        ("fingerprint_key", fingerprint_key),
    ] {
        set_meta(tx, k, v)?;
    }
    write_pools(tx, &Pools::default())
}

/// Everything the utility knows.
pub fn load(tx: &mut dyn Sql) -> Result<UtilityState, DbError> {
    let lineage = meta(tx, "lineage")?;
    let serial: u64 = meta(tx, "serial")?.parse().unwrap_or(0);
    let mut hosts = Vec::new();
    for r in tx.query(
        "SELECT name, address, port, host_key, memory_mib, max_vms, uplink, \
         ssh_user, identity, root, draining, fence, fenced FROM hosts ORDER BY name",
        &[],
    )? {
        hosts.push(Host {
            name: text(&r, 0)?,
            address: opt_text(&r, 1)?,
            port: int(&r, 2)?,
            host_key: opt_text(&r, 3)?,
            memory_mib: int(&r, 4)?,
            max_vms: int(&r, 5)?,
            uplink: opt_text(&r, 6)?,
            user: opt_text(&r, 7)?,
            identity: opt_text(&r, 8)?,
            root: opt_text(&r, 9)?,
            // 0: takes VMs; 1: drained, its VMs move offline; 2: live.
            draining: int::<i64>(&r, 10)? != 0,
            drain_live: int::<i64>(&r, 10)? == 2,
            fence: opt_text(&r, 11)?,
            fenced: opt_text(&r, 12)?,
        });
    }
    let rows = tx.query(
        "SELECT networks_first, networks_last, public_first, public_last, mac_prefix \
         FROM pools WHERE id = 1",
        &[],
    )?;
    let r = rows
        .first()
        .ok_or_else(|| DbError::Corrupt("the pools are missing".to_string()))?;
    let bad = |what: &str| DbError::Corrupt(format!("the pools' {what} is unreadable"));
    let pools = Pools {
        networks: (int(r, 0)?, int(r, 1)?),
        public: (
            text(r, 2)?
                .parse::<Ipv4Addr>()
                .map_err(|_| bad("public range"))?,
            text(r, 3)?
                .parse::<Ipv4Addr>()
                .map_err(|_| bad("public range"))?,
        ),
        mac_prefix: crate::parse_prefix(&text(r, 4)?).ok_or_else(|| bad("MAC prefix"))?,
    };
    let mut deployments: BTreeMap<String, DeploymentState> = BTreeMap::new();
    for r in tx.query("SELECT deployment, path, status, record FROM vms", &[])? {
        let (deployment, vm, status) = (text(&r, 0)?, text(&r, 1)?, text(&r, 2)?);
        let mut record: VmRecord = serde_json::from_str(&text(&r, 3)?)
            .map_err(|e| DbError::Corrupt(format!("the record of {deployment}/{vm}: {e}")))?;
        record.status = Status::parse(&status).ok_or_else(|| {
            DbError::Corrupt(format!(
                "{deployment}/{vm} has the unknown status {status:?}"
            ))
        })?;
        deployments
            .entry(deployment)
            .or_default()
            .vms
            .insert(ComponentPath(vm), record);
    }
    for r in tx.query("SELECT deployment, path, network FROM vans", &[])? {
        deployments
            .entry(text(&r, 0)?)
            .or_default()
            .vans
            .insert(ComponentPath(text(&r, 1)?), int(&r, 2)?);
    }
    for r in tx.query("SELECT name, source, policy FROM deployments", &[])? {
        let name = text(&r, 0)?;
        let Some(d) = deployments.get_mut(&name) else {
            continue;
        };
        let json = |what: &str, e: serde_json::Error| {
            DbError::Corrupt(format!("the {what} of the deployment {name}: {e}"))
        };
        if let Some(source) = opt_text(&r, 1)? {
            d.source = Some(serde_json::from_str(&source).map_err(|e| json("source", e))?);
        }
        d.policy = serde_json::from_str(&text(&r, 2)?).map_err(|e| json("policy", e))?;
    }
    for r in tx.query(
        "SELECT deployment, url, version, component, at, reason FROM failed_versions \
         ORDER BY deployment, url, version",
        &[],
    )? {
        if let Some(d) = deployments.get_mut(&text(&r, 0)?) {
            d.failed.push(FailedVersion {
                url: text(&r, 1)?,
                version: int(&r, 2)?,
                component: ComponentPath(text(&r, 3)?),
                at: text(&r, 4)?,
                reason: text(&r, 5)?,
            });
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

/// Records `changes` and returns the new serial.
pub fn commit(tx: &mut dyn Sql, changes: &[Change]) -> Result<u64, DbError> {
    for change in changes {
        apply(tx, change)?;
    }
    // The log is not the state: writing only to it leaves the serial (a
    // plan made before stays current).
    if !changes.is_empty() && changes.iter().all(|c| matches!(c, Change::Logged(_))) {
        return meta(tx, "serial")?
            .parse::<u64>()
            .map_err(|_| DbError::Corrupt("the serial is not a number".to_string()));
    }
    // A deployment is its VMs and VANs: what is kept about one that has
    // neither goes with it (its log stays).
    let gone = "NOT IN (SELECT deployment FROM vms UNION SELECT deployment FROM vans)";
    tx.execute(&format!("DELETE FROM deployments WHERE name {gone}"), &[])?;
    tx.execute(
        &format!("DELETE FROM failed_versions WHERE deployment {gone}"),
        &[],
    )?;
    let serial = meta(tx, "serial")?.parse::<u64>().unwrap_or(0) + 1;
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'serial'",
        &[serial.to_string().into()],
    )?;
    Ok(serial)
}

fn apply(tx: &mut dyn Sql, change: &Change) -> Result<(), DbError> {
    match change {
        Change::HostAdded(h) => {
            tx.execute(
                "INSERT INTO hosts (name, address, port, host_key, memory_mib, max_vms, uplink, \
                 ssh_user, identity, root, draining, fence, fenced) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                 ON CONFLICT (name) DO UPDATE SET address = excluded.address, \
                 port = excluded.port, host_key = excluded.host_key, \
                 memory_mib = excluded.memory_mib, max_vms = excluded.max_vms, \
                 uplink = excluded.uplink, ssh_user = excluded.ssh_user, \
                 identity = excluded.identity, root = excluded.root, \
                 draining = excluded.draining, fence = excluded.fence, \
                 fenced = excluded.fenced",
                &[
                    (&h.name).into(),
                    (&h.address).into(),
                    h.port.into(),
                    (&h.host_key).into(),
                    (h.memory_mib as i64).into(),
                    h.max_vms.into(),
                    (&h.uplink).into(),
                    (&h.user).into(),
                    (&h.identity).into(),
                    (&h.root).into(),
                    match (h.draining, h.drain_live) {
                        (false, _) => 0i64,
                        (true, false) => 1,
                        (true, true) => 2,
                    }
                    .into(),
                    (&h.fence).into(),
                    (&h.fenced).into(),
                ],
            )?;
        }
        Change::HostRemoved { name } => {
            tx.execute("DELETE FROM hosts WHERE name = ?1", &[name.into()])?;
        }
        Change::PoolsSet(pools) => write_pools(tx, pools)?,
        Change::VmRecorded {
            deployment,
            path,
            record,
        } => {
            let json = serde_json::to_string(record).expect("a record serializes");
            let key = [deployment.into(), (&path.0).into()];
            tx.execute(
                "DELETE FROM interfaces WHERE deployment = ?1 AND path = ?2",
                &key,
            )?;
            tx.execute(
                "INSERT INTO vms (deployment, path, host, status, appliance_source, \
                 appliance_version, appliance_digest, record) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
                 ON CONFLICT (deployment, path) DO UPDATE SET host = excluded.host, \
                 status = excluded.status, appliance_source = excluded.appliance_source, \
                 appliance_version = excluded.appliance_version, \
                 appliance_digest = excluded.appliance_digest, record = excluded.record",
                &[
                    deployment.into(),
                    (&path.0).into(),
                    (&record.alloc.host).into(),
                    record.status.as_str().into(),
                    (&record.spec.appliance.source).into(),
                    record.spec.appliance.version.into(),
                    (&record.spec.appliance.digest).into(),
                    json.into(),
                ],
            )?;
            for (name, iface) in &record.alloc.interfaces {
                tx.execute(
                    "INSERT INTO interfaces (deployment, path, name, mac, ip, network) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    &[
                        deployment.into(),
                        (&path.0).into(),
                        name.into(),
                        (&iface.mac).into(),
                        (&iface.ip).into(),
                        iface.network.into(),
                    ],
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
                &[deployment.into(), (&path.0).into(), status.as_str().into()],
            )?;
        }
        Change::VmRemoved { deployment, path } => {
            // Interfaces first: PostgreSQL checks foreign keys per statement.
            let key = [deployment.into(), (&path.0).into()];
            tx.execute(
                "DELETE FROM interfaces WHERE deployment = ?1 AND path = ?2",
                &key,
            )?;
            tx.execute("DELETE FROM vms WHERE deployment = ?1 AND path = ?2", &key)?;
        }
        Change::VanRecorded {
            deployment,
            path,
            network,
        } => {
            tx.execute(
                "INSERT INTO vans (deployment, path, network) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (deployment, path) DO UPDATE SET network = excluded.network",
                &[deployment.into(), (&path.0).into(), (*network).into()],
            )?;
        }
        Change::VanRemoved { deployment, path } => {
            tx.execute(
                "DELETE FROM vans WHERE deployment = ?1 AND path = ?2",
                &[deployment.into(), (&path.0).into()],
            )?;
        }
        Change::SourceSet { deployment, source } => {
            let json = serde_json::to_string(source).expect("a source serializes");
            let policy = serde_json::to_string(&Policy::default()).expect("a policy serializes");
            tx.execute(
                "INSERT INTO deployments (name, source, policy) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (name) DO UPDATE SET source = excluded.source",
                &[deployment.into(), json.into(), policy.into()],
            )?;
        }
        Change::PolicySet { deployment, policy } => {
            let json = serde_json::to_string(policy).expect("a policy serializes");
            tx.execute(
                "INSERT INTO deployments (name, source, policy) VALUES (?1, NULL, ?2) \
                 ON CONFLICT (name) DO UPDATE SET policy = excluded.policy",
                &[deployment.into(), json.into()],
            )?;
        }
        Change::VersionFailed { deployment, failed } => {
            tx.execute(
                "INSERT INTO failed_versions (deployment, url, version, component, at, reason) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (deployment, url, version) DO UPDATE SET \
                 component = excluded.component, at = excluded.at, reason = excluded.reason",
                &[
                    deployment.into(),
                    (&failed.url).into(),
                    failed.version.into(),
                    (&failed.component.0).into(),
                    (&failed.at).into(),
                    (&failed.reason).into(),
                ],
            )?;
        }
        Change::Logged(entry) => {
            // Ids in order of writing; one writer at a time.
            let next = tx.query("SELECT COALESCE(MAX(id), 0) + 1 FROM history", &[])?;
            let id: i64 = next.first().map_or(Ok(1), |r| int(r, 0))?;
            tx.execute(
                "INSERT INTO history (id, at, deployment, component, actor, action, \
                 from_version, to_version, outcome, detail, moved) \
                 VALUES (?10, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?11)",
                &[
                    (&entry.at).into(),
                    (&entry.deployment).into(),
                    (&entry.component).into(),
                    (&entry.actor).into(),
                    (&entry.action).into(),
                    entry.from_version.into(),
                    entry.to_version.into(),
                    (&entry.outcome).into(),
                    (&entry.detail).into(),
                    id.into(),
                    entry
                        .moved
                        .as_ref()
                        .map(|m| serde_json::to_string(m).expect("move figures serialize"))
                        .into(),
                ],
            )?;
        }
    }
    Ok(())
}

/// The log, newest last: every deployment's, or one's; at most `limit`
/// entries (the newest).
pub fn history(
    tx: &mut dyn Sql,
    deployment: Option<&str>,
    limit: u32,
) -> Result<Vec<HistoryEntry>, DbError> {
    let columns = "SELECT at, deployment, component, actor, action, from_version, to_version, \
                   outcome, detail, moved FROM history";
    let rows = match deployment {
        Some(d) => tx.query(
            &format!("{columns} WHERE deployment = ?1 ORDER BY id DESC LIMIT ?2"),
            &[d.into(), limit.into()],
        )?,
        None => tx.query(
            &format!("{columns} ORDER BY id DESC LIMIT ?1"),
            &[limit.into()],
        )?,
    };
    let opt_int = |r: &[Value], i: usize| -> Result<Option<u32>, DbError> {
        match r.get(i) {
            Some(Value::Null) => Ok(None),
            _ => int(r, i).map(Some),
        }
    };
    let mut out = rows
        .iter()
        .map(|r| {
            Ok(HistoryEntry {
                at: text(r, 0)?,
                deployment: text(r, 1)?,
                component: text(r, 2)?,
                actor: text(r, 3)?,
                action: text(r, 4)?,
                from_version: opt_int(r, 5)?,
                to_version: opt_int(r, 6)?,
                outcome: text(r, 7)?,
                detail: text(r, 8)?,
                moved: opt_text(r, 9)?
                    .map(|m| serde_json::from_str(&m))
                    .transpose()
                    .map_err(|e| DbError::Corrupt(format!("a move's figures: {e}")))?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    out.reverse();
    Ok(out)
}

fn write_pools(tx: &mut dyn Sql, pools: &Pools) -> Result<(), DbError> {
    let p = pools.mac_prefix;
    tx.execute(
        "INSERT INTO pools (id, networks_first, networks_last, public_first, public_last, \
         mac_prefix) VALUES (1, ?1, ?2, ?3, ?4, ?5) \
         ON CONFLICT (id) DO UPDATE SET networks_first = excluded.networks_first, \
         networks_last = excluded.networks_last, public_first = excluded.public_first, \
         public_last = excluded.public_last, mac_prefix = excluded.mac_prefix",
        &[
            pools.networks.0.into(),
            pools.networks.1.into(),
            pools.public.0.to_string().into(),
            pools.public.1.to_string().into(),
            format!("{:02x}:{:02x}:{:02x}", p[0], p[1], p[2]).into(),
        ],
    )?;
    Ok(())
}
