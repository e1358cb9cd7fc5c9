//! The local admin API on `<state-dir>/shoal.sock` (mode 0600): HTTP over a
//! unix socket, what the CLI and scrapers talk to. `GET /metrics` gives the
//! node's families in the OpenMetrics text format ([`metrics`]), `GET
//! /tables` the tables in force and `GET /info` what `shoal info` shows
//! (embed mode); [`swarm`] has the swarm and node operations.
//! [`operators`] serves the same routes to operators' CLIs on other
//! machines, over the cluster API's mTLS.

pub mod guarded;
pub mod metrics;
pub mod operators;
pub mod swarm;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

type Render = Box<dyn Fn() -> String + Send + Sync>;

/// What the admin API shows.
pub struct Sources {
    pub metrics: metrics::Exposition,
    pub tables: Render,
    pub info: Render,
}

/// The admin socket's limits: the CLI opens one connection per command,
/// and some commands wait minutes for a service to converge.
pub const LIMITS: guarded::Limits = guarded::Limits {
    connections: 64,
    idle: Duration::from_secs(600),
    header: Duration::from_secs(10),
};

/// Binds `path` and serves `app` until the returned task is aborted.
pub async fn serve(path: &Path, app: Router) -> anyhow::Result<JoinHandle<()>> {
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding the admin socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {} to its owner", path.display()))?;
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(guarded::Guarded::new(listener, LIMITS), app).await {
            tracing::error!("admin API stopped: {e}");
        }
    }))
}

/// `/metrics`, `/tables` and `/info`.
pub fn data_plane_routes(sources: Sources) -> Router {
    metrics::route(sources.metrics)
        .route("/tables", json_route(sources.tables))
        .route("/info", json_route(sources.info))
}

fn json_route(render: Render) -> axum::routing::MethodRouter {
    let render = Arc::new(render);
    get(move || {
        let render = render.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], (render)()).into_response() }
    })
}
