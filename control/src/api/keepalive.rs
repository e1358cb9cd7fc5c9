//! Noticing a dead peer: a node that vanishes without closing its
//! connections (power loss, a firewall that drops) must not leave calls and
//! streams waiting on it for ever. Both ends of every connection send
//! HTTP/2 pings and give up when one goes unanswered, and the TCP socket
//! has keepalive probes and a user timeout under that.

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;
use tracing::debug;

/// How often an HTTP/2 ping goes out on a connection, idle or not.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
/// How long a ping may go unanswered before the connection is dropped.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// TCP keepalive: first probe after this much silence...
const TCP_IDLE: Duration = Duration::from_secs(3);
/// ...then one every...
const TCP_INTERVAL: Duration = Duration::from_secs(1);
/// ...and the connection is dead after this many unanswered.
const TCP_RETRIES: u32 = 3;
/// Data unacknowledged for this long kills the connection too.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(6);

/// Turns TCP keepalive and the user timeout on for `tcp`; a failure is
/// logged (the HTTP/2 pings still cover the connection).
pub fn tcp(tcp: &TcpStream) {
    let sock = SockRef::from(tcp);
    let keepalive = TcpKeepalive::new()
        .with_time(TCP_IDLE)
        .with_interval(TCP_INTERVAL)
        .with_retries(TCP_RETRIES);
    if let Err(e) = sock.set_tcp_keepalive(&keepalive) {
        debug!("could not set TCP keepalive: {e}");
    }
    if let Err(e) = sock.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT)) {
        debug!("could not set TCP_USER_TIMEOUT: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sockets_get_keepalive_and_a_user_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        tcp(&stream);
        let sock = SockRef::from(&stream);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), TCP_IDLE);
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), TCP_INTERVAL);
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), TCP_RETRIES);
        assert_eq!(sock.tcp_user_timeout().unwrap(), Some(TCP_USER_TIMEOUT));
    }
}
