//! The leader's loops: while this manager leads, it turns gossip's view of
//! who is alive into node statuses, removes Raft voters the state no
//! longer lists as managers, rotates the gossip key
//! ([`super::reconcile`] decides; this applies), and runs the
//! orchestrators on every change of the state ([`crate::orchestrator`]
//! decides; this proposes).
//!
//! Gossip alone never marks a node down: the leader first probes the node
//! over mTLS (`Ping` with the node's certificate), and a node that answers
//! stays as it is, so that nothing said on the gossip port can take a live
//! node out of service.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::member::Member;
use super::reconcile;
use crate::api::messages::PingRequest;
use crate::consensus::raft_id;
use crate::orchestrator::{self, Options};
use crate::state::{Command, Node, SecretBytes};
use crate::{NodeId, TaskId};

/// How often the leader looks.
const TICK: Duration = Duration::from_millis(200);
/// The longest an mTLS probe of a node gossip lost may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a node that answered a probe is not probed again.
const ANSWERED_FOR: Duration = Duration::from_secs(2);

pub(super) async fn run(member: Arc<Member>) {
    let mut leading_since: Option<Instant> = None;
    // The nodes gossip has shown alive since this manager took the lead.
    let mut seen_alive: BTreeSet<NodeId> = BTreeSet::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut live = member.live();
    // Nodes gossip lost that answered an mTLS probe, and when.
    let mut answered: HashMap<NodeId, Instant> = HashMap::new();
    loop {
        // Gossip news is acted on at once; the tick catches the rest
        // (leadership changes, the grace period ending).
        tokio::select! {
            _ = tick.tick() => {}
            changed = live.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let Some(consensus) = member.consensus().await else {
            leading_since = None;
            continue;
        };
        let status = consensus.status();
        if !status.is_leader {
            leading_since = None;
            continue;
        }
        if leading_since.is_none() {
            leading_since = Some(Instant::now());
            seen_alive.clear();
        }
        let since = leading_since.unwrap_or_else(Instant::now);
        let state = consensus.local_state();
        let alive: BTreeSet<NodeId> = member.live().borrow().keys().cloned().collect();
        seen_alive.extend(alive.iter().cloned());
        // A new leader gives gossip time to hear from everyone before it
        // declares anyone down, except the nodes it saw alive and lost.
        let grace_over = since.elapsed() > member.config.detection * 2;
        let may_mark_down = |n: &NodeId| grace_over || seen_alive.contains(n);
        let updates = reconcile::status_updates(&state, &member.node_id, &alive, &may_mark_down);
        let updates = confirm_down(&member, &state, updates, &mut answered).await;
        for cmd in updates {
            if let Err(e) = consensus.write(cmd).await {
                tracing::debug!("leader: updating a node's status: {e}");
            }
        }
        if reconcile::gossip_key_due(&state, crate::clock::now_ms()) {
            match gossip_key() {
                Ok(cmd) => match consensus.write(cmd).await {
                    Ok(_) => tracing::info!("leader: rotated the gossip key"),
                    Err(e) => tracing::debug!("leader: rotating the gossip key: {e}"),
                },
                Err(e) => tracing::error!("leader: {e}"),
            }
        }
        if let Some(cmd) = super::lifecycle::rotation_end(&state) {
            match consensus.write(cmd).await {
                Ok(_) => tracing::info!(
                    "CA rotation done: every node holds a certificate of the new CA, the old one \
                     is no longer trusted"
                ),
                Err(e) => tracing::debug!("leader: ending the CA rotation: {e}"),
            }
        }
        let voters: BTreeSet<NodeId> = status.voters.iter().map(|p| p.id.clone()).collect();
        if let Some(stale) = reconcile::stale_voters(&state, &member.node_id, &voters).first() {
            tracing::info!("leader: removing {stale} from the Raft voters (no longer a manager)");
            if let Err(e) = consensus.remove_voter(raft_id(stale)).await {
                tracing::info!("leader: removing voter {stale}: {e}");
            }
        }
    }
}

/// `updates` without the nodes gossip lost that still answer an mTLS
/// probe (each probed at most every [`ANSWERED_FOR`]).
async fn confirm_down(
    member: &Member,
    state: &crate::state::ClusterState,
    updates: Vec<Command>,
    answered: &mut HashMap<NodeId, Instant>,
) -> Vec<Command> {
    answered.retain(|_, at| at.elapsed() < ANSWERED_FOR);
    let suspects: Vec<&Node> = updates
        .iter()
        .filter_map(reconcile::marks_down)
        .filter(|id| !answered.contains_key(*id))
        .filter_map(|id| state.node(id))
        .collect();
    let probes = suspects.iter().map(|node| answers(member, node));
    for (node, up) in suspects
        .iter()
        .zip(futures_util::future::join_all(probes).await)
    {
        if up {
            tracing::warn!(
                "leader: gossip lost {} but it answers over mTLS at {}; it stays {:?}",
                node.id,
                node.addr,
                node.status
            );
            answered.insert(node.id.clone(), Instant::now());
        }
    }
    updates
        .into_iter()
        .filter(|cmd| reconcile::marks_down(cmd).is_none_or(|id| !answered.contains_key(id)))
        .collect()
}

/// Whether `node` answers a `Ping` over mTLS with its own certificate
/// within [`PROBE_TIMEOUT`].
async fn answers(member: &Member, node: &Node) -> bool {
    let ping = async {
        let mut client = member.channel(node.addr, node.id.as_str()).await.ok()?;
        client.ping(PingRequest {}).await.ok()
    };
    let up = tokio::time::timeout(PROBE_TIMEOUT, ping)
        .await
        .ok()
        .flatten()
        .is_some();
    if !up {
        member.drop_channel(node.addr);
    }
    up
}

/// A command that makes a new random gossip key the newest.
pub(super) fn gossip_key() -> Result<Command, getrandom::Error> {
    let mut key = vec![0u8; 32];
    getrandom::fill(&mut key)?;
    Ok(Command::RotateGossipKey {
        key: SecretBytes(key),
        at_ms: crate::clock::now_ms(),
    })
}

/// How often the orchestrators run without a change (a safety net: every
/// change of the state wakes them).
const ORCHESTRATE_TICK: Duration = Duration::from_secs(1);

/// Runs the orchestrators while this manager leads: each change of the
/// state gets one round, whose commands are proposed in order.
pub(super) async fn orchestrate(member: Arc<Member>) {
    let mut states = member.watch_state();
    let options = Options::default();
    let mut last_refused: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            changed = states.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(ORCHESTRATE_TICK) => {}
        }
        let Some(consensus) = member.consensus().await else {
            continue;
        };
        if !consensus.status().is_leader {
            continue;
        }
        let state = consensus.local_state();
        let round = match orchestrator::reconcile(
            &state,
            &options,
            crate::clock::now_ms(),
            &mut TaskId::generate,
        ) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("orchestrator: {e}");
                continue;
            }
        };
        let refused: Vec<String> = round.refused.iter().map(|r| r.error.to_string()).collect();
        if refused != last_refused {
            for why in &refused {
                tracing::warn!("orchestrator: the state refused a change: {why}");
            }
            last_refused = refused;
        }
        for cmd in round.commands {
            if let Err(e) = consensus.write(cmd).await {
                // Lost leadership or a race with another write: the next
                // round decides again from the state as it is.
                tracing::debug!("orchestrator: proposing: {e}");
                break;
            }
        }
    }
}
