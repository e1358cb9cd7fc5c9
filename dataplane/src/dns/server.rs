//! [`Resolver`]: the per-namespace DNS servers of one daemon, kept in step
//! with the tables.
//!
//! The daemon calls [`Resolver::apply`] after every successful apply of the
//! tables. It swaps in the new [`Names`] (every server answers from them at
//! its next query), starts a server in each namespace that gained a local
//! endpoint, stops the servers of namespaces that lost their last one, and
//! writes or undoes their resolv.conf files, recording them in the state
//! directory. [`Resolver::shutdown`] stops everything and undoes every file.
//! Servers run on the tokio runtime that calls `apply`.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_server::Server;

use super::handler::Handler;
use super::names::Names;
use super::resolv_conf::{self, Record, Written};
use super::{DnsError, listen};
use crate::tables::Tables;

/// A TCP client that sends nothing for this long is disconnected.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// Answers queued per TCP connection.
const TCP_QUEUE: usize = 32;

/// The resolvers of every namespace holding a local endpoint.
pub struct Resolver {
    names: Arc<ArcSwap<Names>>,
    upstreams: Arc<[SocketAddr]>,
    record: Record,
    served: HashMap<String, Served>,
}

/// One namespace's server and the file written for it.
struct Served {
    server: Server<Handler>,
    resolv_conf: Option<Written>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("upstreams", &self.upstreams)
            .field("namespaces", &self.served.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Resolver {
    /// A resolver that forwards foreign names to `upstreams` and records its
    /// files in `state_dir`. Files a crashed daemon recorded there are
    /// undone first; the next [`Resolver::apply`] writes those still wanted.
    pub fn new(state_dir: &Path, upstreams: Vec<SocketAddr>) -> Result<Resolver, DnsError> {
        let record = Record::new(state_dir);
        record.clean_leftovers()?;
        Ok(Resolver {
            names: Arc::new(ArcSwap::from_pointee(Names::default())),
            upstreams: upstreams.into(),
            record,
            served: HashMap::new(),
        })
    }

    /// The namespaces served now, as the tables name them.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.served.keys().map(String::as_str)
    }

    /// Brings the servers in line with `tables`. Must run inside a tokio
    /// runtime. Namespaces that fail are reported together and tried again
    /// at the next apply; the others are served regardless.
    pub fn apply(&mut self, tables: &Tables) -> Result<(), DnsError> {
        self.names.store(Arc::new(Names::from_tables(tables)));
        let wanted: BTreeSet<&str> = tables
            .endpoints
            .iter()
            .filter(|e| tables.is_local(e))
            .filter_map(|e| e.netns.as_deref())
            .filter(|ns| !ns.is_empty())
            .collect();
        let gone: Vec<String> = self
            .served
            .keys()
            .filter(|ns| !wanted.contains(ns.as_str()))
            .cloned()
            .collect();
        let mut changed = !gone.is_empty();
        for ns in gone {
            if let Some(served) = self.served.remove(&ns) {
                stop(&ns, served);
            }
        }
        let mut errors = Vec::new();
        for ns in wanted {
            if self.served.contains_key(ns) {
                continue;
            }
            match self.start(ns) {
                Ok(served) => {
                    changed |= served.resolv_conf.is_some();
                    self.served.insert(ns.to_string(), served);
                }
                Err(e) => errors.push(e),
            }
        }
        if changed && let Err(e) = self.record.save(&self.written()) {
            errors.push(e);
        }
        DnsError::from_list(errors).map_or(Ok(()), Err)
    }

    /// Stops every server and undoes every file written.
    pub fn shutdown(&mut self) {
        for (ns, served) in self.served.drain() {
            stop(&ns, served);
        }
        if let Err(e) = self.record.save(&[]) {
            tracing::warn!("dns: {e}");
        }
    }

    fn start(&self, ns: &str) -> Result<Served, DnsError> {
        let (udp, tcp) = listen::bind_in(ns)?;
        let in_tokio = |source| DnsError::Listen {
            netns: ns.to_string(),
            source,
        };
        let udp = tokio::net::UdpSocket::from_std(udp).map_err(in_tokio)?;
        let tcp = tokio::net::TcpListener::from_std(tcp).map_err(in_tokio)?;
        let mut server = Server::new(Handler {
            netns: ns.to_string(),
            names: self.names.clone(),
            upstreams: self.upstreams.clone(),
            turn: AtomicUsize::new(0),
        });
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE, TCP_QUEUE);
        let resolv_conf = match resolv_conf::path_for(ns) {
            Some(path) => match resolv_conf::write(&path) {
                Ok(w) => Some(w),
                Err(e) => {
                    stop(
                        ns,
                        Served {
                            server,
                            resolv_conf: None,
                        },
                    );
                    return Err(e);
                }
            },
            None => None,
        };
        tracing::info!(
            "dns: serving network namespace {ns} on {}",
            super::LISTEN_ADDR
        );
        Ok(Served {
            server,
            resolv_conf,
        })
    }

    fn written(&self) -> Vec<Written> {
        self.served
            .values()
            .filter_map(|s| s.resolv_conf.clone())
            .collect()
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Cancels the server's tasks (dropping it aborts them and closes the
/// sockets) and undoes its file.
fn stop(ns: &str, served: Served) {
    served.server.shutdown_token().cancel();
    drop(served.server);
    if let Some(w) = &served.resolv_conf {
        resolv_conf::undo(w);
    }
    tracing::info!("dns: stopped serving network namespace {ns}");
}
