//! The admin API for operators on other machines: the connections the
//! cluster API took on port 2377 by the operator protocol, each with the
//! verdict of the swarm's gate ([`OperatorSession`]), served the same
//! routes as the local socket. A refused connection is answered on every
//! request with 403 and the gate's one-line reason, which the CLI shows.

use std::io;

use axum::Router;
use axum::extract::Request;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use serde::Serialize;
use shoal_control::api::OperatorStream;
use shoal_control::swarm::{OperatorSession, OperatorSink};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::guarded::{Guarded, Limits};

/// Operator sessions waiting for the admin API.
const QUEUE: usize = 16;

/// The gate's verdict on a connection, as handlers see it.
#[derive(Debug, Clone)]
struct Access(Result<String, String>);

/// The operator sessions the swarm hands over, as a listener.
struct Sessions(mpsc::Receiver<OperatorSession>);

impl Listener for Sessions {
    type Io = OperatorStream;
    type Addr = Access;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.0.recv().await {
            Some(s) => (s.stream, Access(s.access)),
            // The swarm keeps its sender for the daemon's life; should it
            // go, there is simply nothing more to accept.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Err(io::Error::other(
            "operator sessions come from the cluster API",
        ))
    }
}

impl Connected<IncomingStream<'_, Guarded<Sessions>>> for Access {
    fn connect_info(stream: IncomingStream<'_, Guarded<Sessions>>) -> Self {
        stream.remote_addr().clone()
    }
}

/// The sink for [`SwarmConfig::operators`](shoal_control::swarm::SwarmConfig)
/// and what [`serve`] takes from it.
pub fn channel() -> (OperatorSink, Receiver) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (OperatorSink(tx), Receiver(rx))
}

/// The receiving end of [`channel`].
pub struct Receiver(mpsc::Receiver<OperatorSession>);

/// Serves `routes` to the operator sessions from `sessions` until the
/// returned task is aborted.
pub fn serve(sessions: Receiver, routes: Router, limits: Limits) -> JoinHandle<()> {
    let app = routes
        .layer(middleware::from_fn(admit))
        .into_make_service_with_connect_info::<Access>();
    let listener = Guarded::new(Sessions(sessions.0), limits);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("admin API for operators stopped: {e}");
        }
    })
}

async fn admit(ConnectInfo(access): ConnectInfo<Access>, request: Request, next: Next) -> Response {
    match access.0 {
        Ok(id) => {
            tracing::debug!("operator {id}: {} {}", request.method(), request.uri());
            next.run(request).await
        }
        Err(message) => {
            #[derive(Serialize)]
            struct Message {
                message: String,
            }
            (StatusCode::FORBIDDEN, axum::Json(Message { message })).into_response()
        }
    }
}
