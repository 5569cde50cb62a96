//! The salsa database: its inputs (files, with how their imports resolved,
//! and each file's shape and objects as the writer lowered them) and the
//! database type. Import resolution is an input: the analysis never reads a
//! file or the network itself.
//!
//! Why a file's objects are inputs and not only a query over its text:
//! salsa re-verifies every memo that depends, however indirectly, on an
//! input of the durability that changed. Were each object's queries derived
//! from the text, a one-character edit in one object of a 5,000-object file
//! would make salsa walk the dependencies of every object's memos (about
//! 30 ms). Instead the writer lowers the file itself and sets only the
//! edited object's input, at low durability; the file's shape (names,
//! imports) and its other objects keep a higher one, so their memos are
//! valid at a glance (see `RootDatabase::sync_objects`).

use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use crate::item_tree::{lower_parse, ImportKey, ItemTree, Lowered, ObjectData};

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
    /// What name resolution reads of the file, set by the writer from the
    /// lowered text (never derived from it by a query).
    #[returns(ref)]
    pub shape: Arc<FileShape>,
    /// The parse of `text`, made by the writer (in full, or incrementally by
    /// [`RootDatabase::apply_edit`]); `None`: parse `text` in full.
    #[default]
    #[returns(ref)]
    pub parsed: Option<Arc<cvl_syntax::Parse>>,
}

/// One object's declarations as its file was last lowered: an input of its
/// own, so that an edit in another object of the file does not reach it.
#[salsa::input(debug)]
pub struct ObjectInput {
    #[returns(ref)]
    pub data: Arc<ObjectData>,
}

/// A file's objects by name and its imports: what name resolution and the
/// per-object queries read of a file. Equal across edits inside object
/// bodies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileShape {
    /// Every object's name in source order, duplicates included.
    pub names: Vec<crate::resolve::Name>,
    /// The first object of each name: its index in `names` and its input.
    pub by_name: FxHashMap<crate::resolve::Name, (usize, ObjectInput)>,
    /// Each import's local name and key (`None` when incomplete).
    pub imports: Vec<(crate::resolve::Name, Option<ImportKey>)>,
}

impl FileShape {
    /// The shape of `tree`; `input` gives the input of each object's data
    /// (a new one, or the one it had, brought up to date).
    fn new(tree: &ItemTree, mut input: impl FnMut(&str, &Arc<ObjectData>) -> ObjectInput) -> Self {
        let mut shape = FileShape {
            names: Vec::with_capacity(tree.objects.len()),
            by_name: FxHashMap::default(),
            imports: tree
                .imports
                .iter()
                .filter_map(|i| Some((i.name.as_ref()?.text.clone(), i.key())))
                .collect(),
        };
        shape.by_name.reserve(tree.objects.len());
        for (index, object) in tree.objects.iter().enumerate() {
            let name = &object.data.name.text;
            let name: crate::resolve::Name = match shape.by_name.get_key_value(&**name) {
                Some((shared, _)) => shared.clone(),
                None => {
                    let handle = input(name, &object.data);
                    let shared: crate::resolve::Name = name.clone();
                    shape.by_name.insert(shared.clone(), (index, handle));
                    shared
                }
            };
            shape.names.push(name);
        }
        shape
    }
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
    /// Set when the repository is not signed: what that means, and how to
    /// sign it.
    pub unsigned: Option<String>,
}

/// What every query can ask of the database beyond its inputs.
#[salsa::db]
pub trait Db: salsa::Database {
    /// The file holding the predefined objects.
    fn prelude(&self) -> SourceFile;
    /// Each file's objects as last lowered, for `item_tree` to reuse (a
    /// cache of a pure function of green nodes: it never changes a result).
    fn lowered(&self) -> &Mutex<FxHashMap<SourceFile, Lowered>>;
    /// Whether files keep their syntax trees once lowered (see
    /// [`RootDatabase::batch`]).
    fn retains_syntax(&self) -> bool;
}

/// The database: salsa's storage plus the prelude file.
#[salsa::db]
#[derive(Clone)]
pub struct RootDatabase {
    storage: salsa::Storage<Self>,
    prelude: Option<SourceFile>,
    log: Option<Arc<Mutex<Vec<String>>>>,
    lowered: Arc<Mutex<FxHashMap<SourceFile, Lowered>>>,
    retain_syntax: bool,
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
            retain_syntax: true,
        };
        let prelude = db.add_file(
            crate::prelude::NAME.to_string(),
            crate::prelude::TEXT.to_string(),
        );
        db.prelude = Some(prelude);
        db
    }

    /// A database for one check, as the CLI runs them: a file's syntax tree
    /// is dropped once the file is lowered (the checks read the lowered
    /// summary, which keeps the syntax errors). The tree of a large file
    /// was the largest part of the memory a check held. Editor features
    /// (hover, completion, incremental reparsing...) still answer, by
    /// parsing the file again when asked: a language server keeps trees
    /// (`RootDatabase::default`).
    pub fn batch() -> Self {
        let mut db = Self::new(false);
        db.retain_syntax = false;
        db
    }

    /// Adds a file as read from disk or a repository. Its text is marked
    /// durable: until it is edited with [`RootDatabase::set_text`], edits to
    /// other files never make salsa re-verify what depends only on it.
    pub fn add_file(&self, name: String, text: String) -> SourceFile {
        let high = salsa::Durability::HIGH;
        let mut lowered = Lowered::default();
        let (tree, parsed) = if self.retain_syntax {
            let parse = cvl_syntax::parse(&text);
            let tree = lower_parse(&parse, &mut lowered, true);
            (tree, Some(Arc::new(parse)))
        } else {
            // Item by item: never the whole file's tree at once.
            (crate::item_tree::lower_text(&text), None)
        };
        // The text's buffer moves into the input with it, unchanged.
        lowered.set_text(&text, tree.clone());
        let shape = FileShape::new(&tree, |_, data| {
            ObjectInput::builder(data.clone())
                .data_durability(high)
                .new(self)
        });
        let file = SourceFile::builder(name, text, Arc::default(), Arc::new(shape))
            .name_durability(high)
            .text_durability(high)
            .imports_durability(high)
            .shape_durability(high)
            .parsed(parsed)
            .parsed_durability(high)
            .new(self);
        if let Ok(mut cache) = self.lowered.lock() {
            cache.insert(file, lowered);
        }
        file
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
        self.sync_objects(file);
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
        self.sync_objects(file);
        true
    }

    /// Brings a file's shape and object inputs up to date with its text,
    /// setting only what changed: an object whose data changed gets it at
    /// low durability; the shape, when names or imports changed, at medium.
    /// So after an edit inside one object's body, only the memos that read
    /// that object need more than a glance to be trusted again.
    fn sync_objects(&mut self, file: SourceFile) {
        use salsa::Setter;
        let db: &Self = self;
        let tree = crate::resolve::item_tree(db, file).clone();
        let old = file.shape(db).clone();
        let mut changed = Vec::new();
        let shape = FileShape::new(&tree, |name, data| match old.by_name.get(name) {
            Some(&(_, input)) => {
                if input.data(db) != data {
                    changed.push((input, data.clone()));
                }
                input
            }
            None => ObjectInput::new(db, data.clone()),
        });
        for (input, data) in changed {
            input
                .set_data(self)
                .with_durability(salsa::Durability::LOW)
                .to(data);
        }
        if shape != *old {
            file.set_shape(self)
                .with_durability(salsa::Durability::MEDIUM)
                .to(Arc::new(shape));
        }
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

    fn retains_syntax(&self) -> bool {
        self.retain_syntax
    }
}
