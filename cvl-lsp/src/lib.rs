//! The CVL language server: LSP over stdio, on the same analysis as
//! `cvl check`. Started by `cvl lsp`.
//!
//! `workspace` holds the database, the import loader and the open
//! documents; `server` speaks the protocol; `line_index` converts byte
//! offsets to LSP's UTF-16 positions. Only this crate knows LSP types.

// Standard output is the protocol: nothing else may write to it.
#![deny(clippy::print_stdout)]

mod line_index;
mod server;
mod workspace;

pub use line_index::LineIndex;

/// Serves LSP on standard input and output until the client sends `exit`
/// (or closes the input). Returns whether `shutdown` came first: the
/// process should then exit with 0, else with 1 (LSP's rule).
pub fn run_stdio() -> bool {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let shut_down = runtime.block_on(async {
        let (service, socket) = tower_lsp::LspService::new(server::Server::new);
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

    use tower_lsp::jsonrpc::Request;

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

    impl<S: tower_service::Service<Request>> tower_service::Service<Request> for Watch<S> {
        type Response = S::Response;
        type Error = S::Error;
        type Future = S::Future;

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
            future
        }
    }
}
