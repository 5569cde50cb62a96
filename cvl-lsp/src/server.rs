//! The LSP protocol over the analysis: tower-lsp's `LanguageServer`, with
//! every answer converted from the IDE layer's plain data (byte offsets) to
//! LSP types (UTF-16 positions).
//!
//! Edits update the database under a lock; diagnostics are computed on a
//! snapshot in the background and published only if no newer edit came in
//! meanwhile (a newer edit also cancels the computation: salsa unwinds the
//! snapshot's queries when an input changes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cvl_analysis::ide::{self, CompletionKind, Highlight};
use cvl_analysis::{CheckOptions, RootDatabase, Severity, SourceFile};
use cvl_syntax::format::{format_text, FormatOptions};
use cvl_syntax::TextRange;
use tower_lsp::jsonrpc::{Error, Result};
use tower_lsp::lsp_types::*;
use tower_lsp::{Client, LanguageServer};

use crate::line_index::LineIndex;
use crate::workspace::{Document, Workspace};

pub struct Server {
    client: Client,
    ws: Arc<Mutex<Workspace>>,
    /// The latest version of each open document, read by background tasks.
    versions: Arc<Mutex<HashMap<Url, i32>>>,
    /// Held from checking a result's version to sending it, so that an
    /// older result can never be sent after a newer one.
    publishing: Arc<tokio::sync::Mutex<()>>,
    /// A problem with the environment's settings, told to the user once.
    settings_problem: Option<String>,
    /// The workspace folder, from `initialize` until `initialized` loads it.
    root: Mutex<Option<std::path::PathBuf>>,
}

const TOKEN_TYPES: [SemanticTokenType; 7] = [
    SemanticTokenType::KEYWORD,
    SemanticTokenType::STRING,
    SemanticTokenType::COMMENT,
    SemanticTokenType::TYPE,
    SemanticTokenType::PROPERTY,
    SemanticTokenType::VARIABLE,
    SemanticTokenType::OPERATOR,
];

fn token_type(h: Highlight) -> u32 {
    match h {
        Highlight::Keyword => 0,
        Highlight::String => 1,
        Highlight::Comment => 2,
        Highlight::Type => 3,
        Highlight::Parameter => 4,
        Highlight::Component => 5,
        Highlight::Operator => 6,
    }
}

/// Loaded files with a path, by the name diagnostics use.
type Names = HashMap<String, (Url, SourceFile)>;

/// One file's diagnostics, ready to publish.
struct Publish {
    uri: Url,
    version: Option<i32>,
    diagnostics: Vec<Diagnostic>,
}

impl Server {
    pub fn new(client: Client) -> Server {
        let (workspace, settings_problem) = Workspace::new();
        Server {
            client,
            ws: Arc::new(Mutex::new(workspace)),
            versions: Arc::default(),
            publishing: Arc::default(),
            settings_problem,
            root: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Workspace> {
        self.ws.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn versions(&self) -> std::sync::MutexGuard<'_, HashMap<Url, i32>> {
        self.versions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Computes, on a snapshot and off the async runtime, the diagnostics of
    /// `files`, and publishes those still current.
    fn publish_later(
        &self,
        files: Vec<(Url, SourceFile, Option<i32>)>,
        snapshot: RootDatabase,
        names: Names,
    ) {
        let client = self.client.clone();
        let versions = self.versions.clone();
        let publishing = self.publishing.clone();
        tokio::spawn(async move {
            let computed = tokio::task::spawn_blocking(move || {
                let result = salsa::Cancelled::catch(|| {
                    files
                        .iter()
                        .map(|(uri, file, version)| {
                            let dir = uri
                                .to_file_path()
                                .ok()
                                .and_then(|p| p.parent().map(|d| d.to_path_buf()));
                            Publish {
                                uri: uri.clone(),
                                version: *version,
                                diagnostics: lsp_diagnostics(
                                    &snapshot,
                                    *file,
                                    dir.as_deref(),
                                    &names,
                                ),
                            }
                        })
                        .collect::<Vec<_>>()
                });
                drop(snapshot); // before anything waits on the workspace lock
                result.ok()
            })
            .await;
            let Ok(Some(batches)) = computed else { return };
            let _publishing = publishing.lock().await;
            for batch in batches {
                let current = versions
                    .lock()
                    .map(|v| v.get(&batch.uri).copied())
                    .unwrap_or(None);
                if batch.version.is_some() && current != batch.version {
                    continue; // a newer edit superseded this result
                }
                client
                    .publish_diagnostics(batch.uri, batch.diagnostics, batch.version)
                    .await;
            }
        });
    }

    /// Publishes diagnostics for `changed` and every local file importing it
    /// (all local files when `changed` is `None`).
    fn republish(&self, ws: &Workspace, changed: Option<SourceFile>) {
        let mut targets = Vec::new();
        for file in ws.local_files() {
            let affected = match changed {
                None => true,
                Some(c) => {
                    file == c || cvl_analysis::analysis::imported_files(&ws.db, file).contains(&c)
                }
            };
            if !affected {
                continue;
            }
            let Some(uri) = ws.uri(file) else { continue };
            let version = ws.docs.get(&uri).map(|d| d.version);
            targets.push((uri, file, version));
        }
        let names = ws
            .paths
            .iter()
            .filter_map(|(f, p)| Some((f.name(&ws.db).clone(), (Url::from_file_path(p).ok()?, *f))))
            .collect();
        self.publish_later(targets, ws.db.clone(), names);
    }

    /// The file and byte offset of a document position.
    fn at(
        &self,
        ws: &Workspace,
        position: &TextDocumentPositionParams,
    ) -> Option<(SourceFile, cvl_syntax::TextSize)> {
        let file = ws.file_of(&position.text_document.uri)?;
        let offset = ws.line_index(file).offset(position.position);
        Some((file, offset))
    }

    fn location(ws: &Workspace, file: SourceFile, range: TextRange) -> Option<Location> {
        Some(Location::new(
            ws.uri(file)?,
            ws.line_index(file).range(range),
        ))
    }
}

/// LSP diagnostics of one file: the same codes and messages as `cvl check`.
fn lsp_diagnostics(
    db: &RootDatabase,
    file: SourceFile,
    dir: Option<&std::path::Path>,
    names: &Names,
) -> Vec<Diagnostic> {
    let text = file.text(db);
    let index = LineIndex::new(text);
    let own = file.name(db);
    let mut all = cvl_analysis::file_diagnostics(db, file, &CheckOptions::default());
    if let Some(dir) = dir {
        all.extend(cvl_repo::appliance::check(db, file, dir));
    }
    all.into_iter()
        .map(|d| {
            let (range, mut message) = if &d.span.file == own {
                (index.range(d.span.range), d.message.clone())
            } else {
                (
                    Range::default(),
                    format!("in `{}`: {}", d.span.file, d.message),
                )
            };
            for note in &d.notes {
                message.push('\n');
                message.push_str(note);
            }
            let related: Vec<DiagnosticRelatedInformation> = d
                .labels
                .iter()
                .filter_map(|l| {
                    let (uri, other) = names.get(&l.span.file)?;
                    let label_index = LineIndex::new(other.text(db));
                    Some(DiagnosticRelatedInformation {
                        location: Location::new(uri.clone(), label_index.range(l.span.range)),
                        message: l.message.clone(),
                    })
                })
                .collect();
            Diagnostic {
                range,
                severity: Some(match d.severity {
                    Severity::Error => DiagnosticSeverity::ERROR,
                    Severity::Warning => DiagnosticSeverity::WARNING,
                    Severity::Hint => DiagnosticSeverity::HINT,
                }),
                code: Some(NumberOrString::String(d.code.as_str().to_string())),
                source: Some("cvl".into()),
                message,
                related_information: (!related.is_empty()).then_some(related),
                ..Default::default()
            }
        })
        .collect()
}

#[tower_lsp::async_trait]
impl LanguageServer for Server {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        #[allow(deprecated)]
        let root = params
            .workspace_folders
            .as_ref()
            .and_then(|f| f.first())
            .and_then(|f| f.uri.to_file_path().ok())
            .or_else(|| params.root_uri.as_ref().and_then(|u| u.to_file_path().ok()));
        // Loading the workspace may fetch imports: done after answering.
        *self.root.lock().unwrap_or_else(|e| e.into_inner()) = root;
        Ok(InitializeResult {
            server_info: Some(ServerInfo {
                name: "cvl".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            capabilities: ServerCapabilities {
                position_encoding: Some(PositionEncodingKind::UTF16),
                text_document_sync: Some(TextDocumentSyncCapability::Kind(
                    TextDocumentSyncKind::INCREMENTAL,
                )),
                hover_provider: Some(HoverProviderCapability::Simple(true)),
                definition_provider: Some(OneOf::Left(true)),
                references_provider: Some(OneOf::Left(true)),
                document_highlight_provider: Some(OneOf::Left(true)),
                rename_provider: Some(OneOf::Right(RenameOptions {
                    prepare_provider: Some(true),
                    work_done_progress_options: Default::default(),
                })),
                completion_provider: Some(CompletionOptions {
                    trigger_characters: Some(vec![".".into(), "\"".into()]),
                    ..Default::default()
                }),
                document_symbol_provider: Some(OneOf::Left(true)),
                workspace_symbol_provider: Some(OneOf::Left(true)),
                folding_range_provider: Some(FoldingRangeProviderCapability::Simple(true)),
                document_formatting_provider: Some(OneOf::Left(true)),
                inlay_hint_provider: Some(OneOf::Left(true)),
                code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
                semantic_tokens_provider: Some(
                    SemanticTokensServerCapabilities::SemanticTokensOptions(
                        SemanticTokensOptions {
                            legend: SemanticTokensLegend {
                                token_types: TOKEN_TYPES.to_vec(),
                                token_modifiers: Vec::new(),
                            },
                            full: Some(SemanticTokensFullOptions::Bool(true)),
                            range: None,
                            work_done_progress_options: Default::default(),
                        },
                    ),
                ),
                ..Default::default()
            },
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        if let Some(problem) = &self.settings_problem {
            let message = format!("cvl: {problem}; imports load without mirrors or blacklist");
            self.client
                .show_message(MessageType::WARNING, message)
                .await;
        }
        let root = self.root.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(root) = root {
            let problem = tokio::task::block_in_place(|| {
                let mut ws = self.lock();
                let problem = ws.use_settings_of(&root);
                ws.scan(&root);
                problem
            });
            if let Some(problem) = problem {
                self.client
                    .show_message(MessageType::WARNING, format!("cvl: {problem}"))
                    .await;
            }
        }
        let ws = self.lock();
        self.republish(&ws, None);
    }

    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let doc = params.text_document;
        let mut ws = self.lock();
        let Ok(path) = doc.uri.to_file_path() else {
            return;
        };
        let file = ws.add_local(&path, &doc.text);
        ws.refresh(file);
        self.versions().insert(doc.uri.clone(), doc.version);
        ws.docs.insert(
            doc.uri,
            Document {
                file,
                version: doc.version,
                index: LineIndex::new(&doc.text),
                text: doc.text,
            },
        );
        self.republish(&ws, Some(file));
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let uri = params.text_document.uri;
        let mut ws = self.lock();
        // Only while the analysis holds the editor's text can it take an
        // edit; else the editor's whole text replaces it.
        let in_sync = ws
            .docs
            .get(&uri)
            .is_some_and(|d| *d.file.text(&ws.db) == d.text);
        let Some(doc) = ws.docs.get_mut(&uri) else {
            return;
        };
        // One ranged change (what editors send while typing) goes to the
        // analysis as an edit, which reparses only the object it falls in.
        let mut single_edit = None;
        let changes = params.content_changes.len();
        for change in params.content_changes {
            match change.range {
                Some(range) => {
                    let start = doc.index.offset(range.start);
                    let end = doc.index.offset(range.end).max(start);
                    let (s, e) = (u32::from(start) as usize, u32::from(end) as usize);
                    doc.text.replace_range(s..e, &change.text);
                    if changes == 1 {
                        single_edit = Some(cvl_syntax::TextEdit {
                            delete: cvl_syntax::TextRange::new(start, end),
                            insert: change.text,
                        });
                    }
                }
                None => doc.text = change.text,
            }
            doc.index = LineIndex::new(&doc.text);
        }
        doc.version = params.text_document.version;
        let (file, text) = (doc.file, doc.text.clone());
        self.versions().insert(uri, params.text_document.version);
        match single_edit {
            Some(edit) if in_sync && ws.db.apply_edit(file, &edit) => {}
            _ => ws.db.set_text(file, text),
        }
        ws.refresh(file);
        self.republish(&ws, Some(file));
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        let mut ws = self.lock();
        ws.docs.remove(&params.text_document.uri);
        self.versions().remove(&params.text_document.uri);
        // The file stays in the workspace with its text on disk.
        if let Ok(path) = params.text_document.uri.to_file_path() {
            if let Ok(text) = std::fs::read_to_string(&path) {
                let file = ws.add_local(&path, &text);
                ws.refresh(file);
                self.republish(&ws, Some(file));
            }
        }
    }

    async fn hover(&self, params: HoverParams) -> Result<Option<Hover>> {
        let ws = self.lock();
        let Some((file, offset)) = self.at(&ws, &params.text_document_position_params) else {
            return Ok(None);
        };
        Ok(ide::hover(&ws.db, file, offset).map(|(range, text)| Hover {
            contents: HoverContents::Markup(MarkupContent {
                kind: MarkupKind::Markdown,
                value: text,
            }),
            range: Some(ws.line_index(file).range(range)),
        }))
    }

    async fn goto_definition(
        &self,
        params: GotoDefinitionParams,
    ) -> Result<Option<GotoDefinitionResponse>> {
        let ws = self.lock();
        let Some((file, offset)) = self.at(&ws, &params.text_document_position_params) else {
            return Ok(None);
        };
        Ok(ide::goto_definition(&ws.db, file, offset)
            .and_then(|t| Self::location(&ws, t.file, t.range))
            .map(GotoDefinitionResponse::Scalar))
    }

    async fn references(&self, params: ReferenceParams) -> Result<Option<Vec<Location>>> {
        let ws = self.lock();
        let Some((file, offset)) = self.at(&ws, &params.text_document_position) else {
            return Ok(None);
        };
        let files = ws.local_files();
        let refs = ide::references(&ws.db, file, offset, &files);
        Ok(Some(
            refs.into_iter()
                .filter_map(|t| Self::location(&ws, t.file, t.range))
                .collect(),
        ))
    }

    async fn document_highlight(
        &self,
        params: DocumentHighlightParams,
    ) -> Result<Option<Vec<DocumentHighlight>>> {
        let ws = self.lock();
        let Some((file, offset)) = self.at(&ws, &params.text_document_position_params) else {
            return Ok(None);
        };
        let index = ws.line_index(file);
        Ok(Some(
            ide::references(&ws.db, file, offset, &[file])
                .into_iter()
                .filter(|t| t.file == file)
                .map(|t| DocumentHighlight {
                    range: index.range(t.range),
                    kind: None,
                })
                .collect(),
        ))
    }

    async fn prepare_rename(
        &self,
        params: TextDocumentPositionParams,
    ) -> Result<Option<PrepareRenameResponse>> {
        let ws = self.lock();
        let Some((file, offset)) = self.at(&ws, &params) else {
            return Ok(None);
        };
        Ok(ide::occurrence_at(&ws.db, file, offset)
            .map(|o| PrepareRenameResponse::Range(ws.line_index(file).range(o.range))))
    }

    async fn rename(&self, params: RenameParams) -> Result<Option<WorkspaceEdit>> {
        let ws = self.lock();
        let Some((file, offset)) = self.at(&ws, &params.text_document_position) else {
            return Ok(None);
        };
        let new_name = params.new_name;
        let valid = new_name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && new_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Error::invalid_params(format!(
                "`{new_name}` is not a CVL name (a letter, then letters, digits, _)"
            )));
        }
        let targets = ide::references(&ws.db, file, offset, &ws.local_files());
        let mut changes: HashMap<Url, Vec<TextEdit>> = HashMap::new();
        for t in targets {
            if !ws.is_local(t.file) {
                return Err(Error::invalid_params(format!(
                    "it is declared in `{}`, which is not part of this workspace (a published or predefined file) and cannot be renamed",
                    t.file.name(&ws.db)
                )));
            }
            let Some(location) = Self::location(&ws, t.file, t.range) else {
                continue;
            };
            changes
                .entry(location.uri)
                .or_default()
                .push(TextEdit::new(location.range, new_name.clone()));
        }
        Ok(Some(WorkspaceEdit {
            changes: Some(changes),
            ..Default::default()
        }))
    }

    async fn completion(&self, params: CompletionParams) -> Result<Option<CompletionResponse>> {
        let ws = self.lock();
        let Some((file, offset)) = self.at(&ws, &params.text_document_position) else {
            return Ok(None);
        };
        let items = ide::completions(&ws.db, file, offset)
            .into_iter()
            .map(|c| CompletionItem {
                label: c.label,
                kind: Some(match c.kind {
                    CompletionKind::Parameter => CompletionItemKind::PROPERTY,
                    CompletionKind::Component => CompletionItemKind::FIELD,
                    CompletionKind::Type => CompletionItemKind::CLASS,
                    CompletionKind::Keyword => CompletionItemKind::KEYWORD,
                    CompletionKind::Attribute => CompletionItemKind::VALUE,
                    CompletionKind::ImportKey => CompletionItemKind::PROPERTY,
                }),
                detail: Some(c.detail),
                documentation: c.documentation.map(|d| {
                    Documentation::MarkupContent(MarkupContent {
                        kind: MarkupKind::Markdown,
                        value: d,
                    })
                }),
                ..Default::default()
            })
            .collect();
        Ok(Some(CompletionResponse::Array(items)))
    }

    async fn document_symbol(
        &self,
        params: DocumentSymbolParams,
    ) -> Result<Option<DocumentSymbolResponse>> {
        let ws = self.lock();
        let Some(file) = ws.file_of(&params.text_document.uri) else {
            return Ok(None);
        };
        let index = ws.line_index(file);
        #[allow(deprecated)]
        fn convert(s: ide::Symbol, index: &LineIndex) -> DocumentSymbol {
            DocumentSymbol {
                name: s.name,
                detail: (!s.detail.is_empty()).then_some(s.detail),
                kind: match s.kind {
                    ide::SymbolKind::Object => SymbolKind::CLASS,
                    ide::SymbolKind::Parameter => SymbolKind::PROPERTY,
                    ide::SymbolKind::Component => SymbolKind::FIELD,
                    ide::SymbolKind::Import => SymbolKind::MODULE,
                },
                tags: None,
                deprecated: None,
                range: index.range(s.range),
                selection_range: index.range(s.selection),
                children: Some(s.children.into_iter().map(|c| convert(c, index)).collect()),
            }
        }
        let symbols = ide::document_symbols(&ws.db, file)
            .into_iter()
            .map(|s| convert(s, &index))
            .collect();
        Ok(Some(DocumentSymbolResponse::Nested(symbols)))
    }

    async fn symbol(
        &self,
        params: WorkspaceSymbolParams,
    ) -> Result<Option<Vec<SymbolInformation>>> {
        let ws = self.lock();
        let query = params.query.to_lowercase();
        let mut out = Vec::new();
        for file in ws.local_files() {
            for object in &cvl_analysis::resolve::item_tree(&ws.db, file).objects {
                let name = &object.data.name;
                if !name.text.to_lowercase().contains(&query) {
                    continue;
                }
                let Some(location) = Self::location(&ws, file, name.range + object.start) else {
                    continue;
                };
                #[allow(deprecated)]
                out.push(SymbolInformation {
                    name: name.text.clone(),
                    kind: SymbolKind::CLASS,
                    tags: None,
                    deprecated: None,
                    location,
                    container_name: None,
                });
            }
        }
        Ok(Some(out))
    }

    async fn folding_range(&self, params: FoldingRangeParams) -> Result<Option<Vec<FoldingRange>>> {
        let ws = self.lock();
        let Some(file) = ws.file_of(&params.text_document.uri) else {
            return Ok(None);
        };
        let index = ws.line_index(file);
        Ok(Some(
            ide::folding_ranges(&ws.db, file)
                .into_iter()
                .map(|r| {
                    let range = index.range(r);
                    FoldingRange {
                        start_line: range.start.line,
                        end_line: range.end.line,
                        ..Default::default()
                    }
                })
                .collect(),
        ))
    }

    async fn semantic_tokens_full(
        &self,
        params: SemanticTokensParams,
    ) -> Result<Option<SemanticTokensResult>> {
        let ws = self.lock();
        let Some(file) = ws.file_of(&params.text_document.uri) else {
            return Ok(None);
        };
        let index = ws.line_index(file);
        let text = file.text(&ws.db).clone();
        let mut data = Vec::new();
        let (mut last_line, mut last_start) = (0u32, 0u32);
        for (range, h) in ide::highlights(&ws.db, file) {
            // Tokens may not span lines: split multi-line comments.
            let mut start = range.start();
            for line in text[range].split_inclusive('\n') {
                let piece = line.trim_end_matches(['\n', '\r']);
                let len: u32 = piece.chars().map(|c| c.len_utf16() as u32).sum();
                let pos = index.position(start);
                if len > 0 {
                    let delta_line = pos.line - last_line;
                    let delta_start = if delta_line == 0 {
                        pos.character - last_start
                    } else {
                        pos.character
                    };
                    data.push(SemanticToken {
                        delta_line,
                        delta_start,
                        length: len,
                        token_type: token_type(h),
                        token_modifiers_bitset: 0,
                    });
                    last_line = pos.line;
                    last_start = pos.character;
                }
                start += cvl_syntax::TextSize::of(line);
            }
        }
        Ok(Some(SemanticTokensResult::Tokens(SemanticTokens {
            result_id: None,
            data,
        })))
    }

    async fn formatting(&self, params: DocumentFormattingParams) -> Result<Option<Vec<TextEdit>>> {
        let ws = self.lock();
        let Some(file) = ws.file_of(&params.text_document.uri) else {
            return Ok(None);
        };
        let text = file.text(&ws.db);
        let Ok(formatted) = format_text(text, FormatOptions::default()) else {
            return Ok(None); // a file with syntax errors is never reformatted
        };
        if &formatted == text {
            return Ok(Some(Vec::new()));
        }
        let index = ws.line_index(file);
        let whole = index.range(TextRange::up_to(cvl_syntax::TextSize::of(text.as_str())));
        Ok(Some(vec![TextEdit::new(whole, formatted)]))
    }

    async fn inlay_hint(&self, params: InlayHintParams) -> Result<Option<Vec<InlayHint>>> {
        let ws = self.lock();
        let Some(file) = ws.file_of(&params.text_document.uri) else {
            return Ok(None);
        };
        let index = ws.line_index(file);
        Ok(Some(
            ide::inlay_hints(&ws.db, file)
                .into_iter()
                .map(|(offset, label)| InlayHint {
                    position: index.position(offset),
                    label: InlayHintLabel::String(label),
                    kind: None,
                    text_edits: None,
                    tooltip: Some(InlayHintTooltip::String(
                        "the final value in this object".into(),
                    )),
                    padding_left: Some(false),
                    padding_right: None,
                    data: None,
                })
                .collect(),
        ))
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        let ws = self.lock();
        let Some(file) = ws.file_of(&params.text_document.uri) else {
            return Ok(None);
        };
        let index = ws.line_index(file);
        let wanted = TextRange::new(
            index.offset(params.range.start),
            index.offset(params.range.end),
        );
        let own = file.name(&ws.db).clone();
        let mut actions = Vec::new();
        for d in cvl_analysis::file_diagnostics(&ws.db, file, &CheckOptions::default()) {
            let Some(fix) = &d.fix else { continue };
            let touches = d.span.file == own
                && (d.span.range.intersect(wanted).is_some()
                    || d.span.range.contains_inclusive(wanted.start()));
            let fixes_here = fix.edits.iter().all(|(span, _)| span.file == own);
            if !touches || !fixes_here {
                continue;
            }
            let edits = fix
                .edits
                .iter()
                .map(|(span, text)| TextEdit::new(index.range(span.range), text.clone()))
                .collect();
            actions.push(CodeActionOrCommand::CodeAction(CodeAction {
                title: fix.title.clone(),
                kind: Some(CodeActionKind::QUICKFIX),
                edit: Some(WorkspaceEdit {
                    changes: Some(HashMap::from([(params.text_document.uri.clone(), edits)])),
                    ..Default::default()
                }),
                is_preferred: Some(true),
                ..Default::default()
            }));
        }
        Ok(Some(actions))
    }
}
