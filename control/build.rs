//! Generates the gRPC client and server of the node-to-node services with
//! `tonic_build::manual`: no `.proto` files and no `protoc`, because the
//! messages are serde types sent as JSON (`src/api/codec.rs`). The code
//! lands in `OUT_DIR` as `<package>.<Service>.rs` and is included by
//! `src/api/mod.rs`.
//!
//! To add a call: define its request and response types (in
//! `src/swarm/rpc.rs`), add a line below, and implement the new trait
//! method in `src/swarm/service.rs`.

use tonic_build::manual::{Builder, Method, Service};

const API: &str = "crate::api::messages";
const RPC: &str = "crate::swarm::rpc";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let cluster = Service::builder()
        .package("shoal.cluster")
        .name("Cluster")
        .method(unary("ping", "Ping", API, "PingRequest", "PingResponse"))
        .method(unary("join", "Join", RPC, "JoinRequest", "JoinResponse"))
        .method(unary(
            "propose",
            "Propose",
            RPC,
            "ProposeRequest",
            "ProposeResponse",
        ))
        .method(unary(
            "read_state",
            "ReadState",
            RPC,
            "Empty",
            "StateMessage",
        ))
        .method(streaming(
            "watch_state",
            "WatchState",
            RPC,
            "Empty",
            "WatchMessage",
        ))
        .method(unary("progress", "Progress", RPC, "Empty", "Progress"))
        .method(unary(
            "renew_cert",
            "RenewCert",
            RPC,
            "RenewRequest",
            "RenewResponse",
        ))
        .method(unary("add_voter", "AddVoter", RPC, "VoterRequest", "Empty"))
        .method(unary(
            "task_logs",
            "TaskLogs",
            RPC,
            "TaskLogsRequest",
            "TaskLogsResponse",
        ))
        .method(unary(
            "report_task",
            "ReportTask",
            RPC,
            "ReportTaskRequest",
            "Empty",
        ))
        .method(unary("leave", "Leave", RPC, "VoterRequest", "Empty"))
        .method(unary(
            "raft_append",
            "RaftAppend",
            RPC,
            "RaftAppendRequest",
            "RaftAppendReply",
        ))
        .method(unary(
            "raft_vote",
            "RaftVote",
            RPC,
            "RaftVoteRequest",
            "RaftVoteReply",
        ))
        .method(unary(
            "raft_snapshot",
            "RaftSnapshot",
            RPC,
            "RaftSnapshotRequest",
            "RaftSnapshotReply",
        ))
        .build();
    // A service of Ping alone, for the transport's own tests
    // (`src/api/tests.rs`), so they do not depend on the Cluster service.
    let echo = Service::builder()
        .package("shoal.test")
        .name("Echo")
        .method(unary("ping", "Ping", API, "PingRequest", "PingResponse"))
        .build();
    Builder::new().compile(&[cluster, echo]);
}

/// A call with one request and one response. `name` is the Rust method,
/// `route` the gRPC method name on the wire (`/shoal.cluster.Cluster/Ping`),
/// and the types live in the module `module`.
fn unary(name: &str, route: &str, module: &str, request: &str, response: &str) -> Method {
    method(name, route, module, request, response).build()
}

/// A call with one request and a stream of responses.
fn streaming(name: &str, route: &str, module: &str, request: &str, response: &str) -> Method {
    method(name, route, module, request, response)
        .server_streaming()
        .build()
}

fn method(
    name: &str,
    route: &str,
    module: &str,
    request: &str,
    response: &str,
) -> tonic_build::manual::MethodBuilder {
    Method::builder()
        .name(name)
        .route_name(route)
        .input_type(format!("{module}::{request}"))
        .output_type(format!("{module}::{response}"))
        .codec_path("crate::api::codec::JsonCodec")
}
