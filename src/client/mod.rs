//! The CLI's side of the admin API: one HTTP/1.1 request with a JSON
//! body over the daemon's unix socket, or to a manager on another machine
//! over mTLS ([`remote`]), answered with JSON. An error answer carries
//! `{"message": ...}`, which becomes the command's error.

pub mod remote;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The default admin socket.
pub const DEFAULT_SOCKET: &str = "/var/lib/shoal/shoal.sock";

/// How long a call may take: a join or a promotion waits for Raft.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the daemon listens.
#[derive(Debug, Clone)]
pub enum Daemon {
    /// The admin socket of a daemon on this machine.
    Local { socket: PathBuf },
    /// A manager's cluster API, with an operator certificate.
    Remote(remote::Remote),
}

impl Daemon {
    /// From `-H`/`SHOAL_HOST`: `unix:///path/shoal.sock` or a bare path
    /// for a daemon on this machine, `tcp://HOST[:PORT]` or `HOST:PORT`
    /// for a manager elsewhere, reached with the operator certificate in
    /// `tls_dir` (default `~/.shoal`).
    pub fn from_host(host: Option<&str>, tls_dir: Option<&Path>) -> Result<Daemon> {
        let socket = match host {
            None => PathBuf::from(DEFAULT_SOCKET),
            Some(h) => match h.strip_prefix("unix://") {
                Some(path) => PathBuf::from(path),
                None if h.starts_with('/') => PathBuf::from(h),
                None => return remote::Remote::new(h, tls_dir).map(Daemon::Remote),
            },
        };
        Ok(Daemon::Local { socket })
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call("GET", path, None::<&()>)
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.call("POST", path, Some(body))
    }

    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call("DELETE", path, None::<&()>)
    }

    fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let body = match body {
            Some(b) => serde_json::to_vec(b)?,
            None => Vec::new(),
        };
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: shoal\r\nConnection: close\r\nContent-Type: \
             application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        let response = match self {
            Daemon::Local { socket } => local_exchange(socket, &request)
                .with_context(|| format!("reading the daemon's answer to {method} {path}"))?,
            Daemon::Remote(remote) => remote.exchange(&request, CALL_TIMEOUT)?,
        };
        let (status, body) = split_response(&response)
            .with_context(|| format!("the daemon's answer to {method} {path} is not HTTP"))?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
            bail!("{message}");
        }
        serde_json::from_slice(body).with_context(|| {
            format!("the daemon's answer to {method} {path} is not what this CLI expects")
        })
    }
}

/// Sends `request` over the admin socket `socket` and reads the answer.
fn local_exchange(socket: &Path, request: &[u8]) -> Result<Vec<u8>> {
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot connect to the shoal daemon at {}; is `shoal daemon` running (or give its \
             socket with -H unix:///path/shoal.sock, or a manager with -H tcp://MANAGER:2377)?",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(CALL_TIMEOUT))?;
    stream.set_write_timeout(Some(CALL_TIMEOUT))?;
    stream.write_all(request)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

/// Status code and body of a `Connection: close` response (the admin API
/// never chunks JSON answers of known length; a chunked one is refused).
fn split_response(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return None;
    }
    Some((status, &bytes[end + 4..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_split_into_status_and_body() {
        let r = b"HTTP/1.1 409 Conflict\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(split_response(r), Some((409, &b"{}"[..])));
        assert_eq!(split_response(b"garbage"), None);
    }

    #[test]
    fn hosts_name_unix_sockets_or_managers() {
        let d = Daemon::from_host(Some("unix:///tmp/x.sock"), None).unwrap();
        assert!(matches!(d, Daemon::Local { socket } if socket == Path::new("/tmp/x.sock")));
        // A manager needs an operator certificate; without one the reason
        // says how to make one.
        let empty = std::env::temp_dir().join(format!("shoal-no-tls-{}", std::process::id()));
        for host in [
            "198.18.0.1:2377",
            "tcp://198.18.0.1:2377",
            "tcp://198.18.0.1",
        ] {
            let err = Daemon::from_host(Some(host), Some(&empty)).unwrap_err();
            let err = format!("{err:#}");
            assert!(err.starts_with("no operator certificate in"), "{err}");
            assert!(err.contains("shoal swarm ca client-cert --out"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
        let err = Daemon::from_host(Some("tcp://no such host"), Some(&empty)).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a manager address"),
            "{err:#}"
        );
    }
}
