//! The decision tree of placement preferences, as swarmkit builds it:
//! every node sits in one leaf, under one branch per preference, the
//! branch of its value of that preference's label (nodes without the
//! label share the branch `""`). Without preferences the tree is one leaf.
//!
//! The nodes, whether each passed the fixed filters, the spreads and the
//! [`Load`] enter [`Tree::new`]; each [`Tree::take`] then gives the node
//! of the next task. A branch counts the service's live tasks on all its
//! nodes, eligible or not, as swarmkit's does. Each task goes down the
//! open branch with the fewest (the lowest value among equals), which
//! evens the branches out before the nodes within them; in a leaf it goes
//! to the least loaded node (see `spread`). A branch where no node can
//! take a task is full for the rest of the call, and its share goes to
//! the others, as swarmkit moves the share of a branch without room.
//! Taking one task at a time ends where swarmkit's batches do (every
//! branch evened up to the same count, the remainder to the first) and
//! keeps a call cut short balanced.

use std::collections::{BTreeMap, BTreeSet};

use super::filter;
use super::preference::Spread;
use super::spread::Load;
use crate::ids::NodeId;
use crate::state::Node;

/// One level of the tree.
pub(super) enum Tree {
    /// Its nodes that passed the fixed filters, in spread order: a task
    /// takes the first, which goes back with its new load, so a call
    /// costs O(tasks x log nodes).
    Leaf(BTreeSet<(u64, u64, NodeId)>),
    /// One branch per value of a preference's label, by value.
    Split(BTreeMap<String, Branch>),
}

/// The nodes with one value of a preference's label.
pub(super) struct Branch {
    /// The service's live tasks on its nodes.
    tasks: u64,
    /// No node under it can take a task.
    full: bool,
    tree: Tree,
}

impl Tree {
    /// The tree of `nodes` (each with whether it passed the fixed
    /// filters) under `spreads`, highest first.
    pub(super) fn new(nodes: &[(&Node, bool)], spreads: &[Spread], load: &Load) -> Tree {
        let Some((spread, rest)) = spreads.split_first() else {
            let open = nodes
                .iter()
                .filter(|(_, open)| *open)
                .map(|(node, _)| {
                    let (service, all, id) = load.rank(&node.id);
                    (service, all, id.clone())
                })
                .collect();
            return Tree::Leaf(open);
        };
        let mut groups: BTreeMap<&str, Vec<(&Node, bool)>> = BTreeMap::new();
        for &(node, open) in nodes {
            groups
                .entry(spread.value(node))
                .or_default()
                .push((node, open));
        }
        let branches = groups
            .into_iter()
            .map(|(value, members)| {
                let branch = Branch {
                    tasks: members.iter().map(|(n, _)| load.of_service(&n.id)).sum(),
                    full: false,
                    tree: Tree::new(&members, rest, load),
                };
                (value.to_owned(), branch)
            })
            .collect();
        Tree::Split(branches)
    }

    /// The node for the next task, recorded in `load`; `None` when every
    /// node is full or none passed the filters. `limit` is the most of the
    /// service's tasks a node may run.
    pub(super) fn take(&mut self, load: &mut Load, limit: Option<u64>) -> Option<NodeId> {
        match self {
            Tree::Leaf(open) => {
                while let Some((_, _, id)) = open.pop_first() {
                    // Loads only grow during a call: a full node stays full.
                    if filter::replicas_rejection(limit, load.of_service(&id)).is_some() {
                        continue;
                    }
                    load.add(&id);
                    let (service, all, _) = load.rank(&id);
                    open.insert((service, all, id.clone()));
                    return Some(id);
                }
                None
            }
            Tree::Split(branches) => loop {
                let (_, branch) = branches
                    .iter_mut()
                    .filter(|(_, b)| !b.full)
                    .min_by_key(|(_, b)| b.tasks)?;
                match branch.tree.take(load, limit) {
                    Some(id) => {
                        branch.tasks += 1;
                        return Some(id);
                    }
                    None => branch.full = true,
                }
            },
        }
    }
}
