//! Loading a workspace: root files from disk, then every file they import,
//! transitively, resolved through mirrors, the lock and the repositories,
//! into the analysis database. A failed import is recorded as the import's
//! resolution (the analysis reports it as `bad-import` at the statement);
//! loading itself fails only when a root file cannot be read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cvl_analysis::item_tree::ImportKey;
use cvl_analysis::resolve::item_tree;
use cvl_analysis::{ImportResolutions, ResolvedImport, RootDatabase, SourceFile};

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
}

struct Pending {
    file: SourceFile,
    base: Location,
    /// The folder of the root whose lock this file's imports use.
    lock_dir: Option<PathBuf>,
}

struct LockState {
    lock: LockFile,
    changed: bool,
}

/// Loads `roots` (with their texts, already read and UTF-8) and everything
/// they import into `db`.
pub fn load(
    db: &mut RootDatabase,
    roots: &[(PathBuf, String)],
    options: &LoadOptions,
) -> LoadReport {
    let fetcher = Fetcher::new(options.settings.clone());
    let mut report = LoadReport::default();
    let mut by_name: HashMap<String, SourceFile> = HashMap::new();
    let mut locks: HashMap<PathBuf, LockState> = HashMap::new();
    let mut queue: Vec<Pending> = Vec::new();

    for (path, text) in roots {
        let name = path.display().to_string();
        let file = match by_name.get(&name) {
            Some(f) => *f,
            None => {
                let f = db.add_file(name.clone(), text.clone());
                by_name.insert(name, f);
                report.files.push((f, Some(path.clone())));
                f
            }
        };
        report.roots.push(file);
        let dir = absolute_parent(path);
        if options.lock != LockMode::Ignore && !locks.contains_key(&dir) {
            let lock = match options.lock {
                LockMode::Update => LockFile::default(),
                _ => LockFile::read(&dir).unwrap_or_else(|e| {
                    report.lock_errors.push(e);
                    LockFile::default()
                }),
            };
            locks.insert(
                dir.clone(),
                LockState {
                    lock,
                    changed: options.lock == LockMode::Update,
                },
            );
        }
        queue.push(Pending {
            file,
            base: Location::Dir(dir.clone()),
            lock_dir: (options.lock != LockMode::Ignore).then_some(dir),
        });
    }

    let mut done: std::collections::HashSet<SourceFile> = Default::default();
    while let Some(pending) = queue.pop() {
        if !done.insert(pending.file) {
            continue;
        }
        let keys: Vec<ImportKey> = item_tree(db, pending.file)
            .imports
            .iter()
            .filter_map(|i| i.key())
            .collect();
        let mut resolutions = ImportResolutions::default();
        for key in keys {
            if resolutions.get(&key).is_some() {
                continue;
            }
            let lock = pending.lock_dir.as_ref().and_then(|d| locks.get_mut(d));
            let outcome = resolve_import(&fetcher, &key, &pending.base, lock, options.lock);
            let result = outcome.map(|fetched| {
                let file = match by_name.get(&fetched.name) {
                    Some(f) => *f,
                    None => {
                        let f = db.add_file(fetched.name.clone(), fetched.text);
                        by_name.insert(fetched.name.clone(), f);
                        report.files.push((f, fetched.path));
                        queue.push(Pending {
                            file: f,
                            base: fetched.base,
                            lock_dir: pending.lock_dir.clone(),
                        });
                        f
                    }
                };
                ResolvedImport {
                    file,
                    version: fetched.version,
                    detail: fetched.detail,
                    blacklisted: fetched.blacklisted,
                }
            });
            resolutions.entries.push((key, result));
        }
        db.set_imports(pending.file, resolutions);
    }

    for (dir, state) in locks {
        if !state.changed {
            continue;
        }
        if options.lock == LockMode::Locked {
            report.lock_errors.push(format!(
                "{} is missing entries or out of date, and --locked forbids changing it: run \
                 `cvl update-lock` and commit the result",
                LockFile::path_in(&dir).display()
            ));
            continue;
        }
        match state.lock.write(&dir) {
            Ok(()) => report.locks_written.push(LockFile::path_in(&dir)),
            Err(e) => report.lock_errors.push(e),
        }
    }
    report
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
}

fn resolve_import(
    fetcher: &Fetcher,
    key: &ImportKey,
    base: &Location,
    lock: Option<&mut LockState>,
    mode: LockMode,
) -> Result<Fetched, String> {
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
    let Some(index) = fetcher.index(&location)? else {
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
        .filter(|_| mode != LockMode::Update)
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
        (None, None) => index.latest().expect("checked non-empty"),
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
    let bytes = fetcher.version_file(&location, version.version, &key.cvl, &entry.sha256)?;
    let text = String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8", key.cvl))?;
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
            "version {} of {}{via}, published {}, SHA-256 {}",
            version.version, key.url, version.published, entry.sha256
        ),
        base: location,
        blacklisted,
    })
}
