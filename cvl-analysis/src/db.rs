//! The salsa database: its inputs (files, with how their imports resolved)
//! and the database type. Import resolution is an input: the analysis never
//! reads a file or the network itself.

use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use crate::item_tree::{ImportKey, Lowered};

/// One CVL file known to the analysis.
#[salsa::input(debug)]
pub struct SourceFile {
    /// How the file is named in diagnostics: a path or URL.
    #[returns(ref)]
    pub name: String,
    #[returns(ref)]
    pub text: String,
    /// How each of the file's imports resolved, set by the loader.
    #[returns(ref)]
    pub imports: Arc<ImportResolutions>,
    /// The parse of `text` when an edit was reparsed incrementally
    /// ([`RootDatabase::apply_edit`]); `None`: parse `text` in full.
    #[default]
    #[returns(ref)]
    pub parsed: Option<Arc<cvl_syntax::Parse>>,
}

/// The outcome of resolving each import of one file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImportResolutions {
    pub entries: Vec<(ImportKey, Result<ResolvedImport, String>)>,
}

impl ImportResolutions {
    pub fn get(&self, key: &ImportKey) -> Option<&Result<ResolvedImport, String>> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, r)| r)
    }
}

/// Where an import led: the file it loaded, and the repository version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImport {
    pub file: SourceFile,
    /// The version the import resolved to; `None` for a plain directory.
    pub version: Option<u32>,
    /// Extra facts for people (the SHA-256, the repository URL after mirrors).
    pub detail: String,
    /// The repository the file came from, after mirrors (a URL or a local
    /// folder), for a versioned import.
    pub repository: Option<String>,
    /// Every file of the version: path and SHA-256 (empty for a plain folder).
    pub files: Vec<(String, String)>,
    /// Set when the version is on the administrator's blacklist: why, and
    /// what to use instead.
    pub blacklisted: Option<String>,
}

/// What every query can ask of the database beyond its inputs.
#[salsa::db]
pub trait Db: salsa::Database {
    /// The file holding the predefined objects.
    fn prelude(&self) -> SourceFile;
    /// Each file's objects as last lowered, for `item_tree` to reuse (a
    /// cache of a pure function of green nodes: it never changes a result).
    fn lowered(&self) -> &Mutex<FxHashMap<SourceFile, Lowered>>;
}

/// The database: salsa's storage plus the prelude file.
#[salsa::db]
#[derive(Clone)]
pub struct RootDatabase {
    storage: salsa::Storage<Self>,
    prelude: Option<SourceFile>,
    log: Option<Arc<Mutex<Vec<String>>>>,
    lowered: Arc<Mutex<FxHashMap<SourceFile, Lowered>>>,
}

impl Default for RootDatabase {
    fn default() -> Self {
        Self::new(false)
    }
}

impl RootDatabase {
    /// A database; with `log_executions`, every query execution is recorded
    /// (see [`RootDatabase::take_log`]), which tests use to prove reuse.
    pub fn new(log_executions: bool) -> Self {
        let log: Option<Arc<Mutex<Vec<String>>>> = log_executions.then(Default::default);
        let callback = log.clone().map(|log| {
            Box::new(move |event: salsa::Event| {
                if let salsa::EventKind::WillExecute { database_key } = event.kind {
                    log.lock()
                        .expect("log lock")
                        .push(format!("{database_key:?}"));
                }
            }) as Box<dyn Fn(salsa::Event) + Send + Sync + 'static>
        });
        let mut db = RootDatabase {
            storage: salsa::Storage::new(callback),
            prelude: None,
            log,
            lowered: Arc::default(),
        };
        let prelude = db.add_file(
            crate::prelude::NAME.to_string(),
            crate::prelude::TEXT.to_string(),
        );
        db.prelude = Some(prelude);
        db
    }

    /// Adds a file as read from disk or a repository. Its text is marked
    /// durable: until it is edited with [`RootDatabase::set_text`], edits to
    /// other files never make salsa re-verify what depends only on it.
    pub fn add_file(&self, name: String, text: String) -> SourceFile {
        SourceFile::builder(name, text, Arc::default())
            .name_durability(salsa::Durability::HIGH)
            .text_durability(salsa::Durability::HIGH)
            .imports_durability(salsa::Durability::HIGH)
            .parsed_durability(salsa::Durability::HIGH)
            .new(self)
    }

    /// Replaces a file's text, as an editor does: a new revision; queries
    /// re-run only where the change reaches. The file is volatile from now on.
    pub fn set_text(&mut self, file: SourceFile, text: String) {
        use salsa::Setter;
        file.set_text(self)
            .with_durability(salsa::Durability::LOW)
            .to(text);
        if file.parsed(self).is_some() {
            file.set_parsed(self)
                .with_durability(salsa::Durability::LOW)
                .to(None);
        }
    }

    /// Applies one edit to a file's text, as an editor sends it: when the
    /// edit stays inside one object's body, only that body is parsed again
    /// and every other node of the tree is shared with the previous one (so
    /// that objects the edit did not touch are not lowered again either).
    /// Returns `false`, changing nothing, when the edit does not fit the
    /// file's text.
    pub fn apply_edit(&mut self, file: SourceFile, edit: &cvl_syntax::TextEdit) -> bool {
        use salsa::Setter;
        let Some(text) = edit.apply(file.text(self)) else {
            return false;
        };
        let parsed = crate::resolve::parse(self, file)
            .reparse(edit)
            .map(Arc::new);
        file.set_text(self)
            .with_durability(salsa::Durability::LOW)
            .to(text);
        file.set_parsed(self)
            .with_durability(salsa::Durability::LOW)
            .to(parsed);
        true
    }

    /// Records how a file's imports resolved (the loader's job).
    pub fn set_imports(&mut self, file: SourceFile, imports: ImportResolutions) {
        use salsa::Setter;
        file.set_imports(self)
            .with_durability(salsa::Durability::HIGH)
            .to(Arc::new(imports));
    }

    /// The query executions recorded since the last call.
    pub fn take_log(&self) -> Vec<String> {
        self.log
            .as_ref()
            .map(|l| std::mem::take(&mut *l.lock().expect("log lock")))
            .unwrap_or_default()
    }
}

#[salsa::db]
impl salsa::Database for RootDatabase {}

#[salsa::db]
impl Db for RootDatabase {
    fn prelude(&self) -> SourceFile {
        self.prelude.expect("set in RootDatabase::new")
    }

    fn lowered(&self) -> &Mutex<FxHashMap<SourceFile, Lowered>> {
        &self.lowered
    }
}
