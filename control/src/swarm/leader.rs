//! The leader's loop: while this manager leads, it turns gossip's view of
//! who is alive into node statuses, and removes Raft voters the state no
//! longer lists as managers ([`super::reconcile`] decides; this applies).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::member::Member;
use super::reconcile;
use crate::NodeId;
use crate::consensus::raft_id;

/// How often the leader looks.
const TICK: Duration = Duration::from_millis(200);

pub(super) async fn run(member: Arc<Member>) {
    let mut leading_since: Option<Instant> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut live = member.live();
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
        let since = *leading_since.get_or_insert_with(Instant::now);
        // A new leader gives gossip time to hear from everyone before it
        // declares anyone down.
        let may_mark_down = since.elapsed() > member.config.detection * 2;
        let state = consensus.local_state();
        let alive: BTreeSet<NodeId> = member.live().borrow().keys().cloned().collect();
        for cmd in reconcile::status_updates(&state, &member.node_id, &alive, may_mark_down) {
            if let Err(e) = consensus.write(cmd).await {
                tracing::debug!("leader: updating a node's status: {e}");
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
