//! Workers follow the state a manager streams (`WatchState`), and move to
//! another manager when theirs fails, goes silent or falls behind (the
//! [`Watchdog`] decides; this does the calls).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::member::{ANY_MANAGER, Member, RETRY, Relay};
use super::rpc::{Empty, Progress};
use super::watchdog::{PROBE_EVERY, Verdict, Watchdog};

/// How often the watchdog is consulted.
const CHECK: Duration = Duration::from_millis(250);
/// The longest a probe of another manager may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a worker stopped following a manager.
enum Left {
    /// The stream failed, ended or went silent: try the managers in turn.
    Ended,
    /// It fell behind the manager at this address: try that one first.
    Behind(SocketAddr),
}

/// Follows the managers' state streams for as long as this member is a
/// worker.
pub(super) async fn stream_state(member: Arc<Member>) {
    let mut relay = Relay::default();
    let mut first: Option<SocketAddr> = None;
    loop {
        let mut managers = member.managers().await;
        if let Some(ahead) = first.take() {
            managers.retain(|m| *m != ahead);
            managers.insert(0, ahead);
        }
        for addr in managers {
            if addr == member.addr {
                continue;
            }
            let left = follow(&member, &mut relay, addr).await;
            member.drop_channel(addr);
            if let Left::Behind(ahead) = left {
                first = Some(ahead);
                break;
            }
        }
        if first.is_none() {
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// One manager's answer to a probe, or `None` when it gave none in time.
type Probe = Pin<Box<dyn Future<Output = (SocketAddr, Option<Progress>)> + Send>>;

/// Follows the stream of the manager at `addr` until it fails, ends, goes
/// silent or falls behind another manager.
async fn follow(member: &Arc<Member>, relay: &mut Relay, addr: SocketAddr) -> Left {
    let mut client = match member.channel(addr, ANY_MANAGER).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("state stream: {e}");
            return Left::Ended;
        }
    };
    let mut stream = match client.watch_state(Empty {}).await {
        Ok(s) => s.into_inner(),
        Err(e) => {
            tracing::debug!("state stream from {addr} refused: {}", e.message());
            return Left::Ended;
        }
    };
    let mut dog = Watchdog::new(Instant::now());
    let mut check = tokio::time::interval(CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_probe = Instant::now() + PROBE_EVERY;
    let mut probing: Option<Probe> = None;
    let mut turn = 0usize;
    loop {
        tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(msg)) => {
                    dog.heard(Instant::now(), msg.progress);
                    if let Some(state) = msg.state {
                        member.relay(relay, Arc::new(state));
                    }
                }
                Ok(None) => return Left::Ended,
                Err(e) => {
                    tracing::debug!("state stream from {addr} ended: {e}");
                    return Left::Ended;
                }
            },
            (other, answer) = async {
                match probing.as_mut() {
                    Some(p) => p.await,
                    None => std::future::pending().await,
                }
            } => {
                probing = None;
                match answer {
                    Some(progress) => dog.probed(Instant::now(), other, progress),
                    None => member.drop_channel(other),
                }
            }
            _ = check.tick() => {
                let now = Instant::now();
                match dog.verdict(now) {
                    Verdict::Stay => {}
                    Verdict::Silent(quiet) => {
                        tracing::info!(
                            "no word from manager {addr} for {quiet:?}; following another"
                        );
                        return Left::Ended;
                    }
                    Verdict::Behind { ahead, applied } => {
                        tracing::info!(
                            "manager {addr} has not applied entry {applied} that manager {ahead} \
                             had; following {ahead}"
                        );
                        return Left::Behind(ahead);
                    }
                }
                if probing.is_none() && now >= next_probe {
                    next_probe = now + PROBE_EVERY;
                    let others: Vec<SocketAddr> = member
                        .managers()
                        .await
                        .into_iter()
                        .filter(|m| *m != addr && *m != member.addr)
                        .collect();
                    if !others.is_empty() {
                        turn = turn.wrapping_add(1);
                        probing = Some(probe(member.clone(), others[turn % others.len()]));
                    }
                }
            }
        }
    }
}

/// Asks the manager at `addr` where it stands.
fn probe(member: Arc<Member>, addr: SocketAddr) -> Probe {
    Box::pin(async move {
        let asked = tokio::time::timeout(PROBE_TIMEOUT, async {
            let mut client = member.channel(addr, ANY_MANAGER).await.ok()?;
            client.progress(Empty {}).await.ok()
        })
        .await;
        (addr, asked.ok().flatten().map(tonic::Response::into_inner))
    })
}
