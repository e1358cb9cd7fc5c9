//! One query in, one answer out, for the resolver of one namespace.
//!
//! hickory's [`Server`](hickory_server::Server) parses the packet (a packet
//! it cannot parse gets FORMERR or nothing) and calls [`Handler`]. A
//! standard query of class IN is looked up in the current [`Names`] (loaded
//! once per query, so an apply takes effect at the next one); a name that
//! is not ours, or another class, is forwarded upstream and the upstream's
//! answer relayed; anything else gets NOTIMP or FORMERR.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::forward;
use super::names::{Answer, Names, TTL};

/// Answers the queries of the tasks in one network namespace.
pub struct Handler {
    /// The namespace, as the tables name it.
    pub netns: String,
    pub names: Arc<ArcSwap<Names>>,
    pub upstreams: Arc<[SocketAddr]>,
    /// Rotates multi-address answers (dnsrr, `tasks.`), as Docker does, so
    /// clients that take the first address spread over the backends.
    pub turn: AtomicUsize,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let meta = &request.metadata;
        if meta.message_type != MessageType::Query || meta.op_code != OpCode::Query {
            return error(request, ResponseCode::NotImp, response_handle).await;
        }
        let Ok(info) = request.request_info() else {
            return error(request, ResponseCode::FormErr, response_handle).await;
        };
        let query = info.query;
        let answer = if query.query_class() == DNSClass::IN {
            let names = self.names.load();
            let name = query.name().to_string();
            names.lookup(names.networks_of(&self.netns), &name, query.query_type())
        } else {
            Answer::NotOurs
        };
        let owner = query.original().name().clone();
        let records: Option<Vec<Record>> = match answer {
            Answer::Records(mut ips) => {
                if ips.len() > 1 {
                    let turn = self.turn.fetch_add(1, Ordering::Relaxed) % ips.len();
                    ips.rotate_left(turn);
                }
                Some(
                    ips.into_iter()
                        .map(|ip| Record::from_rdata(owner.clone(), TTL, RData::A(A(ip))))
                        .collect(),
                )
            }
            Answer::Pointers(names) => Some(
                names
                    .iter()
                    .filter_map(|n| Name::from_ascii(n).ok())
                    .map(|n| Record::from_rdata(owner.clone(), TTL, RData::PTR(PTR(n))))
                    .collect(),
            ),
            Answer::NotOurs => None,
        };
        match records {
            Some(records) => {
                let mut metadata = Metadata::response_from_request(meta);
                metadata.authoritative = true;
                metadata.recursion_available = true;
                let edns = response_edns(request);
                let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
                    metadata,
                    &records,
                    [],
                    [],
                    [],
                );
                send(request, response_handle, response).await
            }
            None => match forward::forward(&self.upstreams, request.as_slice()).await {
                Ok(upstream) => relay(request, upstream, response_handle).await,
                Err(e) => {
                    tracing::debug!("dns: forwarding {}: {e}", query.name());
                    error(request, ResponseCode::ServFail, response_handle).await
                }
            },
        }
    }
}

/// The upstream's answer, under the task's query ID and question.
async fn relay<R: ResponseHandler>(
    request: &Request,
    upstream: Message,
    response_handle: R,
) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = upstream.metadata.response_code;
    metadata.authoritative = upstream.metadata.authoritative;
    metadata.recursion_available = upstream.metadata.recursion_available;
    let edns = response_edns(request);
    let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
        metadata,
        &upstream.answers,
        &upstream.authorities,
        [],
        &upstream.additionals,
    );
    send(request, response_handle, response).await
}

/// An EDNS section for the answer when the query had one (RFC 6891).
fn response_edns(request: &Request) -> Option<Edns> {
    let asked = request.edns.as_ref()?;
    let mut edns = Edns::new();
    edns.set_max_payload(asked.max_payload().max(512));
    Some(edns)
}

async fn error<R: ResponseHandler>(
    request: &Request,
    code: ResponseCode,
    response_handle: R,
) -> ResponseInfo {
    let edns = response_edns(request);
    let response = MessageResponseBuilder::new(&request.queries, edns.as_ref())
        .error_msg(&request.metadata, code);
    send(request, response_handle, response).await
}

async fn send<'a, R: ResponseHandler>(
    request: &Request,
    mut response_handle: R,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!("dns: sending an answer to {}: {e}", request.src());
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            hickory_proto::op::Header {
                metadata,
                counts: Default::default(),
            }
            .into()
        }
    }
}

#[cfg(test)]
mod tests;
