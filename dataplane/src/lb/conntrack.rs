//! Connection tracking for the load balancer: which backend each flow went
//! to, so a flow keeps its backend while that backend lives.
//!
//! Sans-IO with an explicit clock: every call takes `now`, milliseconds on a
//! monotonic clock the caller reads (the tests use a fake one). Packets enter
//! as [`Conntrack::insert`] (a new flow and the backend chosen for it) and
//! [`Conntrack::lookup`]/[`Conntrack::observe`] (later packets, which refresh
//! the flow and advance its TCP/UDP [`FlowState`]); decisions leave as the
//! returned [`Entry`], the flows evicted or expired, and the flows of a
//! removed backend ([`Conntrack::remove_backend`]) for the engine to reset.
//!
//! Storage is a slab of entries indexed by a `HashMap`, threaded on one
//! doubly linked list per state class. All states in a class share one
//! timeout, and a touched entry moves to its list's head, so each list is
//! sorted by last use: expiry pops tails, and eviction at capacity takes the
//! tail whose deadline comes first. Both are O(1) per entry; nothing scans
//! the table per packet. Within a class this is exact LRU; across classes it
//! evicts the flow closest to its own timeout, so a flood of half-open flows
//! pushes out other half-open flows before any idle established one (the
//! spirit of Linux's `early_drop`).
//!
//! Draining is the caller's policy, not the tracker's: the selector
//! ([`super::select`]) sends no new flows to a draining backend, while the
//! tracker keeps the ones it has.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use thiserror::Error;

use crate::wire::flow::{FlowKey, TcpFlags};
pub use shoal_ebpf_common::conntrack::{Direction, FlowState};

/// The largest capacity accepted (about 1 GiB of entries at worst), so a bad
/// setting cannot ask for unbounded memory.
pub const MAX_CAPACITY: usize = 1 << 24;

/// What is known of one flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The backend the flow goes to.
    pub backend: Ipv4Addr,
    pub state: FlowState,
    /// When a packet of the flow was last seen, in the caller's milliseconds.
    pub last_seen: u64,
}

impl Entry {
    /// When the flow expires if no packet comes first.
    pub fn deadline(&self) -> u64 {
        self.last_seen.saturating_add(self.state.timeout_ms())
    }

    fn expired(&self, now: u64) -> bool {
        now > self.deadline()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConntrackError {
    #[error("conntrack capacity {0} is out of range; use 1 to {MAX_CAPACITY} flows")]
    Capacity(usize),
}

const NIL: u32 = u32::MAX;

/// Number of distinct [`class`] values.
const CLASSES: usize = 9;

/// The expiry list a flow in `state` lives on: states with one timeout
/// each, so every list stays sorted by last use.
fn class(state: FlowState) -> usize {
    match state {
        FlowState::TcpSynSent => 0,
        FlowState::TcpSynRecv => 1,
        FlowState::TcpEstablished => 2,
        FlowState::TcpFinWait(Direction::Original) => 3,
        FlowState::TcpFinWait(Direction::Reply) => 4,
        FlowState::TcpTimeWait => 5,
        FlowState::TcpClose => 6,
        FlowState::UdpUnreplied => 7,
        FlowState::UdpStream => 8,
    }
}

struct Node {
    key: FlowKey,
    entry: Entry,
    /// Towards the head (more recently used); on the free list, unused.
    prev: u32,
    /// Towards the tail; on the free list, the next free node.
    next: u32,
}

#[derive(Clone, Copy)]
struct List {
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
}

const EMPTY_LIST: List = List {
    head: NIL,
    tail: NIL,
};

/// The connection tracker; see the module docs.
pub struct Conntrack {
    index: HashMap<FlowKey, u32>,
    nodes: Vec<Node>,
    free: u32,
    lists: [List; CLASSES],
    capacity: usize,
}

impl std::fmt::Debug for Conntrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conntrack")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Conntrack {
    /// A tracker for at most `capacity` flows; its memory is reserved now so
    /// the packet path never reallocates.
    pub fn new(capacity: usize) -> Result<Conntrack, ConntrackError> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(ConntrackError::Capacity(capacity));
        }
        Ok(Conntrack {
            index: HashMap::with_capacity(capacity),
            nodes: Vec::with_capacity(capacity),
            free: NIL,
            lists: [EMPTY_LIST; CLASSES],
            capacity,
        })
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The flow's entry, refreshed as of `now`; `None` if unknown or expired
    /// (an expired entry is dropped here, whether or not
    /// [`Conntrack::expire`] has run).
    pub fn lookup(&mut self, key: &FlowKey, now: u64) -> Option<&Entry> {
        let i = self.live(key, now)?;
        self.touch(i, None, now);
        Some(&self.nodes[i as usize].entry)
    }

    /// Whether the flow is tracked and not expired, without refreshing it
    /// (for housekeeping that must not keep flows alive).
    pub fn contains(&self, key: &FlowKey, now: u64) -> bool {
        self.index
            .get(key)
            .is_some_and(|&i| !self.nodes[i as usize].entry.expired(now))
    }

    /// Every flow not expired at `now`, in no order, none refreshed (for
    /// metrics: connections per backend).
    pub fn iter(&self, now: u64) -> impl Iterator<Item = (&FlowKey, &Entry)> {
        self.index
            .iter()
            .map(|(key, &i)| (key, &self.nodes[i as usize].entry))
            .filter(move |(_, e)| !e.expired(now))
    }

    /// Like [`Conntrack::lookup`], and advances the flow's state by a packet
    /// with `flags` (ignored for UDP) going in direction `dir`.
    pub fn observe(
        &mut self,
        key: &FlowKey,
        dir: Direction,
        flags: TcpFlags,
        now: u64,
    ) -> Option<&Entry> {
        let i = self.live(key, now)?;
        let state = self.nodes[i as usize].entry.state.next(flags, dir);
        self.touch(i, Some(state), now);
        Some(&self.nodes[i as usize].entry)
    }

    /// Records a new flow whose first packet carried `flags`, going to
    /// `backend`; replaces any entry the key had. At capacity, first evicts
    /// the flow closest to its deadline (see the module docs) and returns it.
    pub fn insert(
        &mut self,
        key: FlowKey,
        backend: Ipv4Addr,
        flags: TcpFlags,
        now: u64,
    ) -> Option<(FlowKey, Entry)> {
        let entry = Entry {
            backend,
            state: FlowState::initial(key.proto, flags),
            last_seen: now,
        };
        if let Some(&i) = self.index.get(&key) {
            self.unlink(i);
            self.nodes[i as usize].entry = entry;
            self.push_front(i);
            return None;
        }
        let evicted = if self.len() >= self.capacity {
            self.evict_one()
        } else {
            None
        };
        let i = self.alloc(key, entry);
        self.push_front(i);
        self.index.insert(key, i);
        evicted
    }

    /// Forgets one flow.
    pub fn remove(&mut self, key: &FlowKey) -> Option<Entry> {
        let i = self.index.remove(key)?;
        Some(self.release(i))
    }

    /// Forgets every flow of `backend` and returns their keys, so the engine
    /// can end them (TCP RST, ICMP unreachable) instead of letting them hang.
    /// Scans the whole table: it runs once per backend removal, not per
    /// packet.
    pub fn remove_backend(&mut self, backend: Ipv4Addr) -> Vec<FlowKey> {
        let keys: Vec<FlowKey> = self
            .index
            .iter()
            .filter(|&(_, &i)| self.nodes[i as usize].entry.backend == backend)
            .map(|(k, _)| *k)
            .collect();
        for key in &keys {
            self.remove(key);
        }
        keys
    }

    /// Drops up to `budget` expired flows, oldest deadline first within each
    /// state class, and returns how many it dropped. Calling it with a small
    /// budget on every batch of packets spreads the work.
    pub fn expire(&mut self, now: u64, budget: usize) -> usize {
        let mut dropped = 0;
        for class in 0..CLASSES {
            while dropped < budget {
                let tail = self.lists[class].tail;
                if tail == NIL || !self.nodes[tail as usize].entry.expired(now) {
                    break;
                }
                let key = self.nodes[tail as usize].key;
                self.index.remove(&key);
                self.release(tail);
                dropped += 1;
            }
        }
        dropped
    }

    /// The node of a live (known and unexpired) flow; drops it if expired.
    fn live(&mut self, key: &FlowKey, now: u64) -> Option<u32> {
        let i = *self.index.get(key)?;
        if self.nodes[i as usize].entry.expired(now) {
            self.remove(key);
            return None;
        }
        Some(i)
    }

    /// Marks node `i` used at `now`, optionally in a new state.
    fn touch(&mut self, i: u32, state: Option<FlowState>, now: u64) {
        self.unlink(i);
        let entry = &mut self.nodes[i as usize].entry;
        // A clock that steps back must not make the entry older.
        entry.last_seen = entry.last_seen.max(now);
        if let Some(state) = state {
            entry.state = state;
        }
        self.push_front(i);
    }

    /// Evicts the class tail with the earliest deadline.
    fn evict_one(&mut self) -> Option<(FlowKey, Entry)> {
        let victim = self
            .lists
            .iter()
            .filter(|l| l.tail != NIL)
            .map(|l| l.tail)
            .min_by_key(|&t| self.nodes[t as usize].entry.deadline())?;
        let key = self.nodes[victim as usize].key;
        self.index.remove(&key);
        Some((key, self.release(victim)))
    }

    fn alloc(&mut self, key: FlowKey, entry: Entry) -> u32 {
        let node = Node {
            key,
            entry,
            prev: NIL,
            next: NIL,
        };
        if self.free != NIL {
            let i = self.free;
            self.free = self.nodes[i as usize].next;
            self.nodes[i as usize] = node;
            i
        } else {
            // `capacity <= MAX_CAPACITY < u32::MAX`, so the index fits.
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        }
    }

    /// Unlinks node `i` (already out of the index) onto the free list.
    fn release(&mut self, i: u32) -> Entry {
        self.unlink(i);
        let node = &mut self.nodes[i as usize];
        node.next = self.free;
        self.free = i;
        node.entry
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next, class) = {
            let n = &self.nodes[i as usize];
            (n.prev, n.next, class(n.entry.state))
        };
        match prev {
            NIL => self.lists[class].head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.lists[class].tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let class = class(self.nodes[i as usize].entry.state);
        let head = self.lists[class].head;
        {
            let n = &mut self.nodes[i as usize];
            n.prev = NIL;
            n.next = head;
        }
        match head {
            NIL => self.lists[class].tail = i,
            h => self.nodes[h as usize].prev = i,
        }
        self.lists[class].head = i;
    }
}

#[cfg(test)]
mod tests;
