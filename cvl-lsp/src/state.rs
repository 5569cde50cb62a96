//! The server's shared state and how a request is answered: the world
//! behind a lock that only changes take, briefly; every request answered
//! from a [`Snapshot`] on the blocking pool, with no lock held, so that a
//! slow answer never holds up an edit (the edit cancels it instead).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use cvl_analysis::Cancelled;
use tower_lsp::jsonrpc::{Error, ErrorCode};
use tower_lsp::lsp_types::Url;
use tower_lsp::Client;

use crate::world::{Snapshot, World};

pub struct Server {
    pub(crate) client: Client,
    world: Arc<Mutex<World>>,
    /// The latest version of each open document, read by background tasks.
    pub(crate) versions: Arc<Mutex<HashMap<Url, i32>>>,
    /// Held from checking a result's version to sending it, so that an
    /// older result can never be sent after a newer one.
    pub(crate) publishing: Arc<tokio::sync::Mutex<()>>,
    /// A problem with the environment's settings, told to the user once.
    pub(crate) settings_problem: Option<String>,
    /// The workspace folder, from `initialize` until `initialized` loads it.
    pub(crate) root: Mutex<Option<PathBuf>>,
}

/// Why a request has no answer.
pub enum Failure {
    /// An edit came in while answering: the client asks again.
    Cancelled,
    /// The request cannot be carried out, for the reason given.
    Invalid(String),
}

impl From<Cancelled> for Failure {
    fn from(_: Cancelled) -> Failure {
        Failure::Cancelled
    }
}

/// A request handler's result.
pub type Answer<T> = std::result::Result<T, Failure>;

impl Server {
    pub fn new(client: Client) -> Server {
        let (world, settings_problem) = World::new();
        Server {
            client,
            world: Arc::new(Mutex::new(world)),
            versions: Arc::default(),
            publishing: Arc::default(),
            settings_problem,
            root: Mutex::new(None),
        }
    }

    /// The world, to change it. Never held across an `.await`, nor while
    /// answering a request.
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn versions(&self) -> MutexGuard<'_, HashMap<Url, i32>> {
        self.versions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers a request: `handler` runs on a snapshot taken now, on the
    /// blocking pool. A cancelled answer is LSP's `ContentModified` (the
    /// client asks again); a handler that panics answers an internal error
    /// and the server goes on.
    pub(crate) async fn request<P, T>(
        &self,
        params: P,
        handler: fn(&Snapshot, P) -> Answer<T>,
    ) -> tower_lsp::jsonrpc::Result<T>
    where
        P: Send + 'static,
        T: Send + 'static,
    {
        let snap = self.world().snapshot();
        match tokio::task::spawn_blocking(move || handler(&snap, params)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(Failure::Cancelled)) => Err(Error {
                code: ErrorCode::ContentModified,
                message: "the document changed while answering: ask again".into(),
                data: None,
            }),
            Ok(Err(Failure::Invalid(reason))) => Err(Error::invalid_params(reason)),
            Err(_) => Err(Error::internal_error()),
        }
    }
}
