//! The CVL language server: LSP over stdio, on the same analysis as
//! `cvl check`. Started by `cvl lsp`.
//!
//! This file is the routing table: one line per request or notification,
//! naming its handler. `state` holds the shared state and answers each
//! request from a snapshot with no lock held; `world` is the analysis host,
//! the import loader and the open documents; `handlers/` has a module per
//! feature; `to_proto` converts the analysis's plain data to LSP types;
//! `line_index` converts byte offsets to LSP's UTF-16 positions. Only this
//! crate knows LSP types, and it never imports salsa.

// Standard output is the protocol: nothing else may write to it.
#![deny(clippy::print_stdout)]

mod handlers;
mod line_index;
pub mod preview;
mod state;
mod to_proto;
mod world;

pub use line_index::LineIndex;
pub use preview::{PlanPreview, PreviewAction, Previewer, Running};

use handlers::*;
use state::Server;
use tower_lsp::jsonrpc::Result;
use tower_lsp::lsp_types::*;
use tower_lsp::LanguageServer;

#[rustfmt::skip]
#[tower_lsp::async_trait]
impl LanguageServer for Server {
    async fn initialize(&self, p: InitializeParams) -> Result<InitializeResult> { lifecycle::initialize(self, p) }
    async fn initialized(&self, _: InitializedParams) { lifecycle::initialized(self).await }
    async fn shutdown(&self) -> Result<()> { Ok(()) }

    async fn did_open(&self, p: DidOpenTextDocumentParams) { documents::did_open(self, p) }
    async fn did_change(&self, p: DidChangeTextDocumentParams) { documents::did_change(self, p) }
    async fn did_close(&self, p: DidCloseTextDocumentParams) { documents::did_close(self, p) }

    async fn hover(&self, p: HoverParams) -> Result<Option<Hover>> { self.request(p, hover::hover).await }
    async fn goto_definition(&self, p: GotoDefinitionParams) -> Result<Option<GotoDefinitionResponse>> { self.request(p, navigation::goto_definition).await }
    async fn references(&self, p: ReferenceParams) -> Result<Option<Vec<Location>>> { self.request(p, navigation::references).await }
    async fn document_highlight(&self, p: DocumentHighlightParams) -> Result<Option<Vec<DocumentHighlight>>> { self.request(p, navigation::document_highlight).await }
    async fn prepare_rename(&self, p: TextDocumentPositionParams) -> Result<Option<PrepareRenameResponse>> { self.request(p, rename::prepare_rename).await }
    async fn rename(&self, p: RenameParams) -> Result<Option<WorkspaceEdit>> { self.request(p, rename::rename).await }
    async fn completion(&self, p: CompletionParams) -> Result<Option<CompletionResponse>> { self.request(p, completion::completion).await }
    async fn document_symbol(&self, p: DocumentSymbolParams) -> Result<Option<DocumentSymbolResponse>> { self.request(p, symbols::document_symbol).await }
    async fn symbol(&self, p: WorkspaceSymbolParams) -> Result<Option<Vec<SymbolInformation>>> { self.request(p, symbols::workspace_symbol).await }
    async fn folding_range(&self, p: FoldingRangeParams) -> Result<Option<Vec<FoldingRange>>> { self.request(p, folding::folding_range).await }
    async fn semantic_tokens_full(&self, p: SemanticTokensParams) -> Result<Option<SemanticTokensResult>> { self.request(p, semantic_tokens::semantic_tokens_full).await }
    async fn formatting(&self, p: DocumentFormattingParams) -> Result<Option<Vec<TextEdit>>> { self.request(p, formatting::formatting).await }
    async fn inlay_hint(&self, p: InlayHintParams) -> Result<Option<Vec<InlayHint>>> { self.request(p, inlay_hints::inlay_hint).await }
    async fn code_action(&self, p: CodeActionParams) -> Result<Option<CodeActionResponse>> { self.request(p, code_actions::code_action).await }
    async fn code_lens(&self, p: CodeLensParams) -> Result<Option<Vec<CodeLens>>> { self.request(p, plan::code_lens).await }
    async fn execute_command(&self, p: ExecuteCommandParams) -> Result<Option<serde_json::Value>> { self.request(p, plan::execute_command).await }
    async fn prepare_type_hierarchy(&self, p: TypeHierarchyPrepareParams) -> Result<Option<Vec<TypeHierarchyItem>>> { self.request(p, hierarchy::prepare).await }
    async fn supertypes(&self, p: TypeHierarchySupertypesParams) -> Result<Option<Vec<TypeHierarchyItem>>> { self.request(p, hierarchy::supertypes).await }
    async fn subtypes(&self, p: TypeHierarchySubtypesParams) -> Result<Option<Vec<TypeHierarchyItem>>> { self.request(p, hierarchy::subtypes).await }
}

/// Serves LSP on standard input and output until the client sends `exit`
/// (or closes the input). Returns whether `shutdown` came first: the
/// process should then exit with 0, else with 1 (LSP's rule).
pub fn run_stdio() -> bool {
    run_stdio_with(None)
}

/// [`run_stdio`] with a previewer: the plan in the editor (code lenses,
/// hints, hover, the `cvl.showPlan` and `cvl.showGraph` commands) and what
/// the state runs.
pub fn run_stdio_with(previewer: Option<std::sync::Arc<dyn Previewer>>) -> bool {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let shut_down = runtime.block_on(async {
        let (service, socket) =
            tower_lsp::LspService::new(move |client| Server::new(client, previewer.clone()));
        let watch = exit::Watch::new(service);
        let (shut_down, exited) = (watch.shut_down.clone(), watch.exited.clone());
        let serve =
            tower_lsp::Server::new(tokio::io::stdin(), tokio::io::stdout(), socket).serve(watch);
        // tower-lsp's `serve` returns only when the input closes
        // (tower-lsp#399): an editor that keeps the pipe open after `exit`
        // would keep the server alive. Stop on `exit` itself.
        tokio::select! {
            () = serve => {}
            () = exited.notified() => {}
        }
        shut_down.load(std::sync::atomic::Ordering::SeqCst)
    });
    // The thread blocked reading stdin cannot be interrupted: do not wait.
    runtime.shutdown_background();
    shut_down
}

mod exit {
    //! Notices `shutdown` and `exit` on their way into the server.

    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use tower_lsp::jsonrpc::{Request, Response};

    pub struct Watch<S> {
        inner: S,
        pub shut_down: Arc<AtomicBool>,
        pub exited: Arc<tokio::sync::Notify>,
    }

    impl<S> Watch<S> {
        pub fn new(inner: S) -> Self {
            Watch {
                inner,
                shut_down: Arc::default(),
                exited: Arc::default(),
            }
        }
    }

    impl<S> tower_service::Service<Request> for Watch<S>
    where
        S: tower_service::Service<Request, Response = Option<Response>>,
        S::Future: Send + 'static,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = futures_util::future::BoxFuture<'static, Result<Self::Response, S::Error>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, request: Request) -> Self::Future {
            let method = request.method().to_string();
            let future = self.inner.call(request);
            match method.as_str() {
                "shutdown" => self.shut_down.store(true, Ordering::SeqCst),
                // notify_one keeps the permit if nobody waits yet.
                "exit" => self.exited.notify_one(),
                _ => {}
            }
            Box::pin(async move {
                let response = future.await?;
                Ok(match response {
                    Some(r) if method == "initialize" => Some(with_type_hierarchy(r)),
                    other => other,
                })
            })
        }
    }

    /// tower-lsp 0.20's `ServerCapabilities` has no field for LSP 3.17's
    /// type hierarchy: the server answers its requests, and says so here.
    fn with_type_hierarchy(response: Response) -> Response {
        let (id, body) = response.into_parts();
        let body = body.map(|mut value| {
            if let Some(caps) = value
                .get_mut("capabilities")
                .and_then(|c| c.as_object_mut())
            {
                caps.insert("typeHierarchyProvider".into(), true.into());
            }
            value
        });
        Response::from_parts(id, body)
    }
}
