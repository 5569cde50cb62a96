//! `initialize` (what the server can do) and `initialized` (load the
//! workspace folder, then publish its diagnostics).

use tower_lsp::jsonrpc::Result;
use tower_lsp::lsp_types::*;

use crate::handlers::diagnostics;
use crate::state::Server;
use crate::to_proto::TOKEN_TYPES;

pub fn initialize(server: &Server, params: InitializeParams) -> Result<InitializeResult> {
    #[allow(deprecated)] // root_uri: older clients send only it
    let root = params
        .workspace_folders
        .as_ref()
        .and_then(|f| f.first())
        .and_then(|f| f.uri.to_file_path().ok())
        .or_else(|| params.root_uri.as_ref().and_then(|u| u.to_file_path().ok()));
    // Loading the workspace may fetch imports: done after answering.
    *server.root.lock().unwrap_or_else(|e| e.into_inner()) = root;
    Ok(InitializeResult {
        server_info: Some(ServerInfo {
            name: "cvl".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
        }),
        capabilities: capabilities(),
    })
}

fn capabilities() -> ServerCapabilities {
    ServerCapabilities {
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
        semantic_tokens_provider: Some(SemanticTokensServerCapabilities::SemanticTokensOptions(
            SemanticTokensOptions {
                legend: SemanticTokensLegend {
                    token_types: TOKEN_TYPES.to_vec(),
                    token_modifiers: Vec::new(),
                },
                full: Some(SemanticTokensFullOptions::Bool(true)),
                range: None,
                work_done_progress_options: Default::default(),
            },
        )),
        ..Default::default()
    }
}

pub async fn initialized(server: &Server) {
    if let Some(problem) = &server.settings_problem {
        let message = format!("cvl: {problem}; imports load without mirrors or blacklist");
        server
            .client
            .show_message(MessageType::WARNING, message)
            .await;
    }
    let root = server.root.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(root) = root {
        let problem = tokio::task::block_in_place(|| {
            let mut world = server.world();
            let problem = world.use_settings_of(&root);
            world.scan(&root);
            problem
        });
        if let Some(problem) = problem {
            server
                .client
                .show_message(MessageType::WARNING, format!("cvl: {problem}"))
                .await;
        }
    }
    let world = server.world();
    diagnostics::republish(server, &world, None);
}
