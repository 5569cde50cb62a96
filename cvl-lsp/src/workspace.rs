//! The server's view of the world: the analysis database, the loader that
//! resolves imports, every CVL file of the workspace, and the documents the
//! editor has open (whose text wins over the disk's).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cvl_analysis::{RootDatabase, SourceFile};
use cvl_repo::{LoadOptions, Loader, LockMode, Settings};
use tower_lsp::lsp_types::Url;

use crate::line_index::LineIndex;

pub struct Document {
    pub file: SourceFile,
    pub version: i32,
    pub text: String,
    pub index: LineIndex,
}

pub struct Workspace {
    pub db: RootDatabase,
    loader: Loader,
    /// Files of the workspace folder and the editor (editable), by path.
    pub local: HashMap<PathBuf, SourceFile>,
    /// Every loaded file with a path (workspace files and local imports).
    pub paths: HashMap<SourceFile, PathBuf>,
    pub docs: HashMap<Url, Document>,
    /// The loader's options, before the workspace's `cvl.toml` is added.
    options: LoadOptions,
}

impl Workspace {
    /// A workspace loading imports with the settings of the environment,
    /// and the problem with them, if any (then plain settings are used).
    pub fn new() -> (Workspace, Option<String>) {
        let (mut settings, problem) = match Settings::from_env() {
            Ok(s) => (s, None),
            Err(e) => (Settings::plain(cvl_repo::settings::default_home()), Some(e)),
        };
        // An editor should not wait long on a server that does not answer.
        settings.timeout = std::time::Duration::from_secs(10);
        let options = LoadOptions {
            settings,
            lock: LockMode::ReadOnly,
        };
        let workspace = Workspace {
            db: RootDatabase::default(),
            loader: Loader::new(&options),
            options,
            local: HashMap::new(),
            paths: HashMap::new(),
            docs: HashMap::new(),
        };
        (workspace, problem)
    }

    /// Takes the mirrors of the `cvl.toml` nearest to `root` (before any file
    /// is loaded); the problem with that file, if any.
    pub fn use_settings_of(&mut self, root: &Path) -> Option<String> {
        match self.options.settings.clone().with_workspace(root) {
            Ok(settings) if settings.workspace_file.is_some() => {
                self.loader = Loader::new(&LoadOptions {
                    settings,
                    lock: self.options.lock,
                });
                None
            }
            Ok(_) => None,
            Err(e) => Some(e),
        }
    }

    /// Loads every `.cvl` file below `root` (not inside repositories).
    pub fn scan(&mut self, root: &Path) {
        let mut files = Vec::new();
        walk(root, &mut files);
        for path in files {
            if self.local.contains_key(&path) {
                continue; // already open in the editor: its text wins
            }
            if let Ok(text) = std::fs::read_to_string(&path) {
                self.add_local(&path, &text);
            }
        }
        self.resolve();
    }

    /// Adds or updates a local file's text.
    pub fn add_local(&mut self, path: &Path, text: &str) -> SourceFile {
        let file = self.loader.add_root(&mut self.db, path, text);
        self.local.insert(path.to_path_buf(), file);
        self.paths.insert(file, path.to_path_buf());
        file
    }

    /// Resolves the imports of files added or changed, and records the paths
    /// of newly loaded local files.
    pub fn resolve(&mut self) {
        self.loader.resolve(&mut self.db);
        for (file, path) in self.loader.files() {
            if let Some(path) = path {
                self.paths.entry(*file).or_insert_with(|| path.clone());
            }
        }
    }

    /// After an edit of `file`: its imports again, if they changed.
    pub fn refresh(&mut self, file: SourceFile) {
        self.loader.refresh(&self.db, file);
        self.resolve();
    }

    pub fn uri(&self, file: SourceFile) -> Option<Url> {
        self.paths
            .get(&file)
            .and_then(|p| Url::from_file_path(p).ok())
    }

    pub fn file_of(&self, uri: &Url) -> Option<SourceFile> {
        if let Some(doc) = self.docs.get(uri) {
            return Some(doc.file);
        }
        let path = uri.to_file_path().ok()?;
        self.local.get(&path).copied()
    }

    /// The line index of a file: the open document's, else one built now.
    pub fn line_index(&self, file: SourceFile) -> LineIndex {
        match self.docs.values().find(|d| d.file == file) {
            Some(doc) => LineIndex::new(&doc.text),
            None => LineIndex::new(file.text(&self.db)),
        }
    }

    /// Every workspace file, for references and renames.
    pub fn local_files(&self) -> Vec<SourceFile> {
        let mut files: Vec<SourceFile> = self.local.values().copied().collect();
        files.sort_by_key(|f| self.paths.get(f).cloned());
        files
    }

    pub fn is_local(&self, file: SourceFile) -> bool {
        self.local.values().any(|&f| f == file)
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.join(cvl_repo::index::INDEX_FILE).exists() {
        return; // a repository: its versions are published, not edited
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            walk(&path, out);
        } else if name.ends_with(".cvl") {
            out.push(path);
        }
    }
}
