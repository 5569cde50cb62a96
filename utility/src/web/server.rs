//! The status page's HTTP server (axum on a tokio runtime of its own
//! thread): read-only in every case. Every method but GET answers 405;
//! a non-loopback binding needs a token (`Authorization: Bearer TOKEN`,
//! or HTTP Basic with the token as the password, which browsers ask for),
//! compared in constant time. Pages are drawn from the newest [`Snapshot`]
//! the service publishes through a [`Feed`]; `/events` streams a page's
//! new `<main>` whenever a new snapshot changes it (server-sent events),
//! so an open page follows the utility without reloading.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use super::pages::{self, Target};
use super::view::{self, Snapshot, FORMAT_VERSION};

/// Reads an appliance's console tail: (deployment, component, host) ->
/// its last lines. Called on a blocking thread.
pub type ConsoleReader = dyn Fn(&str, &str, &str) -> Result<String, String> + Send + Sync;

/// A snapshot and its number (raised by each publish).
#[derive(Debug, Default)]
pub struct Versioned {
    pub version: u64,
    pub snapshot: Snapshot,
}

/// Where the service publishes what the pages show.
#[derive(Clone)]
pub struct Feed(watch::Sender<Arc<Versioned>>);

impl Feed {
    /// Makes `snapshot` what every page shows from now on.
    pub fn publish(&self, snapshot: Snapshot) {
        self.0.send_modify(|current| {
            *current = Arc::new(Versioned {
                version: current.version + 1,
                snapshot,
            });
        });
    }
}

/// How to serve.
pub struct Config {
    pub addr: SocketAddr,
    /// Required of every request when set (the token's bytes).
    pub token: Option<Vec<u8>>,
}

struct Shared {
    feed: watch::Receiver<Arc<Versioned>>,
    token: Option<Vec<u8>>,
    console: Arc<ConsoleReader>,
}

/// The service's HTTP endpoints (the status page, metrics) on one tokio
/// runtime of their own (two worker threads), and the feed of snapshots
/// they all draw from. Dropping it stops them.
pub struct Web {
    runtime: tokio::runtime::Runtime,
    feed: Feed,
    snapshots: watch::Receiver<Arc<Versioned>>,
}

/// What a metrics scrape renders: the service's counters, as of now.
pub type Counters = dyn Fn() -> crate::metrics::Metrics + Send + Sync;

impl Web {
    pub fn start() -> std::io::Result<Web> {
        let (tx, rx) = watch::channel(Arc::new(Versioned::default()));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cvl-http")
            .enable_all()
            .build()?;
        Ok(Web {
            runtime,
            feed: Feed(tx),
            snapshots: rx,
        })
    }

    /// Where snapshots are published for every endpoint.
    pub fn feed(&self) -> Feed {
        self.feed.clone()
    }

    /// Serves the status page on `config.addr` (the error, such as the
    /// address in use, is the caller's to report); the address bound
    /// (port 0 picks one).
    pub fn serve_page(
        &self,
        config: Config,
        console: Arc<ConsoleReader>,
    ) -> std::io::Result<SocketAddr> {
        if !config.addr.ip().is_loopback() && config.token.is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "a status page on a non-loopback address needs a token",
            ));
        }
        let shared = Arc::new(Shared {
            feed: self.snapshots.clone(),
            token: config.token,
            console,
        });
        self.serve(config.addr, router(shared))
    }

    /// Serves `/metrics` on `addr`: the counters and the latest snapshot's
    /// state, in the OpenMetrics text format. GET only.
    pub fn serve_metrics(
        &self,
        addr: SocketAddr,
        counters: Arc<Counters>,
    ) -> std::io::Result<SocketAddr> {
        let snapshots = self.snapshots.clone();
        let metrics = move || {
            let now = snapshots.borrow().clone();
            counters().render(&now.snapshot.state, &now.snapshot.history)
        };
        let router = Router::new()
            .route(
                "/metrics",
                get(move || async move {
                    (
                        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                        metrics(),
                    )
                }),
            )
            .fallback(|| async { (StatusCode::NOT_FOUND, "only /metrics is here\n") })
            .layer(middleware::from_fn(get_only));
        self.serve(addr, router)
    }

    fn serve(&self, addr: SocketAddr, router: Router) -> std::io::Result<SocketAddr> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let bound = listener.local_addr()?;
        let _guard = self.runtime.enter();
        let listener = tokio::net::TcpListener::from_std(listener)?;
        self.runtime.spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                eprintln!("http {bound}: {e}");
            }
        });
        Ok(bound)
    }
}

/// Everything here is read-only: every method but GET answers 405.
async fn get_only(request: Request, next: Next) -> Response {
    if request.method() != Method::GET {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET")],
            "read-only: GET only\n",
        )
            .into_response();
    }
    next.run(request).await
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/hosts", get(page))
        .route("/deployments/{name}", get(page))
        .route("/deployments/{name}/appliances/{component}", get(page))
        .route("/events", get(events))
        .route("/assets/live.js", get(live_js))
        .route("/api/", get(api_index))
        .route("/api/overview", get(api_overview))
        .route("/api/hosts", get(api_hosts))
        .route("/api/deployments/{name}", get(api_deployment))
        .route(
            "/api/deployments/{name}/appliances/{component}",
            get(api_appliance),
        )
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

/// GET only, and the token when one is set.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if request.method() != Method::GET {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET")],
            "the status page is read-only: GET only\n",
        )
            .into_response();
    }
    if let Some(token) = &shared.token {
        if !authorized(request.headers(), token) {
            return (
                StatusCode::UNAUTHORIZED,
                [
                    (
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"cvl utility\", charset=\"UTF-8\""),
                    ),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                "a token is needed: Authorization: Bearer TOKEN (or the token as a Basic password)\n",
            )
                .into_response();
        }
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; \
             img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Whether the request carries the token, compared in constant time.
fn authorized(headers: &HeaderMap, token: &[u8]) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
    else {
        return false;
    };
    let given: Vec<u8> = if let Some(bearer) = value.strip_prefix(b"Bearer ") {
        bearer.to_vec()
    } else if let Some(basic) = value.strip_prefix(b"Basic ") {
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic) else {
            return false;
        };
        match decoded.iter().position(|&b| b == b':') {
            Some(colon) => decoded[colon + 1..].to_vec(),
            None => return false,
        }
    } else {
        return false;
    };
    given.len() == token.len() && bool::from(given.ct_eq(token))
}

fn current(shared: &Shared) -> Arc<Versioned> {
    shared.feed.borrow().clone()
}

/// Every HTML page: its fragment in the shell.
async fn page(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let now = current(&shared);
    let target = uri
        .path_and_query()
        .map(|p| p.as_str())
        .and_then(Target::parse);
    let console = shared.console.clone();
    let drawn = tokio::task::spawn_blocking(move || {
        let found = target.and_then(|t| pages::fragment(&now.snapshot, &t, &*console));
        match found {
            Some((title, main)) => (
                StatusCode::OK,
                pages::page(&title, &now.snapshot.taken_at, now.version, &main),
            ),
            None => (
                StatusCode::NOT_FOUND,
                pages::not_found(&now.snapshot.taken_at, now.version),
            ),
        }
    })
    .await;
    match drawn {
        Ok((status, html)) => (status, no_cache(), Html(html)).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// The page's one script (no inline scripts: the policy forbids them, so
/// a value that escaped escaping still could not run).
async fn live_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("live.js"),
    )
        .into_response()
}

fn no_cache() -> [(header::HeaderName, &'static str); 1] {
    [(header::CACHE_CONTROL, "no-cache")]
}

async fn not_found(State(shared): State<Arc<Shared>>) -> Response {
    let now = current(&shared);
    (
        StatusCode::NOT_FOUND,
        Html(pages::not_found(&now.snapshot.taken_at, now.version)),
    )
        .into_response()
}

#[derive(Deserialize)]
struct EventsQuery {
    page: String,
    /// The snapshot the page was drawn from: a newer one is sent at once.
    since: Option<u64>,
}

/// Server-sent events: a `main` event with the page's new fragment each
/// time a snapshot changes it.
async fn events(State(shared): State<Arc<Shared>>, Query(q): Query<EventsQuery>) -> Response {
    let Some(target) = Target::parse(&q.page) else {
        return (StatusCode::NOT_FOUND, "no such page\n").into_response();
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Event, std::convert::Infallible>>(4);
    let mut feed = shared.feed.clone();
    let console = shared.console.clone();
    let since = q.since.unwrap_or(0);
    tokio::spawn(async move {
        let mut last: Option<String> = None;
        let mut first = true;
        loop {
            let now = feed.borrow_and_update().clone();
            if !(first && now.version == since) {
                let target = target.clone();
                let console = console.clone();
                let drawn = tokio::task::spawn_blocking(move || {
                    pages::fragment(&now.snapshot, &target, &*console)
                })
                .await;
                let main = match drawn {
                    Ok(Some((_, main))) => main,
                    Ok(None) => "<h1>Gone</h1><p>This is no longer deployed. <a href=\"/\">The overview</a> lists what is.</p>".to_string(),
                    Err(_) => break,
                };
                if last.as_ref() != Some(&main) {
                    if tx
                        .send(Ok(Event::default().event("main").data(&main)))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    last = Some(main);
                }
            }
            first = false;
            tokio::select! {
                changed = feed.changed() => if changed.is_err() { break },
                _ = tx.closed() => break,
            }
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn api_index() -> Response {
    Json(serde_json::json!({
        "format_version": FORMAT_VERSION,
        "endpoints": {
            "/api/overview": "every deployment with its appliances and their states (?page=N: 100 at a time), totals, the service's last actions",
            "/api/deployments/NAME": "a deployment: appliances, VANs, who provides what to whom, public addresses, history",
            "/api/deployments/NAME/appliances/COMPONENT": "an appliance (COMPONENT `~` for a deployment of one VM): parameters (sensitive ones as null), interfaces, history",
            "/api/hosts": "hosts: memory and VMs against their limits, drained or not, last contact; the recent moves between them with their figures",
        },
    }))
    .into_response()
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<usize>,
}

async fn api_overview(State(shared): State<Arc<Shared>>, Query(q): Query<PageQuery>) -> Response {
    let now = current(&shared);
    Json(view::overview(&now.snapshot, q.page)).into_response()
}

async fn api_hosts(State(shared): State<Arc<Shared>>) -> Response {
    let now = current(&shared);
    Json(view::hosts(&now.snapshot)).into_response()
}

async fn api_deployment(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let now = current(&shared);
    match view::deployment(&now.snapshot, &name) {
        Some(d) => Json(d).into_response(),
        None => api_missing(&format!("no deployment {name}")),
    }
}

async fn api_appliance(
    State(shared): State<Arc<Shared>>,
    Path((name, component)): Path<(String, String)>,
) -> Response {
    let now = current(&shared);
    let component = if component == "~" {
        String::new()
    } else {
        component
    };
    match view::appliance(&now.snapshot, &name, &component) {
        Some(a) => Json(a).into_response(),
        None => api_missing(&format!("no appliance {component} in {name}")),
    }
}

fn api_missing(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "format_version": FORMAT_VERSION, "error": what })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_taken_as_bearer_or_basic_password_only() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, b"s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(authorized(&h, b"s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cre"),
        );
        assert!(!authorized(&h, b"s3cret"));
        // any:s3cret
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic YW55OnMzY3JldA=="),
        );
        assert!(authorized(&h, b"s3cret"));
        // s3cret (no colon)
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic czNjcmV0"),
        );
        assert!(!authorized(&h, b"s3cret"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("s3cret"));
        assert!(!authorized(&h, b"s3cret"));
    }
}
