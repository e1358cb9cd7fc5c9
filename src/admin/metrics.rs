//! `GET /metrics`: the node's families (control plane and data plane) in one
//! OpenMetrics text exposition, on the admin socket and, with
//! `--metrics-addr`, over plain HTTP on a TCP address for Prometheus (as
//! dockerd's `--metrics-addr`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The media type of what prometheus-client writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Render = dyn Fn() -> Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync;

/// What `/metrics` shows: a function that renders the node's families
/// (without the closing `# EOF`) afresh on every scrape. Cheap to clone.
#[derive(Clone)]
pub struct Exposition(Arc<Render>);

impl Exposition {
    /// `families` appends nothing after its last family: no `# EOF`.
    pub fn new<F, Fut>(families: F) -> Exposition
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = String> + Send + 'static,
    {
        Exposition(Arc::new(move || Box::pin(families())))
    }

    /// The whole exposition, closed with `# EOF` as OpenMetrics requires.
    pub async fn render(&self) -> String {
        let mut text = (self.0)().await;
        text.push_str("# EOF\n");
        text
    }
}

/// The `/metrics` route.
pub fn route(exposition: Exposition) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let exposition = exposition.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, CONTENT_TYPE)],
                    exposition.render().await,
                )
                    .into_response()
            }
        }),
    )
}

/// Binds the `--metrics-addr` address; done before anything else starts,
/// so a bad address stops the daemon with nothing set up.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    super::guarded::bind(addr).with_context(|| {
        format!("binding the metrics address {addr} (--metrics-addr); give an address of this machine and a free port")
    })
}

/// `/metrics` is scraped every few seconds by one or two collectors.
const LIMITS: super::guarded::Limits = super::guarded::Limits {
    connections: 32,
    idle: std::time::Duration::from_secs(15),
    header: std::time::Duration::from_secs(10),
};

/// Serves `/metrics` on `listener` until the returned task is aborted.
pub fn serve(listener: TcpListener, exposition: Exposition) -> JoinHandle<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("serving /metrics on http://{addr}/metrics");
    }
    tokio::spawn(async move {
        let listener = super::guarded::Guarded::new(listener, LIMITS);
        if let Err(e) = axum::serve(listener, route(exposition)).await {
            tracing::error!("metrics endpoint stopped: {e}");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_the_families_closed_with_eof_over_tcp() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let scrapes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = scrapes.clone();
        let server = serve(
            listener,
            Exposition::new(move || {
                let n = counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                async move { format!("# TYPE scrapes counter\nscrapes_total {n}\n") }
            }),
        );
        for n in 1..=2 {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.contains(CONTENT_TYPE), "{answer}");
            assert!(
                answer.ends_with(&format!("scrapes_total {n}\n# EOF\n")),
                "{answer}"
            );
        }
        server.abort();
    }

    #[tokio::test]
    async fn an_address_in_use_is_refused_with_the_flag_named() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = bind(taken.local_addr().unwrap()).await.unwrap_err();
        assert!(format!("{err:#}").contains("--metrics-addr"), "{err:#}");
    }
}
