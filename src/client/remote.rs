//! The CLI's way to a manager on another machine (`-H tcp://MANAGER:2377`):
//! the same HTTP/1.1 admin requests as on the local socket, over TLS to
//! the cluster API's port with an operator certificate, by the operator
//! protocol ([`OPERATOR_ALPN`](shoal_control::api::OPERATOR_ALPN)).
//!
//! The files are docker's names in the TLS folder (`~/.shoal` unless
//! `--tls-dir`): `ca.pem` (whom to trust: the server must be a manager of
//! that CA), `cert.pem` and `key.pem` (who we are), as `shoal swarm ca
//! client-cert` writes them. Every failure is one line saying what to do.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{AlertDescription, CertificateError, ClientConfig, ClientConnection, StreamOwned};
use shoal_control::api::operator_client_config;
use shoal_control::pki::{CaCertificate, NodeKey, Presented};

/// The cluster API's port, where managers take operators.
pub const DEFAULT_PORT: u16 = 2377;

/// The server name every manager's certificate carries.
const ANY_MANAGER: &str = "swarm-manager";

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The folder of the operator's TLS files when `--tls-dir` is not given.
pub fn default_tls_dir() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".shoal"))
        .ok_or_else(|| {
            anyhow!("HOME is not set; give the operator certificate's folder with --tls-dir DIR")
        })
}

/// A manager reached over mTLS with an operator certificate.
#[derive(Debug, Clone)]
pub struct Remote {
    /// As given, for messages.
    host: String,
    addrs: Vec<SocketAddr>,
    dir: PathBuf,
    config: Arc<ClientConfig>,
}

impl Remote {
    /// `host` is `tcp://HOST[:PORT]` or `HOST:PORT`; the TLS files come
    /// from `tls_dir` (default [`default_tls_dir`]).
    pub fn new(host: &str, tls_dir: Option<&Path>) -> Result<Remote> {
        let bare = host.strip_prefix("tcp://").unwrap_or(host);
        let with_port = if bare.parse::<std::net::IpAddr>().is_ok() || !bare.contains(':') {
            format!("{bare}:{DEFAULT_PORT}")
        } else {
            bare.to_owned()
        };
        let addrs: Vec<SocketAddr> = with_port
            .to_socket_addrs()
            .map_err(|e| {
                crate::cli::usage(format!(
                    "-H {host}: not a manager address ({e}); give tcp://HOST:PORT, e.g. \
                     tcp://198.18.0.1:2377"
                ))
            })?
            .collect();
        let dir = match tls_dir {
            Some(d) => d.to_path_buf(),
            None => default_tls_dir()?,
        };
        let config = load(&dir)?;
        Ok(Remote {
            host: bare.to_owned(),
            addrs,
            dir,
            config,
        })
    }

    /// Sends `request` (a whole HTTP/1.1 request with `Connection:
    /// close`) and returns the whole answer.
    pub fn exchange(&self, request: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let tcp = self.connect()?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let name = ServerName::try_from(ANY_MANAGER).map_err(|e| anyhow!("{e}"))?;
        let conn = ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(|e| anyhow!("setting up TLS: {e}"))?;
        let mut tls = StreamOwned::new(conn, tcp);
        let mut response = Vec::new();
        let sent = tls.write_all(request).and_then(|()| tls.flush());
        let read = match sent {
            Ok(()) => tls.read_to_end(&mut response).map(drop),
            Err(e) => Err(e),
        };
        match read {
            Ok(()) => Ok(response),
            // A server that closes without TLS's goodbye after answering
            // has still answered.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !response.is_empty() => {
                Ok(response)
            }
            Err(e) => Err(self.explain(&e)),
        }
    }

    fn connect(&self) -> Result<TcpStream> {
        let mut last = None;
        for addr in &self.addrs {
            match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        let why = last.map_or_else(|| "no address".to_owned(), |e| e.to_string());
        bail!(
            "cannot connect to the manager at {} ({why}); is a shoal manager running there, in a \
             swarm, with its cluster API on that port?",
            self.host
        )
    }

    /// One line for a TLS or socket failure.
    fn explain(&self, e: &io::Error) -> anyhow::Error {
        let dir = self.dir.display();
        let host = &self.host;
        let make = format!("make one on a manager: shoal swarm ca client-cert --out {dir}");
        let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
            return anyhow!("talking to the manager at {host} failed ({e})");
        };
        match tls {
            rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
            | rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                ..
            }) => anyhow!(
                "{host} is not a manager of this swarm: its certificate does not name \
                 `{ANY_MANAGER}` (give a manager's address with -H)"
            ),
            rustls::Error::InvalidCertificate(c) => anyhow!(
                "the server at {host} is not a manager of the swarm whose CA is in {dir}/ca.pem \
                 (its certificate: {c:?}); give that swarm's manager, or the folder of this \
                 swarm's operator certificate with --tls-dir"
            ),
            rustls::Error::AlertReceived(alert) => match alert {
                AlertDescription::CertificateExpired => anyhow!(
                    "the manager at {host} refused the operator certificate in {dir}: it has \
                     expired; {make}"
                ),
                AlertDescription::UnknownCA
                | AlertDescription::BadCertificate
                | AlertDescription::DecryptError => anyhow!(
                    "the manager at {host} refused the operator certificate in {dir}: it was not \
                     issued by this swarm's CA; {make}"
                ),
                AlertDescription::CertificateRevoked => anyhow!(
                    "the manager at {host} refused the operator certificate in {dir}: it was \
                     revoked; {make}"
                ),
                AlertDescription::NoApplicationProtocol => anyhow!(
                    "{host} does not take operator connections; is it a shoal manager of a \
                     version that does?"
                ),
                other => anyhow!(
                    "the manager at {host} refused the TLS connection ({other:?}); check the \
                     operator certificate in {dir}, or {make}"
                ),
            },
            other => anyhow!("TLS with the manager at {host} failed ({other})"),
        }
    }
}

/// The client TLS configuration from the files in `dir`, refusing early
/// (with what to do) what cannot work: missing files, an expired
/// certificate.
fn load(dir: &Path) -> Result<Arc<ClientConfig>> {
    let shown = dir.display();
    let make = format!("make one on a manager: shoal swarm ca client-cert --out {shown}");
    let read = |name: &str| std::fs::read(dir.join(name));
    let (ca, cert, key) = match (read("ca.pem"), read("cert.pem"), read("key.pem")) {
        (Ok(ca), Ok(cert), Ok(key)) => (ca, cert, key),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) if e.kind() == io::ErrorKind::NotFound => {
            bail!(
                "no operator certificate in {shown} ({make}, or give its folder with --tls-dir DIR)"
            )
        }
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
            bail!(
                "cannot read the operator certificate in {shown} ({e}); it must be readable by you"
            )
        }
    };
    let text = |b: Vec<u8>, name: &str| {
        String::from_utf8(b).map_err(|_| anyhow!("{shown}/{name} is not PEM text; {make}"))
    };
    let roots = CaCertificate::bundle_from_pem(&text(ca, "ca.pem")?)
        .with_context(|| format!("{shown}/ca.pem; {make}"))?;
    let leaf = CertificateDer::from_pem_slice(&cert)
        .map_err(|e| anyhow!("{shown}/cert.pem holds no certificate ({e}); {make}"))?;
    let key = NodeKey::from_pem(&text(key, "key.pem")?)
        .map_err(|e| anyhow!("{shown}/key.pem: {e}; {make}"))?;
    let not_after = match Presented::of(&leaf) {
        Presented::Operator(op) => Some(op.not_after()),
        Presented::Node(node) => Some(node.not_after()),
        Presented::Other(_) => None,
    };
    if let Some(at) = not_after
        && at <= SystemTime::now()
    {
        let ago = SystemTime::now().duration_since(at).unwrap_or_default();
        bail!(
            "the operator certificate in {shown} expired {}s ago; {make}",
            ago.as_secs()
        );
    }
    operator_client_config(&roots, &leaf, &key)
        .map_err(|e| anyhow!("the operator certificate in {shown} cannot be used ({e}); {make}"))
}
