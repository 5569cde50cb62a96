//! Signed repositories: what a reader trusts is what the publisher's key
//! signed. A repository carries The Update Framework's metadata in `tuf/`
//! (`N.root.json`, `root.json`, `targets.json`, `snapshot.json`,
//! `timestamp.json`), and its targets list every file it holds with its
//! length and SHA-256. Verifying it is `tough`'s work, never ours: a
//! root, then timestamp, snapshot and targets, each checked against its
//! signatures, versions (no rollback), expiry (no freeze), lengths (no
//! endless data) and each other (no mix and match). We then hold the
//! repository's index to the signed targets: the index names every file's
//! SHA-256, so every file a reader takes is what the publisher signed.
//!
//! Which root a reader starts from: one an administrator pinned out of band
//! (`cvl repo trust`, `[trust]` in `cvl.toml`), else the one `cvl.lock`
//! pinned the first time the repository was read (trust on first use, as
//! SSH does), else, on that first read, the repository's first root. A
//! repository once signed must stay signed.
//!
//! - [`keys`]: publishers' keys, at rest in the vault's format.
//! - [`sign`]: making and signing a repository's metadata.

pub mod keys;
pub mod sign;
mod transport;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tough::schema::RoleType;

use crate::fetch::Location;
use crate::settings::Settings;

/// The folder of a repository that holds its TUF metadata.
pub const TUF_DIR: &str = "tuf";

/// What a reader pins of a repository's root: its version and its root
/// role's keys and threshold. Key ids are SHA-256 digests of the keys, so
/// the same ids mean the same keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub version: u64,
    pub keyids: Vec<String>,
    pub threshold: u64,
}

impl std::fmt::Display for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short: Vec<&str> = self.keyids.iter().map(|k| &k[..k.len().min(16)]).collect();
        write!(
            f,
            "root version {}, {} of [{}]",
            self.version,
            self.threshold,
            short.join(", ")
        )
    }
}

/// Where a reader's trust in a repository starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// A root.json an administrator pinned out of band.
    Root(Vec<u8>),
    /// What `cvl.lock` recorded the first time.
    Pin(Pin),
}

/// A signed repository, as `tough` verified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The root now trusted (after any rotation the chain signed).
    pub root: Pin,
    /// The keys that signed its targets.
    pub signers: Vec<String>,
    pub timestamp_version: u64,
    /// When its timestamp expires (RFC 3339): past it, updates stop.
    pub expires: String,
    pub snapshot_version: u64,
    /// Every file the publisher signed: its length and SHA-256.
    pub targets: BTreeMap<String, (u64, String)>,
}

impl Verified {
    /// For people (an import's hover): who signed it, until when.
    pub fn describe(&self) -> String {
        let signers: Vec<&str> = self.signers.iter().map(|k| &k[..k.len().min(16)]).collect();
        format!(
            "signed by key {} (root version {}); its timestamp (version {}) expires {}",
            signers.join(", "),
            self.root.version,
            self.timestamp_version,
            self.expires
        )
    }
}

/// What a repository is to a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// It carries no TUF metadata, and nothing says it should.
    Unsigned,
    Signed(Arc<Verified>),
}

/// The attack (or failure) a refused repository amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// Files or metadata changed by someone without the key.
    ArbitrarySoftware,
    /// Metadata older than what this utility has seen.
    Rollback,
    /// A timestamp (or other metadata) past its expiry.
    Freeze,
    /// Metadata from different snapshots served together.
    MixAndMatch,
    /// Metadata longer than declared or allowed.
    EndlessData,
    /// A root not signed by the previous root's threshold of keys.
    UntrustedRoot,
    /// A repository pinned as signed that serves no signed metadata.
    Downgrade,
    /// Not an attack: the metadata could not be fetched, or is malformed.
    Unavailable,
}

impl Attack {
    fn sentence(self) -> &'static str {
        match self {
            Attack::ArbitrarySoftware => {
                "what it serves is not what its publisher signed (arbitrary software: its files \
                 or metadata were changed by someone without the key)"
            }
            Attack::Rollback => {
                "it serves metadata older than what this utility has already seen (a rollback \
                 attack)"
            }
            Attack::Freeze => {
                "its signed metadata has expired (a freeze attack, or the publisher has not run \
                 `cvl repo refresh`)"
            }
            Attack::MixAndMatch => {
                "its metadata comes from different snapshots (a mix-and-match attack)"
            }
            Attack::EndlessData => {
                "its metadata is longer than declared or allowed (an endless-data attack)"
            }
            Attack::UntrustedRoot => {
                "its root is not signed by the keys this utility trusts (a root not signed by \
                 the previous root's threshold)"
            }
            Attack::Downgrade => {
                "it was signed when this utility first read it, and now serves no signed \
                 metadata (a downgrade to an unsigned repository)"
            }
            Attack::Unavailable => "its signed metadata cannot be read",
        }
    }

    /// A short name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Attack::ArbitrarySoftware => "arbitrary-software",
            Attack::Rollback => "rollback",
            Attack::Freeze => "freeze",
            Attack::MixAndMatch => "mix-and-match",
            Attack::EndlessData => "endless-data",
            Attack::UntrustedRoot => "untrusted-root",
            Attack::Downgrade => "downgrade",
            Attack::Unavailable => "unavailable",
        }
    }
}

/// A repository refused: which, why, and the details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustError {
    pub repository: String,
    pub attack: Attack,
    pub detail: String,
}

impl std::fmt::Display for TrustError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused {} [{}]: {} ({}); nothing from it was taken as trusted",
            self.repository,
            self.attack.as_str(),
            self.attack.sentence(),
            self.detail
        )
    }
}

/// What the readers of one load share about signed repositories: where
/// trust in each starts, and what was verified (once per repository and
/// load, however many readers ask).
#[derive(Debug, Default)]
pub struct Table {
    inner: Mutex<TableInner>,
}

#[derive(Debug, Default)]
struct TableInner {
    /// By location URL (after mirrors).
    anchors: HashMap<String, Anchor>,
    verified: HashMap<String, Trust>,
    refused: HashMap<String, TrustError>,
}

impl Table {
    /// Where trust in the repository at `location` starts (set by the
    /// loader from `cvl.lock` and the administrator's pins).
    pub fn anchor(&self, location: &str, anchor: Anchor) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.anchors.insert(location.to_string(), anchor);
    }

    /// Verify the repository at `location` afresh next time (it changed).
    pub fn forget(&self, location: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.verified.remove(location);
        inner.refused.remove(location);
    }

    /// What was verified of the repository at `location`, if it was.
    pub fn verified(&self, location: &str) -> Option<Trust> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.verified.get(location).cloned()
    }

    fn anchor_of(&self, location: &str) -> Option<Anchor> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.anchors.get(location).cloned()
    }

    fn remember(&self, location: &str, trust: Trust) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.refused.remove(location);
        inner.verified.insert(location.to_string(), trust);
    }

    /// Why the repository at `location` was refused, if it was.
    pub fn refused(&self, location: &str) -> Option<TrustError> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.refused.get(location).cloned()
    }

    fn refuse(&self, location: &str, error: &TrustError) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.verified.remove(location);
        inner.refused.insert(location.to_string(), error.clone());
    }
}

/// The repository at `location` as a reader may trust it: verified with
/// `tough` from its anchor (or, with none, from its first root if it has
/// one), or unsigned. Verified once per [`Table`].
pub fn check(settings: &Settings, location: &Location) -> Result<Trust, TrustError> {
    let url = location.url();
    if let Some(known) = settings.trust.verified(&url) {
        return Ok(known);
    }
    let anchor = settings.trust.anchor_of(&url);
    let trust = if settings.offline {
        offline(settings, location, anchor.as_ref())
    } else {
        online(settings, location, anchor.as_ref())
    };
    match trust {
        Ok(trust) => {
            settings.trust.remember(&url, trust.clone());
            Ok(trust)
        }
        Err(e) => {
            settings.trust.refuse(&url, &e);
            Err(e)
        }
    }
}

/// Holds an index's bytes to what the publisher signed, and remembers a
/// refusal as [`check`] does.
pub fn check_index_of(
    settings: &Settings,
    trust: &Trust,
    location: &Location,
    bytes: &[u8],
) -> Result<(), TrustError> {
    check_index(trust, location, bytes).inspect_err(|e| settings.trust.refuse(&location.url(), e))
}

/// Holds an index's bytes to what the publisher signed.
pub fn check_index(trust: &Trust, location: &Location, bytes: &[u8]) -> Result<(), TrustError> {
    let Trust::Signed(verified) = trust else {
        return Ok(());
    };
    let name = crate::index::INDEX_FILE;
    let Some((length, sha256)) = verified.targets.get(name) else {
        return Err(TrustError {
            repository: location.display(),
            attack: Attack::ArbitrarySoftware,
            detail: format!("its signed targets do not list {name}"),
        });
    };
    let actual = crate::index::sha256_hex(bytes);
    if bytes.len() as u64 != *length || actual != *sha256 {
        return Err(TrustError {
            repository: location.display(),
            attack: Attack::ArbitrarySoftware,
            detail: format!(
                "{name} is {} bytes with SHA-256 {actual}; the publisher signed {length} bytes \
                 with SHA-256 {sha256}",
                bytes.len()
            ),
        });
    }
    Ok(())
}

/// The root an administrator pinned for the repository an import names
/// (`url` as the import writes it), out of band: `cvl repo trust URL
/// --root FILE` (kept in `$CVL_HOME/trust/`), or `[trust]` in `cvl.toml`.
pub fn admin_anchor(settings: &Settings, url: &str) -> Option<Anchor> {
    let path = settings
        .anchors
        .get(url)
        .cloned()
        .unwrap_or_else(|| anchor_path(&settings.home, url));
    std::fs::read(path).ok().map(Anchor::Root)
}

/// Where `cvl repo trust` keeps the root pinned for `url`.
pub fn anchor_path(home: &Path, url: &str) -> PathBuf {
    home.join("trust").join(format!(
        "{}.root.json",
        &crate::index::sha256_hex(url.as_bytes())[..24]
    ))
}

/// The per-repository folder of what this utility has seen of it: the
/// newest metadata `tough` verified (its defence against rollback), and our
/// summary of it for offline use.
fn seen_dir(settings: &Settings, url: &str) -> PathBuf {
    settings
        .home
        .join("tuf")
        .join(&crate::index::sha256_hex(url.as_bytes())[..24])
}

/// What this utility has seen of one repository, kept in one file written
/// at once (one fsync, and none when nothing changed): the metadata `tough`
/// verified last, by file name, and our summary of it for offline use.
#[derive(Default, Serialize, Deserialize, PartialEq)]
struct Seen {
    files: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verified: Option<Summary>,
}

/// The record's file in the repository's folder of [`seen_dir`].
const SEEN_RECORD: &str = "seen.json";

impl Seen {
    /// The record; before there was one, the separate files older versions
    /// of cvl wrote (`root.json`, ..., `verified.json`). Nothing: nothing
    /// seen. A record that does not parse is an error: it is the defence
    /// against rollback, and is not silently forgotten.
    fn read(dir: &Path) -> Result<Seen, String> {
        match std::fs::read(dir.join(SEEN_RECORD)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "this utility's record of it ({}) is damaged: {e}",
                    dir.join(SEEN_RECORD).display()
                )
            }),
            Err(_) => {
                let mut seen = Seen::default();
                for file in SEEN_FILES {
                    if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
                        seen.files.insert(file.to_string(), text);
                    }
                }
                if let Ok(bytes) = std::fs::read(dir.join("verified.json")) {
                    seen.verified = Some(
                        serde_json::from_slice(&bytes)
                            .map_err(|e| format!("this utility's record of it is damaged: {e}"))?,
                    );
                }
                Ok(seen)
            }
        }
    }

    /// Written crash-safely, when it changed.
    fn write(&self, dir: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).expect("a record serializes");
        if std::fs::read(dir.join(SEEN_RECORD)).is_ok_and(|old| old == bytes) {
            return Ok(());
        }
        crate::write_atomic(&dir.join(SEEN_RECORD), &bytes)?;
        // The separate files of older versions are superseded.
        for file in SEEN_FILES.iter().chain(&["verified.json"]) {
            let _ = std::fs::remove_file(dir.join(file));
        }
        Ok(())
    }
}

/// The metadata files `tough` keeps per repository.
const SEEN_FILES: [&str; 5] = [
    "root.json",
    "timestamp.json",
    "snapshot.json",
    "targets.json",
    "latest_known_time.json",
];

fn online(
    settings: &Settings,
    location: &Location,
    anchor: Option<&Anchor>,
) -> Result<Trust, TrustError> {
    let url = location.url();
    let fail = |attack: Attack, detail: String| TrustError {
        repository: location.display(),
        attack,
        detail,
    };
    let transport = transport::Transport::new(settings);
    let metadata_base = metadata_base(location)?;
    let seen = seen_dir(settings, &url);
    // The root to start from.
    let root = match anchor {
        Some(Anchor::Root(bytes)) => bytes.clone(),
        Some(Anchor::Pin(pin)) => {
            // The newest root this utility verified, when it still stands
            // on the pin; else the pinned version, fetched and held to it.
            let cached = Seen::read(&seen)
                .ok()
                .and_then(|s| s.files.get("root.json").map(|t| t.clone().into_bytes()))
                .filter(|b| pin_of(b).is_some_and(|p| p.version >= pin.version));
            match cached {
                Some(bytes) => bytes,
                None => {
                    let name = format!("{}.root.json", pin.version);
                    let bytes = match transport.get(&metadata_base, &name) {
                        Ok(Some(bytes)) => bytes,
                        Ok(None) => {
                            return Err(fail(
                                Attack::Downgrade,
                                format!("cvl.lock pins {pin}, and {name} is gone"),
                            ))
                        }
                        Err(e) => return Err(fail(Attack::Unavailable, e)),
                    };
                    match pin_of(&bytes) {
                        Some(found) if found == *pin => bytes,
                        found => {
                            return Err(fail(
                                Attack::UntrustedRoot,
                                format!(
                                    "cvl.lock pins {pin}; the repository's {name} is {}",
                                    found.map_or("unreadable".to_string(), |f| f.to_string())
                                ),
                            ))
                        }
                    }
                }
            }
        }
        None => match transport.get(&metadata_base, "1.root.json") {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(Trust::Unsigned),
            Err(e) if location_is_local(location) => {
                return Err(fail(Attack::Unavailable, e));
            }
            Err(e) => return Err(fail(Attack::Unavailable, e)),
        },
    };
    // tough's datastore: a folder of its own, seeded with what this
    // utility saw before, written back only once all verified.
    let work = tempfile::tempdir().map_err(|e| fail(Attack::Unavailable, e.to_string()))?;
    let _guard = crate::fill::lock_entry(
        &settings.home.join("tuf").join("locks"),
        &seen,
        &location.display(),
        settings.fill_wait,
    )
    .map_err(|e| fail(Attack::Unavailable, e))?;
    let before = Seen::read(&seen).map_err(|e| fail(Attack::Unavailable, e))?;
    for (file, text) in &before.files {
        std::fs::write(work.path().join(file), text)
            .map_err(|e| fail(Attack::Unavailable, e.to_string()))?;
    }
    let targets_base = targets_base(location)?;
    let loaded = runtime()?.block_on(async {
        tough::RepositoryLoader::new(&root, metadata_base.clone(), targets_base)
            .transport(transport.clone())
            .datastore(work.path())
            .limits(tough::Limits {
                max_root_size: 1 << 20,
                max_targets_size: 16 << 20,
                max_timestamp_size: 64 << 10,
                max_snapshot_size: 1 << 20,
                max_root_updates: 1024,
            })
            .load()
            .await
    });
    let repository = match loaded {
        Ok(repository) => repository,
        Err(e) => {
            let (attack, detail) = classify(&e);
            return Err(fail(attack, detail));
        }
    };
    let verified = summarize(&repository);
    // What this utility has now seen, kept crash-safely in one write.
    let mut now = Seen {
        files: BTreeMap::new(),
        verified: Some(Summary::from(&verified)),
    };
    for file in SEEN_FILES {
        if let Ok(text) = std::fs::read_to_string(work.path().join(file)) {
            now.files.insert(file.to_string(), text);
        }
    }
    std::fs::create_dir_all(&seen)
        .and_then(|()| now.write(&seen))
        .map_err(|e| fail(Attack::Unavailable, e.to_string()))?;
    Ok(Trust::Signed(Arc::new(verified)))
}

/// Offline: what this utility verified last time, from its own record;
/// a repository pinned as signed must have one.
fn offline(
    settings: &Settings,
    location: &Location,
    anchor: Option<&Anchor>,
) -> Result<Trust, TrustError> {
    let seen = seen_dir(settings, &location.url());
    let record = Seen::read(&seen).map_err(|detail| TrustError {
        repository: location.display(),
        attack: Attack::Unavailable,
        detail,
    })?;
    match record.verified {
        Some(summary) => Ok(Trust::Signed(Arc::new(summary.into()))),
        None if anchor.is_none() => Ok(Trust::Unsigned),
        None => Err(TrustError {
            repository: location.display(),
            attack: Attack::Unavailable,
            detail: "it is signed, has never been verified here, and --offline forbids \
                     fetching its metadata"
                .to_string(),
        }),
    }
}

/// Our record of a verification, for offline use.
#[derive(Serialize, Deserialize, PartialEq)]
struct Summary {
    root: Pin,
    signers: Vec<String>,
    timestamp_version: u64,
    expires: String,
    snapshot_version: u64,
    targets: BTreeMap<String, (u64, String)>,
}

impl From<&Verified> for Summary {
    fn from(v: &Verified) -> Summary {
        Summary {
            root: v.root.clone(),
            signers: v.signers.clone(),
            timestamp_version: v.timestamp_version,
            expires: v.expires.clone(),
            snapshot_version: v.snapshot_version,
            targets: v.targets.clone(),
        }
    }
}

impl From<Summary> for Verified {
    fn from(s: Summary) -> Verified {
        Verified {
            root: s.root,
            signers: s.signers,
            timestamp_version: s.timestamp_version,
            expires: s.expires,
            snapshot_version: s.snapshot_version,
            targets: s.targets,
        }
    }
}

fn summarize(repository: &tough::Repository) -> Verified {
    let root = &repository.root().signed;
    let targets = repository
        .all_targets()
        .map(|(name, target)| {
            (
                name.raw().to_string(),
                (target.length, hex(target.hashes.sha256.as_ref())),
            )
        })
        .collect();
    let signers = repository
        .targets()
        .signatures
        .iter()
        .map(|s| hex(s.keyid.as_ref()))
        .collect();
    Verified {
        root: pin_of_root(root),
        signers,
        timestamp_version: repository.timestamp().signed.version.get(),
        expires: repository.timestamp().signed.expires.to_string(),
        snapshot_version: repository.snapshot().signed.version.get(),
        targets,
    }
}

/// The pin a root stands for: its version, its root role's keys and
/// threshold.
pub fn pin_of_root(root: &tough::schema::Root) -> Pin {
    let (mut keyids, threshold) = root
        .roles
        .get(&RoleType::Root)
        .map(|r| {
            (
                r.keyids.iter().map(|k| hex(k.as_ref())).collect::<Vec<_>>(),
                r.threshold.get(),
            )
        })
        .unwrap_or_default();
    keyids.sort();
    Pin {
        version: root.version.get(),
        keyids,
        threshold,
    }
}

/// The pin a root.json (bytes) stands for; `None` when it is not one.
pub fn pin_of(bytes: &[u8]) -> Option<Pin> {
    let root: tough::schema::Signed<tough::schema::Root> = serde_json::from_slice(bytes).ok()?;
    Some(pin_of_root(&root.signed))
}

/// Which attack a `tough` error amounts to, and its words.
fn classify(e: &tough::error::Error) -> (Attack, String) {
    use tough::error::Error as E;
    // A limit tough's reader hit is reported as its transport's error,
    // with the limit as its cause.
    let chain = std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source());
    let over_limit = chain
        .filter_map(|e| e.downcast_ref::<E>())
        .any(|e| matches!(e, E::MaxSizeExceeded { .. } | E::MaxUpdatesExceeded { .. }));
    if over_limit {
        return (Attack::EndlessData, e.to_string());
    }
    let attack = match e {
        E::ExpiredMetadata { .. } => Attack::Freeze,
        E::OlderMetadata { .. }
        | E::OlderSnapshotInTimestamp { .. }
        | E::SnapshotRoleRollback { .. }
        | E::SystemTimeSteppedBackward { .. } => Attack::Rollback,
        E::HashMismatch { .. }
        | E::VersionMismatch { .. }
        | E::SnapshotRoleMissing { .. }
        | E::MetaMissing { .. }
        | E::MissingSnapshotMeta { .. }
        | E::SnapshotTargetsMetaMissing { .. } => Attack::MixAndMatch,
        E::MaxSizeExceeded { .. } | E::MaxUpdatesExceeded { .. } => Attack::EndlessData,
        E::VerifyTrustedMetadata { .. } => Attack::UntrustedRoot,
        E::VerifyMetadata { role, .. } if *role == RoleType::Root => Attack::UntrustedRoot,
        E::VerifyMetadata { .. } | E::VerifyRoleMetadata { .. } => Attack::ArbitrarySoftware,
        // No timestamp: no signed metadata at all. A timestamp that names
        // a snapshot (or a snapshot targets) the repository lacks: the
        // metadata of different moments served together.
        E::Transport { source, url, .. }
            if source.kind() == tough::TransportErrorKind::FileNotFound =>
        {
            if url.path().ends_with("/timestamp.json") {
                Attack::Downgrade
            } else {
                Attack::MixAndMatch
            }
        }
        _ => Attack::Unavailable,
    };
    (attack, e.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn location_is_local(location: &Location) -> bool {
    matches!(location, Location::Dir(_))
}

/// The URL of a repository's `tuf/` folder (with a final slash).
pub fn metadata_base(location: &Location) -> Result<url::Url, TrustError> {
    let base = targets_base(location)?;
    base.join(&format!("{TUF_DIR}/")).map_err(|e| TrustError {
        repository: location.display(),
        attack: Attack::Unavailable,
        detail: e.to_string(),
    })
}

/// The URL of a repository itself (with a final slash): targets are named
/// relative to it.
pub fn targets_base(location: &Location) -> Result<url::Url, TrustError> {
    let text = match location {
        Location::Dir(dir) => url::Url::from_directory_path(dir)
            .map(|u| u.to_string())
            .map_err(|()| format!("{} is not an absolute folder", dir.display())),
        Location::Http(base) => Ok(format!("{}/", base.trim_end_matches('/'))),
    };
    text.and_then(|t| url::Url::parse(&t).map_err(|e| e.to_string()))
        .map_err(|detail| TrustError {
            repository: location.display(),
            attack: Attack::Unavailable,
            detail,
        })
}

/// A runtime for one verification (tough is async; nothing else runs on
/// it).
fn runtime() -> Result<tokio::runtime::Runtime, TrustError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TrustError {
            repository: String::new(),
            attack: Attack::Unavailable,
            detail: format!("cannot start a runtime: {e}"),
        })
}

/// Whether a repository folder is signed (has a root).
pub fn is_signed(dir: &Path) -> bool {
    dir.join(TUF_DIR).join("1.root.json").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record of what was seen: the separate files older versions wrote
    /// are read and then superseded by one file; an unchanged record is not
    /// written again; a damaged one is an error, not a forgetting.
    #[test]
    fn the_seen_record_is_one_file_read_from_the_old_ones_and_never_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(Seen::read(d).unwrap() == Seen::default());
        std::fs::write(d.join("timestamp.json"), "{\"v\":7}").unwrap();
        std::fs::write(d.join("root.json"), "{\"r\":1}").unwrap();
        let old = Seen::read(d).unwrap();
        assert_eq!(old.files["timestamp.json"], "{\"v\":7}");
        assert_eq!(old.files.len(), 2);
        old.write(d).unwrap();
        assert!(!d.join("timestamp.json").exists(), "superseded");
        assert!(Seen::read(d).unwrap() == old);
        // Unchanged: not written again (its file is the same inode).
        use std::os::unix::fs::MetadataExt;
        let inode = std::fs::metadata(d.join(SEEN_RECORD)).unwrap().ino();
        old.write(d).unwrap();
        assert_eq!(std::fs::metadata(d.join(SEEN_RECORD)).unwrap().ino(), inode);
        std::fs::write(d.join(SEEN_RECORD), "{ not json").unwrap();
        let e = Seen::read(d).err().unwrap();
        assert!(e.contains("is damaged"), "{e}");
    }
}
