//! The server's shared state and how a request is answered: the world
//! behind a lock that only changes take, briefly; every request answered
//! from a [`Snapshot`] on the blocking pool, with no lock held, so that a
//! slow answer never holds up an edit (the edit cancels it instead).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cvl_analysis::Cancelled;
use tower_lsp::jsonrpc::{Error, ErrorCode};
use tower_lsp::lsp_types::Url;
use tower_lsp::Client;

use crate::preview::Previewer;
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
    /// Plans and the state, from the `cvl` command (`None` in tests of
    /// this crate alone).
    pub(crate) previewer: Option<Arc<dyn Previewer>>,
    /// The plan preview, unless the client's settings turn it off
    /// (`initializationOptions: { "planPreview": false }`).
    pub(crate) preview_on: Arc<AtomicBool>,
    /// Whether the client can be asked to refresh its code lenses and
    /// inlay hints (after an edit, or when the state changes).
    pub(crate) refresh: Arc<Refresh>,
}

/// What the client can be asked to refresh.
#[derive(Default)]
pub struct Refresh {
    pub code_lens: AtomicBool,
    pub inlay_hints: AtomicBool,
}

impl Refresh {
    /// Asks the client to ask again for what it can refresh.
    pub async fn now(&self, client: &Client) {
        if self.code_lens.load(Ordering::Relaxed) {
            let _ = client.code_lens_refresh().await;
        }
        if self.inlay_hints.load(Ordering::Relaxed) {
            let _ = client.inlay_hint_refresh().await;
        }
    }
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
    pub fn new(client: Client, previewer: Option<Arc<dyn Previewer>>) -> Server {
        let (world, settings_problem) = World::new();
        let off = std::env::var("CVL_LSP_PLAN_PREVIEW").is_ok_and(|v| v == "0" || v == "off");
        Server {
            client,
            world: Arc::new(Mutex::new(world)),
            versions: Arc::default(),
            publishing: Arc::default(),
            settings_problem,
            root: Mutex::new(None),
            previewer,
            preview_on: Arc::new(AtomicBool::new(!off)),
            refresh: Arc::default(),
        }
    }

    /// A snapshot of the world, with the previewer when the preview is on.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut snap = self.world().snapshot();
        if self.preview_on.load(Ordering::Relaxed) {
            snap.previewer = self.previewer.clone();
        }
        snap
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
        let snap = self.snapshot();
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
