//! The CLI's side of the local admin API: one HTTP/1.1 request with a JSON
//! body over the daemon's unix socket, answered with JSON. An error answer
//! carries `{"message": ...}`, which becomes the command's error.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
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
pub struct Daemon {
    socket: PathBuf,
}

impl Daemon {
    /// From `-H`/`SHOAL_HOST`: `unix:///path/shoal.sock` or a bare path.
    pub fn from_host(host: Option<&str>) -> Result<Daemon> {
        let socket = match host {
            None => PathBuf::from(DEFAULT_SOCKET),
            Some(h) => match h.strip_prefix("unix://") {
                Some(path) => PathBuf::from(path),
                None if h.starts_with('/') => PathBuf::from(h),
                None => bail!(
                    "-H {h}: give the daemon's admin socket as unix:///path/shoal.sock; this CLI \
                     talks to the daemon on its own machine"
                ),
            },
        };
        Ok(Daemon { socket })
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
        let mut stream = UnixStream::connect(&self.socket).with_context(|| {
            format!(
                "cannot connect to the shoal daemon at {}; is `shoal daemon` running (or give \
                 its socket with -H unix:///path/shoal.sock)?",
                self.socket.display()
            )
        })?;
        stream.set_read_timeout(Some(CALL_TIMEOUT))?;
        stream.set_write_timeout(Some(CALL_TIMEOUT))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: shoal\r\nConnection: close\r\nContent-Type: \
             application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(&body)?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .with_context(|| format!("reading the daemon's answer to {method} {path}"))?;
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
    fn hosts_name_unix_sockets() {
        let d = Daemon::from_host(Some("unix:///tmp/x.sock")).unwrap();
        assert_eq!(d.socket, PathBuf::from("/tmp/x.sock"));
        assert!(Daemon::from_host(Some("198.18.0.1:2377")).is_err());
    }
}
