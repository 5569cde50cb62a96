//! The front door to the analysis, in the manner of rust-analyzer's
//! `ide::AnalysisHost`: an [`AnalysisHost`] takes changes (files, their
//! edits, how their imports resolved) from one writer, and hands out
//! [`Analysis`] snapshots that answer in plain data.
//!
//! A snapshot is cheap (it shares the database) and can be sent to another
//! thread. Every question it answers is [`Cancellable`]: when the host takes
//! a change while a snapshot is still computing, the computation stops at its
//! next query and answers `Err(Cancelled)` instead of holding the change up.
//! The language server and the CLI use this door; neither imports salsa.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use cvl_syntax::{TextEdit, TextRange, TextSize};

use crate::db::{ImportResolutions, RootDatabase, SourceFile};
use crate::diagnostics::{Diagnostic, Fix};
use crate::ide;
use crate::item_tree::ItemTree;
use crate::resolve::Def;
use crate::{CheckOptions, EvaluatedParam};

/// A question whose snapshot was overtaken by a change: ask again on a new
/// snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the analysis was cancelled by a newer change")
    }
}

impl std::error::Error for Cancelled {}

/// An answer, or [`Cancelled`].
pub type Cancellable<T> = Result<T, Cancelled>;

/// The analysis's only writer: it takes changes and hands out snapshots.
///
/// A change first cancels the snapshots still computing and waits until
/// every snapshot is dropped: the thread that changes the host must not
/// hold one itself.
#[derive(Default)]
pub struct AnalysisHost {
    db: RootDatabase,
}

impl AnalysisHost {
    pub fn new() -> AnalysisHost {
        AnalysisHost::default()
    }

    /// A host for one check, as the CLI runs them: syntax trees are dropped
    /// once files are lowered (see [`RootDatabase::batch`]).
    pub fn batch() -> AnalysisHost {
        AnalysisHost {
            db: RootDatabase::batch(),
        }
    }

    /// A snapshot of the analysis as of now.
    pub fn analysis(&self) -> Analysis {
        Analysis {
            db: self.db.clone(),
        }
    }

    /// Adds a file as read from disk or a repository.
    pub fn add_file(&mut self, name: String, text: String) -> SourceFile {
        self.db.add_file(name, text)
    }

    /// Replaces a file's text. Cancels the snapshots still computing.
    pub fn set_text(&mut self, file: SourceFile, text: String) {
        self.db.set_text(file, text);
    }

    /// Applies one edit to a file's text, reparsing only the object it falls
    /// in when it can; `false`, changing nothing, when the edit does not fit
    /// the text. Cancels the snapshots still computing.
    pub fn apply_edit(&mut self, file: SourceFile, edit: &TextEdit) -> bool {
        self.db.apply_edit(file, edit)
    }

    /// Records how a file's imports resolved (the loader's job).
    pub fn set_imports(&mut self, file: SourceFile, imports: ImportResolutions) {
        self.db.set_imports(file, imports);
    }

    /// A file's text as the analysis holds it.
    pub fn file_text(&self, file: SourceFile) -> &str {
        file.text(&self.db)
    }

    /// How the file's imports resolved, as last recorded.
    pub fn file_imports(&self, file: SourceFile) -> &ImportResolutions {
        file.imports(&self.db)
    }

    /// The file's summary: its imports and objects (what the loader reads to
    /// find imports). Never cancelled: nothing writes while the host is
    /// borrowed.
    pub fn item_tree(&self, file: SourceFile) -> &ItemTree {
        crate::resolve::item_tree(&self.db, file)
    }
}

/// A snapshot of the analysis: every question in plain data (byte offsets,
/// labels, markdown), or [`Cancelled`].
#[derive(Clone)]
pub struct Analysis {
    db: RootDatabase,
}

impl Analysis {
    /// Runs `f` on the snapshot's database, turning a cancellation into
    /// `Err(Cancelled)`. The door for the layers built on the analysis
    /// (repositories' VM checks, the planner's lowering) that read its
    /// queries directly.
    pub fn with_db<T>(&self, f: impl FnOnce(&RootDatabase) -> T) -> Cancellable<T> {
        // A cancelled computation leaves nothing half-done behind: salsa
        // discards the unfinished queries' work.
        salsa::Cancelled::catch(AssertUnwindSafe(|| f(&self.db))).map_err(|_| Cancelled)
    }

    /// How the file is named in diagnostics: a path or URL.
    pub fn file_name(&self, file: SourceFile) -> &str {
        file.name(&self.db)
    }

    pub fn file_text(&self, file: SourceFile) -> &str {
        file.text(&self.db)
    }

    /// The predefined objects' file.
    pub fn prelude(&self) -> SourceFile {
        crate::Db::prelude(&self.db)
    }

    /// Every diagnostic of `file`: syntax, checks, evaluation of what it
    /// deploys, in source order.
    pub fn diagnostics(
        &self,
        file: SourceFile,
        options: &CheckOptions,
    ) -> Cancellable<Vec<Diagnostic>> {
        self.with_db(|db| crate::file_diagnostics(db, file, options))
    }

    /// The files `file` imports, directly or not.
    pub fn imported_files(&self, file: SourceFile) -> Cancellable<Vec<SourceFile>> {
        self.with_db(|db| crate::analysis::imported_files(db, file))
    }

    /// The file's summary: imports and objects.
    pub fn item_tree(&self, file: SourceFile) -> Cancellable<Arc<ItemTree>> {
        self.with_db(|db| crate::resolve::item_tree(db, file).clone())
    }

    /// Every parameter of a deployed object, evaluated once the utility
    /// has allocated `allocations` (none: what is known before deploying).
    pub fn evaluated_params(
        &self,
        def: &Def,
        allocations: &crate::eval::Allocations,
    ) -> Cancellable<Vec<EvaluatedParam>> {
        self.with_db(|db| crate::analysis::evaluated_params_with(db, def, allocations))
    }

    pub fn hover(
        &self,
        file: SourceFile,
        offset: TextSize,
    ) -> Cancellable<Option<(TextRange, String)>> {
        self.with_db(|db| ide::hover(db, file, offset))
    }

    pub fn goto_definition(
        &self,
        file: SourceFile,
        offset: TextSize,
    ) -> Cancellable<Option<ide::NavTarget>> {
        self.with_db(|db| ide::goto_definition(db, file, offset))
    }

    /// The object named under `offset`, as a type hierarchy shows it.
    pub fn type_at(
        &self,
        file: SourceFile,
        offset: TextSize,
    ) -> Cancellable<Option<ide::TypeItem>> {
        self.with_db(|db| ide::type_at(db, file, offset))
    }

    /// The object `name` of `file`, as a type hierarchy shows it.
    pub fn type_item(&self, def: &Def) -> Cancellable<Option<ide::TypeItem>> {
        self.with_db(|db| ide::type_item(db, def))
    }

    /// What `def` extends.
    pub fn supertypes(&self, def: &Def) -> Cancellable<Vec<ide::TypeItem>> {
        self.with_db(|db| ide::supertypes(db, def))
    }

    /// The objects of `files` that extend `def`.
    pub fn subtypes(&self, def: &Def, files: &[SourceFile]) -> Cancellable<Vec<ide::TypeItem>> {
        self.with_db(|db| ide::subtypes(db, def, files))
    }

    /// For each object of `file`, the components of `files` whose type it
    /// is (one pass over the workspace, whatever the number of objects).
    pub fn components_by_type(
        &self,
        file: SourceFile,
        files: &[SourceFile],
    ) -> Cancellable<Vec<(Def, Vec<ide::NavTarget>)>> {
        self.with_db(|db| {
            let tree = crate::resolve::item_tree(db, file);
            let mut out: Vec<(Def, Vec<ide::NavTarget>)> = tree
                .objects
                .iter()
                .map(|o| {
                    let def = Def {
                        file,
                        name: o.data.name.text.clone(),
                    };
                    (def, Vec::new())
                })
                .collect();
            let index: rustc_hash::FxHashMap<Def, usize> = out
                .iter()
                .enumerate()
                .map(|(i, (d, _))| (d.clone(), i))
                .collect();
            for &f in files {
                for (ty, range) in ide::component_types(db, f).iter() {
                    if let Some(&i) = index.get(ty) {
                        out[i].1.push(ide::NavTarget {
                            file: f,
                            range: *range,
                        });
                    }
                }
            }
            out
        })
    }

    /// The components of `files` whose type is `def`.
    pub fn components_of_type(
        &self,
        def: &Def,
        files: &[SourceFile],
    ) -> Cancellable<Vec<ide::NavTarget>> {
        self.with_db(|db| ide::components_of_type(db, def, files))
    }

    /// Every occurrence in `files` of what the name under `offset` denotes,
    /// its declaration first.
    pub fn references(
        &self,
        file: SourceFile,
        offset: TextSize,
        files: &[SourceFile],
    ) -> Cancellable<Vec<ide::NavTarget>> {
        self.with_db(|db| ide::references(db, file, offset, files))
    }

    /// The range of the name a rename at `offset` would change.
    pub fn prepare_rename(
        &self,
        file: SourceFile,
        offset: TextSize,
    ) -> Cancellable<Option<TextRange>> {
        self.with_db(|db| ide::occurrence_at(db, file, offset).map(|o| o.range))
    }

    pub fn rename(
        &self,
        file: SourceFile,
        offset: TextSize,
        new_name: &str,
        files: &[SourceFile],
    ) -> Cancellable<Result<ide::Rename, String>> {
        self.with_db(|db| ide::rename(db, file, offset, new_name, files))
    }

    pub fn completions(
        &self,
        file: SourceFile,
        offset: TextSize,
    ) -> Cancellable<Vec<ide::CompletionItem>> {
        self.with_db(|db| ide::completions(db, file, offset))
    }

    pub fn document_symbols(&self, file: SourceFile) -> Cancellable<Vec<ide::Symbol>> {
        self.with_db(|db| ide::document_symbols(db, file))
    }

    pub fn workspace_symbols(
        &self,
        query: &str,
        files: &[SourceFile],
    ) -> Cancellable<Vec<ide::WorkspaceSymbol>> {
        self.with_db(|db| ide::workspace_symbols(db, query, files))
    }

    pub fn folding_ranges(&self, file: SourceFile) -> Cancellable<Vec<TextRange>> {
        self.with_db(|db| ide::folding_ranges(db, file))
    }

    pub fn highlights(&self, file: SourceFile) -> Cancellable<Vec<(TextRange, ide::Highlight)>> {
        self.with_db(|db| ide::highlights(db, file))
    }

    /// Each parameter's final value, shown after its name.
    pub fn inlay_hints(&self, file: SourceFile) -> Cancellable<Vec<(TextSize, String)>> {
        self.with_db(|db| ide::inlay_hints(db, file))
    }

    /// The quick fixes offered in `range`.
    pub fn code_actions(&self, file: SourceFile, range: TextRange) -> Cancellable<Vec<Fix>> {
        self.with_db(|db| ide::code_actions(db, file, range))
    }

    /// The file formatted, or `None` when it has syntax errors (a file that
    /// does not parse is never reformatted).
    pub fn format(&self, file: SourceFile) -> Option<String> {
        let options = cvl_syntax::format::FormatOptions::default();
        cvl_syntax::format::format_text(self.file_text(file), options).ok()
    }
}
