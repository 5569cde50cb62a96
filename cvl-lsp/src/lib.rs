//! The CVL language server: LSP over stdio, on the same analysis as
//! `cvl check`. Started by `cvl lsp`.
//!
//! `workspace` holds the database, the import loader and the open
//! documents; `server` speaks the protocol; `line_index` converts byte
//! offsets to LSP's UTF-16 positions. Only this crate knows LSP types.

mod line_index;
mod server;
mod workspace;

pub use line_index::LineIndex;

/// Serves LSP on standard input and output until the client exits.
pub fn run_stdio() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    runtime.block_on(async {
        let (service, socket) = tower_lsp::LspService::new(server::Server::new);
        tower_lsp::Server::new(tokio::io::stdin(), tokio::io::stdout(), socket)
            .serve(service)
            .await;
    });
}
