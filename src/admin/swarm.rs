//! The swarm part of the admin API: what `shoal swarm`, `shoal node` and
//! `shoal info` call. JSON in, JSON out; a failure answers with a status
//! code and `{"message": ...}`, the error's one-line explanation.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use shoal_control::swarm::{
    CaOptions, InitOptions, JoinOptions, LeaveOptions, LogsRequest, NetworkOptions, NodeChange,
    ServiceChange, ServiceOptions, StackDeploy, Swarm, SwarmError, SwarmUpdate, TokenOptions,
};

/// The routes, over a running [`Swarm`].
pub fn routes(swarm: Swarm) -> Router {
    Router::new()
        .route("/swarm/init", post(init))
        .route("/swarm/join", post(join))
        .route("/swarm/join-token", post(join_token))
        .route("/swarm/ca", post(ca))
        .route("/swarm/ca/client-cert", post(client_cert))
        .route("/swarm/ca/revoke-client", post(revoke_client))
        .route("/swarm/update", post(update))
        .route("/swarm/leave", post(leave))
        .route("/nodes", get(nodes))
        .route("/nodes/{key}", get(node))
        .route("/nodes/{key}", delete(remove_node))
        .route("/nodes/{key}/update", post(update_node))
        .route("/nodes/{key}/tasks", get(node_tasks))
        .route("/services", get(services).post(create_service))
        .route("/services/{key}", get(service).delete(remove_service))
        .route("/services/{key}/tasks", get(service_tasks))
        .route("/services/{key}/scale", post(scale_service))
        .route("/services/{key}/logs", post(service_logs))
        .route("/services/{key}/update", post(update_service))
        .route("/services/{key}/rollback", post(rollback_service))
        .route("/networks", get(networks).post(create_network))
        .route("/networks/{key}", get(network).delete(remove_network))
        .route("/stacks", get(stacks).post(deploy_stack))
        .route("/stacks/{name}", delete(remove_stack))
        .route("/stacks/{name}/services", get(stack_services))
        .route("/stacks/{name}/tasks", get(stack_tasks))
        .route("/info", get(info))
        .with_state(swarm)
}

/// A failed call, as the CLI reads it.
struct Failure(SwarmError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            SwarmError::NotInSwarm | SwarmError::AlreadyInSwarm | SwarmError::NotManager => {
                StatusCode::CONFLICT
            }
            SwarmError::LeaveBreaksQuorum { .. } | SwarmError::LastManager => StatusCode::CONFLICT,
            SwarmError::Refused(_) | SwarmError::Token(_) => StatusCode::BAD_REQUEST,
            SwarmError::NoLeader(_) | SwarmError::Unreachable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        #[derive(Serialize)]
        struct Message {
            message: String,
        }
        let message = self.0.to_string();
        (status, Json(Message { message })).into_response()
    }
}

type Answer<T> = Result<Json<T>, Failure>;

fn answer<T>(r: Result<T, SwarmError>) -> Answer<T> {
    r.map(Json).map_err(Failure)
}

async fn init(State(s): State<Swarm>, Json(o): Json<InitOptions>) -> Answer<impl Serialize> {
    answer(s.init(o).await)
}

async fn join(State(s): State<Swarm>, Json(o): Json<JoinOptions>) -> Answer<impl Serialize> {
    answer(s.join(o).await)
}

async fn join_token(State(s): State<Swarm>, Json(o): Json<TokenOptions>) -> Answer<impl Serialize> {
    answer(s.join_token(o).await)
}

async fn ca(State(s): State<Swarm>, Json(o): Json<CaOptions>) -> Answer<impl Serialize> {
    answer(s.ca(o).await)
}

/// `swarm ca client-cert`: the CLI's CSR.
#[derive(Deserialize)]
struct ClientCertRequest {
    csr: String,
}

async fn client_cert(
    State(s): State<Swarm>,
    Json(r): Json<ClientCertRequest>,
) -> Answer<impl Serialize> {
    answer(s.issue_operator(&r.csr).await)
}

/// `swarm ca revoke-client ID`.
#[derive(Deserialize)]
struct RevokeRequest {
    id: String,
}

async fn revoke_client(State(s): State<Swarm>, Json(r): Json<RevokeRequest>) -> Answer<()> {
    answer(s.revoke_operator(&r.id).await)
}

async fn update(State(s): State<Swarm>, Json(o): Json<SwarmUpdate>) -> Answer<()> {
    answer(s.update(o).await)
}

async fn leave(State(s): State<Swarm>, Json(o): Json<LeaveOptions>) -> Answer<()> {
    answer(s.leave(o).await)
}

async fn nodes(State(s): State<Swarm>) -> Answer<impl Serialize> {
    answer(s.nodes().await)
}

async fn node(State(s): State<Swarm>, Path(key): Path<String>) -> Answer<impl Serialize> {
    answer(s.node(&key).await)
}

async fn update_node(
    State(s): State<Swarm>,
    Path(key): Path<String>,
    Json(change): Json<NodeChange>,
) -> Answer<()> {
    answer(s.update_node(&key, change).await)
}

#[derive(Deserialize)]
struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

async fn remove_node(
    State(s): State<Swarm>,
    Path(key): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Answer<()> {
    answer(s.remove_node(&key, q.force).await)
}

async fn create_network(
    State(s): State<Swarm>,
    Json(o): Json<NetworkOptions>,
) -> Answer<impl Serialize> {
    answer(s.create_network(o).await)
}

async fn networks(State(s): State<Swarm>) -> Answer<impl Serialize> {
    answer(s.networks().await)
}

async fn network(State(s): State<Swarm>, Path(key): Path<String>) -> Answer<impl Serialize> {
    answer(s.network(&key).await)
}

async fn remove_network(State(s): State<Swarm>, Path(key): Path<String>) -> Answer<()> {
    answer(s.remove_network(&key).await)
}

async fn node_tasks(State(s): State<Swarm>, Path(key): Path<String>) -> Answer<impl Serialize> {
    answer(s.node_tasks(&key).await)
}

async fn create_service(
    State(s): State<Swarm>,
    Json(o): Json<ServiceOptions>,
) -> Answer<impl Serialize> {
    answer(s.create_service(o).await)
}

async fn services(State(s): State<Swarm>) -> Answer<impl Serialize> {
    answer(s.services().await)
}

async fn service(State(s): State<Swarm>, Path(key): Path<String>) -> Answer<impl Serialize> {
    answer(s.service(&key).await)
}

async fn service_tasks(State(s): State<Swarm>, Path(key): Path<String>) -> Answer<impl Serialize> {
    answer(s.service_tasks(&key).await)
}

#[derive(Deserialize)]
struct Scale {
    replicas: u64,
}

async fn scale_service(
    State(s): State<Swarm>,
    Path(key): Path<String>,
    Json(scale): Json<Scale>,
) -> Answer<()> {
    answer(s.scale_service(&key, scale.replicas).await)
}

async fn update_service(
    State(s): State<Swarm>,
    Path(key): Path<String>,
    Json(change): Json<ServiceChange>,
) -> Answer<()> {
    answer(s.update_service(&key, change).await)
}

async fn rollback_service(
    State(s): State<Swarm>,
    Path(key): Path<String>,
    Json(_): Json<serde_json::Value>,
) -> Answer<()> {
    answer(s.rollback_service(&key).await)
}

async fn remove_service(State(s): State<Swarm>, Path(key): Path<String>) -> Answer<impl Serialize> {
    answer(s.remove_service(&key).await)
}

async fn service_logs(
    State(s): State<Swarm>,
    Path(key): Path<String>,
    Json(request): Json<LogsRequest>,
) -> Answer<impl Serialize> {
    answer(s.service_logs(&key, request).await)
}

async fn deploy_stack(
    State(s): State<Swarm>,
    Json(d): Json<StackDeploy>,
) -> Answer<impl Serialize> {
    answer(s.deploy_stack(d).await)
}

async fn stacks(State(s): State<Swarm>) -> Answer<impl Serialize> {
    answer(s.stacks().await)
}

async fn stack_services(
    State(s): State<Swarm>,
    Path(name): Path<String>,
) -> Answer<impl Serialize> {
    answer(s.stack_services(&name).await)
}

async fn stack_tasks(State(s): State<Swarm>, Path(name): Path<String>) -> Answer<impl Serialize> {
    answer(s.stack_tasks(&name).await)
}

async fn remove_stack(State(s): State<Swarm>, Path(name): Path<String>) -> Answer<impl Serialize> {
    answer(s.remove_stack(&name).await)
}

async fn info(State(s): State<Swarm>) -> Json<impl Serialize> {
    Json(s.info().await)
}
