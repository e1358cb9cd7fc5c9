//! This node's open channels to other nodes, one per address and server
//! name, made with its current credentials on first use and forgotten
//! after a failure or a certificate change. Raft's transport and the
//! member's calls to managers share them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tonic::transport::Channel;

use super::member::Credentials;
use super::service;
use crate::api::cluster_proto::cluster_client::ClusterClient;
use crate::api::{self, ApiError};

/// Channels keyed by address and the name the server was verified by (a
/// node id, or `swarm-manager` for any manager).
#[derive(Clone)]
pub(super) struct Channels {
    creds: Credentials,
    open: Arc<Mutex<HashMap<(SocketAddr, String), Channel>>>,
}

impl Channels {
    pub(super) fn new(creds: Credentials) -> Channels {
        Channels {
            creds,
            open: Arc::default(),
        }
    }

    /// A client to `addr`, whose certificate must name `server_name`.
    pub(super) async fn get(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<ClusterClient<Channel>, ApiError> {
        let key = (addr, server_name.to_owned());
        let cached = self.lock().get(&key).cloned();
        let channel = match cached {
            Some(c) => c,
            None => {
                let c = api::connect(addr, self.creds.client(), server_name).await?;
                self.lock().insert(key, c.clone());
                c
            }
        };
        Ok(service::client(channel))
    }

    /// Forgets the channels to `addr` after a failed call: the next call
    /// dials again (the peer may have restarted with a new certificate).
    pub(super) fn forget(&self, addr: SocketAddr) {
        self.lock().retain(|(a, _), _| *a != addr);
    }

    /// Forgets every channel (this node's certificate changed).
    pub(super) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(SocketAddr, String), Channel>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
