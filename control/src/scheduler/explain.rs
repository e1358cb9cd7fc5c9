//! Why a task found no node: every rejected node grouped by reason.
//!
//! The scheduler hands in each node with the [`Rejection`] of the first
//! filter it failed; [`NoSuitableNode`] leaves as an error whose text
//! users read in `shoal service ps`, one group per reason in filter order:
//!
//! ```text
//! no suitable node (2 nodes not available: drained; 1 node: constraint node.labels.zone==a)
//! ```
//!
//! Each group is `N node` or `N nodes`, then ` not available` when the
//! node's own state is the reason (down, unknown status, drained, paused)
//! rather than the service's rules (constraints, max replicas), then `: `
//! and the reason. Groups are joined with `; `. With no nodes at all the
//! text is `no suitable node (the swarm has no nodes)`.

use std::collections::BTreeMap;

use thiserror::Error;

use super::constraint::Constraint;
use super::filter::Rejection;
use crate::ids::NodeId;

/// No node passed the filters; says why for each one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("no suitable node ({})", describe(.rejected))]
pub struct NoSuitableNode {
    /// The rejected nodes grouped by reason, in filter order; empty when
    /// the swarm has no nodes.
    pub rejected: Vec<Rejected>,
}

/// The nodes rejected for one reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The reason.
    pub reason: Rejection,
    /// Those nodes, by id.
    pub nodes: Vec<NodeId>,
}

impl NoSuitableNode {
    /// Groups `rejections` by reason; `constraints` orders the constraint
    /// reasons as the service lists them.
    pub(super) fn new(
        rejections: impl IntoIterator<Item = (NodeId, Rejection)>,
        constraints: &[Constraint],
    ) -> NoSuitableNode {
        let mut groups: BTreeMap<(u8, usize), Rejected> = BTreeMap::new();
        for (node, reason) in rejections {
            groups
                .entry(reason.rank(constraints))
                .or_insert_with(|| Rejected {
                    reason,
                    nodes: Vec::new(),
                })
                .nodes
                .push(node);
        }
        NoSuitableNode {
            rejected: groups.into_values().collect(),
        }
    }
}

fn describe(rejected: &[Rejected]) -> String {
    if rejected.is_empty() {
        return "the swarm has no nodes".to_owned();
    }
    let groups: Vec<String> = rejected
        .iter()
        .map(|group| {
            let count = group.nodes.len();
            let noun = if count == 1 { "node" } else { "nodes" };
            let state = if group.reason.is_unavailable() {
                " not available"
            } else {
                ""
            };
            format!("{count} {noun}{state}: {}", group.reason)
        })
        .collect();
    groups.join("; ")
}
