//! Loading a workspace: root files from disk, then every file they import,
//! transitively, resolved through mirrors, the lock and the repositories,
//! into the analysis database. A failed import is recorded as the import's
//! resolution (the analysis reports it as `bad-import` at the statement);
//! loading itself fails only when a root file cannot be read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cvl_analysis::item_tree::ImportKey;
use cvl_analysis::{AnalysisHost, ImportResolutions, ResolvedImport, SourceFile};

use crate::display_path;
use crate::fetch::{Fetcher, Location};
use crate::lock::{LockEntry, LockFile};
use crate::settings::Settings;

/// What to do with `cvl.lock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Honour locked entries; add entries for new imports.
    Use,
    /// Honour locked entries; a needed change is an error (for CI).
    Locked,
    /// Resolve every import afresh and rewrite the lock (`cvl update-lock`).
    Update,
    /// Resolve every import afresh as `Update` does, but write nothing:
    /// what an update would take (the utility service's look).
    Preview,
    /// Honour locked entries, never write (an editor's view).
    ReadOnly,
    /// Neither read nor write a lock.
    Ignore,
}

pub struct LoadOptions {
    pub settings: Settings,
    pub lock: LockMode,
}

/// What a load did besides filling the database.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// The root files, in the order given.
    pub roots: Vec<SourceFile>,
    /// Every file loaded, by name, with its path when it is local.
    pub files: Vec<(SourceFile, Option<PathBuf>)>,
    /// Lock files written.
    pub locks_written: Vec<PathBuf>,
    /// Problems with lock files (under `LockMode::Locked`, a needed change).
    pub lock_errors: Vec<String>,
    /// Newer versions the lock did not take, once each.
    pub notices: Vec<String>,
    /// What each repository imported is trusted as: by import URL.
    pub trust: TrustReport,
}

/// What the repositories a load read are trusted as.
#[derive(Debug, Clone, Default)]
pub struct TrustReport {
    /// Imports from repositories nobody signed (by URL as written).
    pub unsigned: std::collections::BTreeSet<String>,
    /// Signed repositories, as verified (by import URL).
    pub signed: std::collections::BTreeMap<String, std::sync::Arc<crate::trust::Verified>>,
    /// Repositories refused, and why.
    pub refused: Vec<crate::trust::TrustError>,
}

struct LockState {
    lock: LockFile,
    changed: bool,
    /// An import under this lock could not be resolved: re-resolving
    /// (`cvl update`) then writes nothing, so the versions it pinned stay.
    failed: bool,
}

/// Loads `roots` (with their texts, already read and UTF-8) and everything
/// they import into the analysis, then writes the locks that changed.
pub fn load(
    db: &mut AnalysisHost,
    roots: &[(PathBuf, String)],
    options: &LoadOptions,
) -> LoadReport {
    let mut loader = Loader::new(options);
    for (path, text) in roots {
        let file = loader.add_root(db, path, text);
        loader.report.roots.push(file);
    }
    loader.resolve(db);
    loader.finish()
}

/// A loader kept across edits (the language server's): it knows every file
/// it loaded, and resolves the imports of files added or changed since the
/// last [`Loader::resolve`].
pub struct Loader {
    fetcher: Fetcher,
    lock_mode: LockMode,
    by_name: HashMap<String, SourceFile>,
    /// How each known file's imports are resolved: its base and lock folder.
    context: HashMap<SourceFile, (Location, Option<PathBuf>)>,
    /// The import keys each file was last resolved with.
    resolved_keys: HashMap<SourceFile, Vec<ImportKey>>,
    locks: HashMap<PathBuf, LockState>,
    queue: Vec<SourceFile>,
    report: LoadReport,
}

impl Loader {
    pub fn new(options: &LoadOptions) -> Loader {
        Loader {
            fetcher: Fetcher::new(options.settings.clone()),
            lock_mode: options.lock,
            by_name: HashMap::new(),
            context: HashMap::new(),
            resolved_keys: HashMap::new(),
            locks: HashMap::new(),
            queue: Vec::new(),
            report: LoadReport::default(),
        }
    }

    /// Every file loaded so far, with its path when it is local.
    pub fn files(&self) -> &[(SourceFile, Option<PathBuf>)] {
        &self.report.files
    }

    /// The file loaded under `name` (a path as displayed, or a URL).
    pub fn file(&self, name: &str) -> Option<SourceFile> {
        self.by_name.get(name).copied()
    }

    /// Adds a local root file, or replaces the text of one already known,
    /// and queues its imports for resolution.
    pub fn add_root(&mut self, db: &mut AnalysisHost, path: &Path, text: &str) -> SourceFile {
        let name = display_path(path);
        let file = match self.by_name.get(&name) {
            Some(&f) => {
                if db.file_text(f) != text {
                    db.set_text(f, text.to_string());
                }
                f
            }
            None => {
                let f = db.add_file(name.clone(), text.to_string());
                self.by_name.insert(name, f);
                self.report.files.push((f, Some(path.to_path_buf())));
                f
            }
        };
        let dir = absolute_parent(path);
        if self.lock_mode != LockMode::Ignore && !self.locks.contains_key(&dir) {
            let lock = match self.lock_mode {
                // Versions resolved afresh; the roots trusted stay.
                LockMode::Update | LockMode::Preview => LockFile {
                    roots: LockFile::read(&dir).map(|l| l.roots).unwrap_or_default(),
                    ..LockFile::default()
                },
                _ => LockFile::read(&dir).unwrap_or_else(|e| {
                    self.report.lock_errors.push(e);
                    LockFile::default()
                }),
            };
            let changed = self.lock_mode == LockMode::Update;
            self.locks.insert(
                dir.clone(),
                LockState {
                    lock,
                    changed,
                    failed: false,
                },
            );
        }
        let lock_dir = (self.lock_mode != LockMode::Ignore).then(|| dir.clone());
        self.context.insert(file, (Location::Dir(dir), lock_dir));
        self.queue.push(file);
        file
    }

    /// Re-resolves a known file's imports if its import statements changed.
    pub fn refresh(&mut self, db: &AnalysisHost, file: SourceFile) {
        if self.resolved_keys.get(&file) != Some(&import_keys(db, file)) {
            self.queue.push(file);
        }
    }

    /// Resolves the imports of every queued file, loading what they import.
    pub fn resolve(&mut self, db: &mut AnalysisHost) {
        while let Some(file) = self.queue.pop() {
            let keys = import_keys(db, file);
            if self.resolved_keys.get(&file) == Some(&keys)
                && !db.file_imports(file).entries.is_empty()
            {
                continue;
            }
            let Some((base, lock_dir)) = self.context.get(&file).cloned() else {
                continue;
            };
            let mut resolutions = ImportResolutions::default();
            for key in &keys {
                if resolutions.get(key).is_some() {
                    continue;
                }
                let mut lock = lock_dir.as_ref().and_then(|d| self.locks.get_mut(d));
                let outcome = resolve_import(
                    &self.fetcher,
                    key,
                    &base,
                    lock.as_deref_mut(),
                    self.lock_mode,
                    &mut self.report.trust,
                );
                if let (Err(_), Some(state)) = (&outcome, lock) {
                    state.failed = true;
                }
                let result = outcome.map(|mut fetched| {
                    if let Some(notice) = fetched.newer.take() {
                        if !self.report.notices.contains(&notice) {
                            self.report.notices.push(notice);
                        }
                    }
                    let repository = fetched.version.map(|_| fetched.base.url());
                    let imported = match self.by_name.get(&fetched.name) {
                        Some(&f) => f,
                        None => {
                            let f = db.add_file(fetched.name.clone(), fetched.text);
                            self.by_name.insert(fetched.name.clone(), f);
                            self.report.files.push((f, fetched.path));
                            self.context.insert(f, (fetched.base, lock_dir.clone()));
                            self.queue.push(f);
                            f
                        }
                    };
                    ResolvedImport {
                        file: imported,
                        version: fetched.version,
                        detail: fetched.detail,
                        repository,
                        files: fetched.files,
                        blacklisted: fetched.blacklisted,
                        unsigned: fetched.unsigned,
                    }
                });
                resolutions.entries.push((key.clone(), result));
            }
            self.resolved_keys.insert(file, keys);
            if *db.file_imports(file) != resolutions {
                db.set_imports(file, resolutions);
            }
        }
    }

    /// Writes the locks that changed and returns what happened.
    pub fn finish(mut self) -> LoadReport {
        for (dir, state) in std::mem::take(&mut self.locks) {
            if !state.changed {
                continue;
            }
            // Re-resolved with an import that failed (a repository down,
            // or refused): its old entry would be lost; the lock stays.
            if state.failed && self.lock_mode == LockMode::Update {
                self.report.lock_errors.push(format!(
                    "{} was left as it was: an import could not be resolved (see above)",
                    LockFile::path_in(&dir).display()
                ));
                continue;
            }
            match self.lock_mode {
                LockMode::Locked => self.report.lock_errors.push(format!(
                    "{} is missing entries or out of date, and --locked forbids changing it: run \
                     `cvl update-lock` and commit the result",
                    LockFile::path_in(&dir).display()
                )),
                LockMode::ReadOnly | LockMode::Preview => {}
                _ => match state.lock.write(&dir) {
                    Ok(()) => self.report.locks_written.push(LockFile::path_in(&dir)),
                    Err(e) => self.report.lock_errors.push(e),
                },
            }
        }
        self.report
    }
}

fn import_keys(db: &AnalysisHost, file: SourceFile) -> Vec<ImportKey> {
    db.item_tree(file)
        .imports
        .iter()
        .filter_map(|i| i.key())
        .collect()
}

fn absolute_parent(path: &Path) -> PathBuf {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf())
}

struct Fetched {
    name: String,
    text: String,
    path: Option<PathBuf>,
    version: Option<u32>,
    detail: String,
    /// What relative imports inside the fetched file are relative to.
    base: Location,
    blacklisted: Option<String>,
    /// The version's files (path, SHA-256).
    files: Vec<(String, String)>,
    /// Said when cvl.lock keeps an unpinned import on an older version than
    /// the newest one allowed (as cargo reports versions it did not take).
    newer: Option<String>,
    /// Why the repository it came from is not trusted beyond its sums.
    unsigned: Option<String>,
}

/// `scheme://host/` of a URL (the URL itself when it has no path).
fn url_prefix(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    match url[after..].find('/') {
        Some(slash) => &url[..after + slash + 1],
        None => url,
    }
}

fn resolve_import(
    fetcher: &Fetcher,
    key: &ImportKey,
    base: &Location,
    mut lock: Option<&mut LockState>,
    mode: LockMode,
    report: &mut TrustReport,
) -> Result<Fetched, String> {
    crate::paths::check_relative(&key.cvl).map_err(|e| {
        format!("the import's `cvl` key must name a file inside the repository: {e}")
    })?;
    let mapped = fetcher.settings().map_url(&key.url);
    let location = Location::parse(&mapped, Some(base))?;
    let via = if mapped != key.url {
        format!(" (mirrored to {})", location.display())
    } else {
        String::new()
    };
    let requested = match &key.version {
        Some(v) => Some(
            v.parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("version `{v}` is not a positive whole number"))?,
        ),
        None => None,
    };
    // Where trust in it starts: an administrator's root, else the root
    // cvl.lock pinned the first time.
    let anchor = crate::trust::admin_anchor(fetcher.settings(), &key.url).or_else(|| {
        lock.as_ref()
            .and_then(|l| l.lock.roots.get(&key.url))
            .map(|pin| crate::trust::Anchor::Pin(pin.clone()))
    });
    if let Some(anchor) = anchor {
        fetcher.settings().trust.anchor(&location.url(), anchor);
    }
    let index = fetcher.index(&location).map_err(|e| {
        if let Some(refused) = fetcher.settings().trust.refused(&location.url()) {
            if !report.refused.contains(&refused) {
                report.refused.push(refused);
            }
        }
        if mapped != key.url || !crate::fetch::is_unreachable(&e) {
            return e;
        }
        // Unreachable and not mirrored: say how to read it from a copy.
        let prefix = url_prefix(&key.url);
        format!(
            "{e}; to read it from a copy, add a mirror to cvl.toml (`[mirrors]` \
             \"{prefix}\" = \"path/to/repos/\", see docs/workspace-settings.md) or pass \
             --mirror {prefix}=file:///path/to/repos/ (also $CVL_MIRRORS)"
        )
    })?;
    let Some(index) = index else {
        // A plain folder: its file as it is now, unversioned and unlocked.
        if let Some(v) = requested {
            return Err(format!(
                "{} is a plain folder, not a repository, so it has no version {v}{via}: \
                 create one with `cvl repo create` and `cvl publish`",
                location.display()
            ));
        }
        let bytes = fetcher.plain_file(&location, &key.cvl)?;
        let text = String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", key.cvl))?;
        let Location::Dir(dir) = &location else {
            unreachable!("only local folders lack an index")
        };
        let path = dir.join(&key.cvl);
        return Ok(Fetched {
            name: display_path(&path),
            text,
            path: Some(path),
            version: None,
            detail: format!("the plain folder {}{via}", location.display()),
            base: location.clone(),
            blacklisted: None,
            files: Vec::new(),
            newer: None,
            unsigned: None,
        });
    };
    if index.versions.is_empty() {
        return Err(format!(
            "the repository {} has no published version yet{via}",
            location.display()
        ));
    }
    let locked = lock
        .as_ref()
        .filter(|_| !matches!(mode, LockMode::Update | LockMode::Preview))
        .and_then(|l| {
            l.lock
                .find(&key.url, &key.cvl, key.version.as_deref())
                .cloned()
        });
    let version = match (&locked, requested) {
        (Some(entry), _) => index.version(entry.version).ok_or_else(|| {
            format!(
                "cvl.lock pins version {} of {}, which the repository no longer lists{via}: \
                 the repository has been tampered with; run `cvl update-lock` only if you trust it",
                entry.version, key.url
            )
        })?,
        (None, Some(n)) => index.version(n).ok_or_else(|| {
            let latest = index.latest().map_or(0, |v| v.version);
            format!(
                "the repository {} has no version {n} (its latest is {latest}){via}",
                location.display()
            )
        })?,
        // The newest version the blacklist allows (the latest when it bars
        // them all: then it is reported below).
        (None, None) => fetcher
            .settings()
            .blacklist
            .newest_allowed(&key.url, &index)
            .and_then(|n| index.version(n))
            .or_else(|| index.latest())
            .expect("checked non-empty"),
    };
    let entry = version.file(&key.cvl).ok_or_else(|| {
        format!(
            "version {} of {} has no file `{}` (it has {}){via}",
            version.version,
            location.display(),
            key.cvl,
            version
                .files
                .iter()
                .map(|f| f.path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    if let Some(l) = &locked {
        if l.sha256 != entry.sha256 {
            return Err(format!(
                "version {} of {} changed since cvl.lock recorded it (SHA-256 {} in the lock, {} \
                 in the repository){via}: a published version must never change",
                version.version, key.cvl, l.sha256, entry.sha256
            ));
        }
    }
    let bytes = fetcher.version_file(&location, version.version, entry)?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", key.cvl))?;
    // What the repository is trusted as: signed (its root pinned on first
    // use, and after a rotation its chain signed), or not.
    let trust = fetcher
        .settings()
        .trust
        .verified(&location.url())
        .unwrap_or(crate::trust::Trust::Unsigned);
    let (signed, unsigned) = match &trust {
        crate::trust::Trust::Signed(verified) => {
            if let Some(state) = lock.as_deref_mut() {
                let pinned = state.lock.roots.get(&key.url);
                if pinned.is_none_or(|p| p.version < verified.root.version) {
                    state
                        .lock
                        .roots
                        .insert(key.url.clone(), verified.root.clone());
                    state.changed = true;
                }
            }
            report.signed.insert(key.url.clone(), verified.clone());
            (format!("; {}", verified.describe()), None)
        }
        crate::trust::Trust::Unsigned => (
            {
                report.unsigned.insert(key.url.clone());
                String::new()
            },
            Some(format!(
                "{} is not signed: anyone who can change its files, or stand between this \
                 machine and it, can change what runs; its publisher signs it with `cvl repo \
                 sign DIR --key FILE` (docs/repositories.md)",
                key.url
            )),
        ),
    };
    if locked.is_none() {
        if let Some(state) = lock {
            state.lock.upsert(LockEntry {
                url: key.url.clone(),
                cvl: key.cvl.clone(),
                requested: key.version.clone(),
                version: version.version,
                sha256: entry.sha256.clone(),
            });
            state.changed = true;
        }
    }
    let blacklist = &fetcher.settings().blacklist;
    let blacklisted = blacklist.bars(&key.url, version.version).map(|entry| {
        let reason = entry.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
        let how = match (&key.version, &locked) {
            (Some(_), _) => "the import pins it",
            (None, Some(_)) => "cvl.lock pins it",
            (None, None) => "it is the latest",
        };
        let instead = match blacklist.newest_allowed(&key.url, &index) {
            Some(n) if key.version.is_some() => format!("the newest allowed version is {n}: pin that"),
            Some(n) => format!("the newest allowed version is {n}: pin it, or run `cvl update-lock` once a newer one is published"),
            None => "no version of it is allowed".to_string(),
        };
        format!(
            "version {} of {} is on the utility administrator's blacklist{reason}, and {how}; {instead}",
            version.version, key.url
        )
    });
    let newer = match (&locked, &key.version) {
        (Some(entry), None) => blacklist
            .newest_allowed(&key.url, &index)
            .filter(|&n| n > entry.version)
            .filter(|&n| index.version(n).is_some_and(|v| v.file(&key.cvl).is_some()))
            .map(|n| {
                format!(
                    "cvl.lock keeps {} ({}) on version {}; version {n} is published: run \
                     `cvl update-lock` to take it",
                    key.url, key.cvl, entry.version
                )
            }),
        _ => None,
    };
    let rel = crate::index::version_file_path(version.version, &key.cvl);
    let path = match &location {
        Location::Dir(dir) => Some(dir.join(&rel)),
        Location::Http(_) => None,
    };
    Ok(Fetched {
        name: match &location {
            Location::Dir(dir) => display_path(&dir.join(&rel)),
            Location::Http(_) => location.file_name(&rel),
        },
        text,
        path,
        version: Some(version.version),
        detail: format!(
            "version {} of {}{via}, published {}, SHA-256 {}{signed}",
            version.version, key.url, version.published, entry.sha256
        ),
        files: version
            .files
            .iter()
            .map(|f| (f.path.clone(), f.sha256.clone()))
            .collect(),
        base: location,
        blacklisted,
        newer,
        unsigned,
    })
}

/// Pins every import of `url` in the `cvl.lock` of `dir` to `version` (a
/// rollback): the version's files are checked to exist in the repository
/// (after mirrors) and their SHA-256 recorded, as a resolution would. The
/// versions they were locked to before, once each.
pub fn pin(settings: &Settings, dir: &Path, url: &str, version: u32) -> Result<Vec<u32>, String> {
    let mut lock = LockFile::read(dir)?;
    let fetcher = Fetcher::new(settings.clone());
    let location = Location::parse(
        &settings.map_url(url),
        Some(&Location::Dir(dir.to_path_buf())),
    )?;
    let index = fetcher
        .index(&location)?
        .ok_or_else(|| format!("{} is not a repository", location.display()))?;
    let target = index.version(version).ok_or_else(|| {
        format!(
            "{} has no version {version} (its versions: {})",
            location.display(),
            index
                .versions
                .iter()
                .map(|v| v.version.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let mut before = Vec::new();
    let mut found = false;
    // Imports that name their version are pinned by their own text.
    for entry in lock
        .imports
        .iter_mut()
        .filter(|e| e.url == url && e.requested.is_none())
    {
        found = true;
        let file = target.file(&entry.cvl).ok_or_else(|| {
            format!(
                "version {version} of {url} has no file `{}`, which the import names",
                entry.cvl
            )
        })?;
        if !before.contains(&entry.version) {
            before.push(entry.version);
        }
        entry.version = version;
        entry.sha256 = file.sha256.clone();
    }
    if !found {
        return Err(format!(
            "{} has no import of {url} without a version of its own: nothing to pin (an \
             import that names its version is changed in its file)",
            LockFile::path_in(dir).display()
        ));
    }
    lock.write(dir)?;
    Ok(before)
}
