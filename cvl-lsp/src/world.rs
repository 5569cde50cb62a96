//! The server's state: the analysis host (the analysis's only writer), the
//! loader that resolves imports, every CVL file of the workspace, and the
//! documents the editor has open (whose text wins over the disk's), and the
//! open test parameters files (`*.params`), each analysed as the deployment
//! of its appliance it stands for. A [`Snapshot`] of it answers a request
//! with no lock held.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cvl_analysis::params_file::{self, Deployment, ParamsFile};
use cvl_analysis::{Analysis, AnalysisHost, SourceFile};
use cvl_repo::{LoadOptions, Loader, LockMode, Settings};
use cvl_syntax::{TextRange, TextSize};
use tower_lsp::lsp_types::{Location, TextDocumentPositionParams, Url};

use crate::line_index::LineIndex;
use crate::preview::Previewer;

pub struct Document {
    pub file: SourceFile,
    pub version: i32,
    pub text: String,
    pub index: Arc<LineIndex>,
}

/// An open test parameters file, as last analysed.
pub struct ParamsDoc {
    pub version: i32,
    pub text: String,
    pub index: Arc<LineIndex>,
    pub parsed: ParamsFile,
    /// The appliance's file, once found.
    pub appliance: Option<PathBuf>,
    /// The deployment it stands for, and the file that holds its text in
    /// the analysis.
    pub analysed: Option<(Deployment, SourceFile)>,
    /// Why there is no deployment (no appliance found, none exported).
    pub problem: Option<String>,
}

pub struct World {
    host: AnalysisHost,
    loader: Loader,
    /// Files of the workspace folder and the editor (editable), by path.
    local: Arc<HashMap<PathBuf, SourceFile>>,
    /// The same files, ordered by path.
    local_files: Arc<Vec<SourceFile>>,
    /// Every loaded file with a path (workspace files and local imports).
    paths: Arc<HashMap<SourceFile, PathBuf>>,
    pub docs: HashMap<Url, Document>,
    pub params: HashMap<Url, Arc<ParamsDoc>>,
    /// The loader's options, before the workspace's `cvl.toml` is added.
    options: LoadOptions,
}

impl World {
    /// A world loading imports with the settings of the environment, and
    /// the problem with them, if any (then plain settings are used).
    pub fn new() -> (World, Option<String>) {
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
        let world = World {
            host: AnalysisHost::new(),
            loader: Loader::new(&options),
            options,
            local: Arc::default(),
            local_files: Arc::default(),
            paths: Arc::default(),
            docs: HashMap::new(),
            params: HashMap::new(),
        };
        (world, problem)
    }

    /// The analysis, to change (every change cancels the snapshots still
    /// computing).
    pub fn host(&mut self) -> &mut AnalysisHost {
        &mut self.host
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
        let file = self.loader.add_root(&mut self.host, path, text);
        if self.local.get(path) != Some(&file) {
            Arc::make_mut(&mut self.local).insert(path.to_path_buf(), file);
            let mut files: Vec<(&PathBuf, SourceFile)> =
                self.local.iter().map(|(p, f)| (p, *f)).collect();
            files.sort_by(|a, b| a.0.cmp(b.0));
            self.local_files = Arc::new(files.into_iter().map(|(_, f)| f).collect());
        }
        if self.paths.get(&file).map(PathBuf::as_path) != Some(path) {
            Arc::make_mut(&mut self.paths).insert(file, path.to_path_buf());
        }
        file
    }

    /// Resolves the imports of files added or changed, and records the paths
    /// of newly loaded local files.
    pub fn resolve(&mut self) {
        self.loader.resolve(&mut self.host);
        for (file, path) in self.loader.files() {
            if let Some(path) = path {
                if !self.paths.contains_key(file) {
                    Arc::make_mut(&mut self.paths).insert(*file, path.clone());
                }
            }
        }
    }

    /// After an edit of `file`: its imports again, if they changed.
    pub fn refresh(&mut self, file: SourceFile) {
        self.loader.refresh(&self.host, file);
        self.resolve();
    }

    /// Sets an open parameters file's text (and version), and analyses it.
    pub fn set_params(&mut self, uri: &Url, text: String, version: i32) {
        let Ok(path) = uri.to_file_path() else {
            return;
        };
        let parsed = params_file::parse(&text);
        let mut doc = ParamsDoc {
            version,
            index: Arc::new(LineIndex::new(&text)),
            parsed,
            appliance: None,
            analysed: None,
            problem: None,
            text,
        };
        match cvl_repo::appliance::of_params(&path, &doc.text) {
            Ok(appliance) => {
                // The editor's text of the appliance when it is open.
                let text = match self.local.get(&appliance) {
                    Some(&f) => Some(self.host.file_text(f).to_string()),
                    None => std::fs::read_to_string(&appliance).ok(),
                };
                let stem = appliance
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                match text.map(|t| (params_file::exported_object(&t, &stem), t)) {
                    Some((Some(object), text)) => {
                        let deployment =
                            params_file::deployment(&text, &object, "ethernet0", &doc.parsed);
                        // Beside the appliance, so that its relative imports
                        // resolve; never on disk.
                        let name = path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        let at = appliance.with_file_name(format!(".cvl-test-{name}.cvl"));
                        let file = self.loader.add_root(&mut self.host, &at, &deployment.text);
                        doc.analysed = Some((deployment, file));
                    }
                    Some((None, _)) => {
                        doc.problem = Some(format!(
                        "{} exports no appliance (no object named `{stem}`, and not one object)",
                        appliance.display()
                    ))
                    }
                    None => doc.problem = Some(format!("cannot read {}", appliance.display())),
                }
                doc.appliance = Some(appliance);
            }
            Err(e) => doc.problem = Some(e),
        }
        self.params.insert(uri.clone(), Arc::new(doc));
        self.resolve();
    }

    /// After the text of `changed` changed: the parameters files of that
    /// appliance analysed again.
    pub fn refresh_params_of(&mut self, changed: &Path) {
        let stale: Vec<(Url, String, i32)> = self
            .params
            .iter()
            .filter(|(_, d)| d.appliance.as_deref() == Some(changed))
            .map(|(u, d)| (u.clone(), d.text.clone(), d.version))
            .collect();
        for (uri, text, version) in stale {
            self.set_params(&uri, text, version);
        }
    }

    /// Whether the analysis holds exactly the text of the open document.
    pub fn in_sync(&self, uri: &Url) -> bool {
        self.docs
            .get(uri)
            .is_some_and(|d| self.host.file_text(d.file) == d.text)
    }

    /// A snapshot to answer requests with: the analysis as of now, and how
    /// its files map to the editor's documents.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            analysis: self.host.analysis(),
            local_files: self.local_files.clone(),
            local: self.local.clone(),
            paths: self.paths.clone(),
            open: self
                .docs
                .iter()
                .map(|(uri, d)| (uri.clone(), (d.file, d.index.clone())))
                .collect(),
            params: self.params.clone(),
            previewer: None,
        }
    }
}

/// The world as of one moment, owned: requests answer from it on another
/// thread while edits go on (an edit cancels what is still computing).
pub struct Snapshot {
    pub analysis: Analysis,
    /// Every workspace file, ordered by path.
    local_files: Arc<Vec<SourceFile>>,
    local: Arc<HashMap<PathBuf, SourceFile>>,
    paths: Arc<HashMap<SourceFile, PathBuf>>,
    open: HashMap<Url, (SourceFile, Arc<LineIndex>)>,
    /// The open parameters files.
    pub params: HashMap<Url, Arc<ParamsDoc>>,
    /// Plans and the state, when the plan preview is on.
    pub previewer: Option<Arc<dyn Previewer>>,
}

impl Snapshot {
    pub fn file_of(&self, uri: &Url) -> Option<SourceFile> {
        if let Some((file, _)) = self.open.get(uri) {
            return Some(*file);
        }
        let path = uri.to_file_path().ok()?;
        self.local.get(&path).copied()
    }

    /// The file at `uri` among every loaded one (imports too).
    pub fn loaded_file(&self, uri: &Url) -> Option<SourceFile> {
        self.file_of(uri).or_else(|| {
            let path = uri.to_file_path().ok()?;
            self.paths
                .iter()
                .find(|(_, p)| **p == path)
                .map(|(f, _)| *f)
        })
    }

    /// The path a file was loaded from.
    pub fn path(&self, file: SourceFile) -> Option<&Path> {
        self.paths.get(&file).map(PathBuf::as_path)
    }

    pub fn uri(&self, file: SourceFile) -> Option<Url> {
        self.paths
            .get(&file)
            .and_then(|p| Url::from_file_path(p).ok())
    }

    /// The line index of a file: the open document's, else one built now.
    pub fn line_index(&self, file: SourceFile) -> Arc<LineIndex> {
        match self.open.values().find(|(f, _)| *f == file) {
            Some((_, index)) => index.clone(),
            None => Arc::new(LineIndex::new(self.analysis.file_text(file))),
        }
    }

    /// The file of an editor's document, and its line index.
    pub fn document(&self, uri: &Url) -> Option<(SourceFile, Arc<LineIndex>)> {
        let file = self.file_of(uri)?;
        Some((file, self.line_index(file)))
    }

    /// Every workspace file, for references and renames.
    pub fn local_files(&self) -> &[SourceFile] {
        &self.local_files
    }

    /// Every loaded file with a path, by the name diagnostics use.
    pub fn files_by_name(&self) -> HashMap<String, (Url, SourceFile)> {
        self.paths
            .iter()
            .filter_map(|(f, p)| {
                let uri = Url::from_file_path(p).ok()?;
                Some((self.analysis.file_name(*f).to_string(), (uri, *f)))
            })
            .collect()
    }

    /// The file and byte offset of a document position.
    pub fn at(&self, position: &TextDocumentPositionParams) -> Option<(SourceFile, TextSize)> {
        let file = self.file_of(&position.text_document.uri)?;
        let offset = self.line_index(file).offset(position.position);
        Some((file, offset))
    }

    pub fn location(&self, file: SourceFile, range: TextRange) -> Option<Location> {
        Some(Location::new(
            self.uri(file)?,
            self.line_index(file).range(range),
        ))
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
