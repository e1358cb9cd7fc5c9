//! The visualizer (`shoal daemon --web ADDR:PORT`): a web page served by
//! managers, one column per node and a card per task, kept live.
//!
//! - `GET /`: the page, one self-contained file (`index.html`, embedded);
//! - `GET /api/cluster`: the [`snapshot::Snapshot`] as JSON;
//! - `GET /events`: server-sent events, a `cluster` event with the
//!   snapshot on connect and whenever it changes (a [`feed::Feed`] polls
//!   the swarm while pages watch), `unavailable` with a message while the
//!   state cannot be read.
//!
//! A node that is not a manager answers 503 with where to look instead.

mod feed;
mod snapshot;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use shoal_control::Role;
use shoal_control::swarm::{Swarm, SwarmError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;

use self::feed::Feed;
use self::snapshot::Snapshot;

/// The page.
const INDEX: &str = include_str!("index.html");

/// How often the swarm is read while a page watches.
const POLL: Duration = Duration::from_millis(400);

/// How often an idle event stream carries a comment, so proxies and the
/// browser keep it open and a gone client is noticed.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Pages open at once (each holds an event stream), and how long a
/// connection may be silent: longer than [`KEEP_ALIVE`], so an open page
/// is never cut.
const LIMITS: crate::admin::guarded::Limits = crate::admin::guarded::Limits {
    connections: 256,
    idle: Duration::from_secs(30),
    header: Duration::from_secs(10),
};

/// How long `/api/cluster` waits for the feed's first snapshot.
const FIRST_SNAPSHOT: Duration = Duration::from_secs(10);

/// Binds the visualizer's address, before anything else starts, so that
/// a taken or wrong address stops the daemon at once.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    crate::admin::guarded::bind(addr)
        .with_context(|| format!("binding the visualizer's address {addr} (--web)"))
}

/// Serves the visualizer for `swarm` on `listener` until the returned task
/// is aborted.
pub fn serve(listener: TcpListener, swarm: Swarm) -> JoinHandle<()> {
    let addr = listener.local_addr().ok();
    let port = addr.map_or(0, |a| a.port());
    if let Some(addr) = addr {
        tracing::info!("visualizer on http://{addr}/ (served while this node is a manager)");
    }
    let app = routes(swarm, port);
    let listener = crate::admin::guarded::Guarded::new(listener, LIMITS);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("visualizer stopped: {e}");
        }
    })
}

struct Web {
    swarm: Swarm,
    /// Our `--web` port, to suggest on other nodes.
    port: u16,
    feed: Arc<Feed<Update>>,
}

/// A snapshot, or why there is none.
type Update = Result<Snapshot, Unavailable>;

/// Why no snapshot can be drawn: the status `/api/cluster` answers with,
/// and what to tell the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Unavailable {
    #[serde(skip)]
    status: StatusCode,
    message: String,
}

impl IntoResponse for Unavailable {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(&self)).into_response();
        no_store(&mut response);
        response
    }
}

fn routes(swarm: Swarm, port: u16) -> Router {
    let feed = Feed::new(POLL, {
        let swarm = swarm.clone();
        move || {
            let swarm = swarm.clone();
            async move { fetch(&swarm, port).await }
        }
    });
    Router::new()
        .route("/", get(page))
        .route("/api/cluster", get(cluster))
        .route("/events", get(events))
        .with_state(Arc::new(Web { swarm, port, feed }))
}

async fn fetch(swarm: &Swarm, port: u16) -> Update {
    match swarm.cluster().await {
        Ok((nodes, state)) => Ok(Snapshot::of(nodes, &state)),
        Err(e) => Err(unavailable(swarm, e, port).await),
    }
}

/// Says why `e` keeps the state from being read; on a node that is not
/// a manager, where the page is served instead.
async fn unavailable(swarm: &Swarm, e: SwarmError, port: u16) -> Unavailable {
    let status = match e {
        SwarmError::NotManager
        | SwarmError::NotInSwarm
        | SwarmError::NoLeader(_)
        | SwarmError::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match e {
        SwarmError::NotManager => {
            let info = swarm.info().await;
            let pages: Vec<String> = info
                .managers
                .iter()
                .map(|m| format!("http://{}/", SocketAddr::new(m.ip(), port)))
                .collect();
            let where_to = if pages.is_empty() {
                "`shoal node ls` on a manager lists them".to_owned()
            } else {
                format!(
                    "open {} (if that daemon runs with --web on port {port})",
                    pages.join(" or ")
                )
            };
            format!(
                "{} is a worker node; the visualizer is served by the swarm's managers whose \
                 daemon runs with --web: {where_to}",
                info.hostname
            )
        }
        e => e.to_string(),
    };
    Unavailable { status, message }
}

/// Why this node does not serve the page, unless it is a manager.
async fn not_served(web: &Web) -> Option<Unavailable> {
    match web.swarm.info().await.role {
        Some(Role::Manager) => None,
        Some(Role::Worker) => Some(unavailable(&web.swarm, SwarmError::NotManager, web.port).await),
        None => Some(unavailable(&web.swarm, SwarmError::NotInSwarm, web.port).await),
    }
}

/// `GET /`.
async fn page(State(web): State<Arc<Web>>) -> Response {
    if let Some(why) = not_served(&web).await {
        return (
            why.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", why.message),
        )
            .into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // The page fetches nothing but its own API; no data from the
            // cluster ever becomes markup, and this keeps it that way.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                 connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                 frame-ancestors 'none'",
            ),
        ],
        INDEX,
    )
        .into_response()
}

/// `GET /api/cluster`: the feed's latest snapshot, so that any number of
/// requests cost one read of the swarm per poll, not one each.
async fn cluster(State(web): State<Arc<Web>>) -> Response {
    let mut rx = web.feed.subscribe();
    let latest = tokio::time::timeout(FIRST_SNAPSHOT, rx.wait_for(Option::is_some)).await;
    let update = match latest {
        Ok(Ok(latest)) => latest.clone(),
        _ => None,
    };
    match update.as_deref() {
        Some(Ok(snapshot)) => {
            let mut response = Json(snapshot).into_response();
            no_store(&mut response);
            response
        }
        Some(Err(why)) => why.clone().into_response(),
        None => Unavailable {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("no snapshot of the swarm within {FIRST_SNAPSHOT:?}; try again"),
        }
        .into_response(),
    }
}

/// `GET /events`.
async fn events(State(web): State<Arc<Web>>) -> Response {
    if let Some(why) = not_served(&web).await {
        return why.into_response();
    }
    let updates = WatchStream::new(web.feed.subscribe())
        .filter_map(|latest| latest.map(|update| event(&update)));
    let mut response = Sse::new(updates)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    no_store(&mut response);
    response
}

/// The event for `update`: `cluster` with the snapshot, or `unavailable`
/// with the message.
fn event(update: &Update) -> Result<Event, axum::Error> {
    match update {
        Ok(snapshot) => Event::default().event("cluster").json_data(snapshot),
        Err(why) => Event::default().event("unavailable").json_data(why),
    }
}

fn no_store(response: &mut Response) {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
}

#[cfg(test)]
mod tests {
    use super::INDEX;

    #[test]
    fn the_page_never_turns_cluster_data_into_markup_nor_fetches_elsewhere() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ] {
            assert!(!INDEX.contains(sink), "the page uses {sink}");
        }
        for external in ["http:", "https:", "src=", "href=", "@import", "url("] {
            assert!(!INDEX.contains(external), "the page loads {external}");
        }
        assert!(INDEX.contains("new EventSource('events')"));
        assert!(INDEX.contains("fetch('api/cluster'"));
    }
}
