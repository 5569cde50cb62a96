//! `initialize` (what the server can do) and `initialized` (load the
//! workspace folder, then publish its diagnostics).

use std::sync::atomic::Ordering;
use std::time::Duration;

use tower_lsp::jsonrpc::Result;
use tower_lsp::lsp_types::*;

use crate::handlers::{diagnostics, plan};
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
    // `initializationOptions: { "planPreview": false }` turns the preview off.
    if let Some(false) = params
        .initialization_options
        .as_ref()
        .and_then(|o| o.get("planPreview"))
        .and_then(|v| v.as_bool())
    {
        server.preview_on.store(false, Ordering::Relaxed);
    }
    let workspace = params.capabilities.workspace.as_ref();
    let refresh = |c: Option<bool>| c.unwrap_or(false);
    server.refresh.code_lens.store(
        refresh(
            workspace
                .and_then(|w| w.code_lens.as_ref())
                .and_then(|c| c.refresh_support),
        ),
        Ordering::Relaxed,
    );
    server.refresh.inlay_hints.store(
        refresh(
            workspace
                .and_then(|w| w.inlay_hint.as_ref())
                .and_then(|c| c.refresh_support),
        ),
        Ordering::Relaxed,
    );
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
        code_lens_provider: Some(CodeLensOptions {
            resolve_provider: Some(false),
        }),
        execute_command_provider: Some(ExecuteCommandOptions {
            commands: plan::COMMANDS.iter().map(|c| c.to_string()).collect(),
            work_done_progress_options: Default::default(),
        }),
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
    drop(world);
    watch_state(server);
}

/// Refreshes the plan's lenses and hints when the state changes (an apply
/// in a terminal, the utility service): its version is looked at every
/// two seconds, which costs a `stat`.
fn watch_state(server: &Server) {
    let Some(previewer) = server.previewer.clone() else {
        return;
    };
    let (client, refresh, on) = (
        server.client.clone(),
        server.refresh.clone(),
        server.preview_on.clone(),
    );
    tokio::spawn(async move {
        let mut seen = previewer.state_version();
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if !on.load(Ordering::Relaxed) {
                continue;
            }
            let now = previewer.state_version();
            if now != seen {
                seen = now;
                refresh.now(&client).await;
            }
        }
    });
}
