//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable
//! Software Network Load Balancer", NSDI 2016, §3.4), with weights.
//!
//! A list of backends (a name and a weight each) enters [`Maglev::new`]; a
//! lookup table of prime size `M` leaves, whose every slot holds the index of
//! a backend in the caller's list. A flow's hash picks a slot
//! ([`Maglev::lookup`]). Each backend owns about `M * weight / total` slots,
//! and removing one of `N` backends moves little more than the `1/N` of slots
//! it owned.
//!
//! The table depends only on the set of `(name, weight)` pairs and `M`, never
//! on the order the caller lists the backends in: backends are sorted by name
//! before the table is filled, and the indices are mapped back to the
//! caller's order at the end. Every node therefore builds the same table from
//! the same service, whatever order its copy of the state is in.
//!
//! Exact algorithm (a cross-node contract, like [`super::hash`]): for a
//! backend with name `n`, `offset = hash_bytes(OFFSET_SEED, n) % M` and `skip =
//! hash_bytes(SKIP_SEED, n) % (M - 1) + 1`; its preference list is `offset,
//! offset + skip, offset + 2 skip, ... (mod M)`. Weights are divided by their
//! greatest common divisor; then, round after round until the table is full,
//! each backend in name order with weight `w` claims its next `w` preferred
//! empty slots (Katran's weighted variant). Weight 0 claims nothing, so the
//! table equals the one built without that backend.

use thiserror::Error;

use super::hash::hash_bytes;

/// The table size the paper and Katran use: prime, and large enough that 100
/// equal backends differ by at most one slot, about 1.5 per mille.
pub const DEFAULT_TABLE_SIZE: u32 = shoal_ebpf_common::MAGLEV_SLOTS;

/// The largest table accepted, so a bad size cannot ask for gigabytes
/// (64 MiB at 4 bytes a slot). A prime.
pub const MAX_TABLE_SIZE: u32 = 16_777_213;

/// The marker of a slot that has no backend (only when no backend has weight).
pub const EMPTY: u32 = u32::MAX;

/// Seed of the hash that gives a backend's first preferred slot.
pub const OFFSET_SEED: u64 = 0x6f66_6673_6574_0001;
/// Seed of the hash that gives a backend's step through the table.
pub const SKIP_SEED: u64 = 0x736b_6970_0000_0002;

/// One backend as Maglev sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaglevBackend {
    /// The identity the backend's slots derive from: the same on every node
    /// (the load balancer uses the IPv4 address's four octets).
    pub name: Vec<u8>,
    /// Relative share of the table; 0 takes no slots.
    pub weight: u32,
}

impl MaglevBackend {
    pub fn new(name: impl Into<Vec<u8>>, weight: u32) -> Self {
        Self {
            name: name.into(),
            weight,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MaglevError {
    #[error("Maglev table size {0} is not prime; use a prime such as {DEFAULT_TABLE_SIZE}")]
    NotPrime(u32),
    #[error(
        "Maglev table size {size} must be larger than the number of backends ({backends}); \
         use a prime larger than {backends}, ideally 100 times larger, such as {DEFAULT_TABLE_SIZE}"
    )]
    TooSmall { size: u32, backends: usize },
    #[error(
        "Maglev table size {0} is larger than the maximum {MAX_TABLE_SIZE}; use a smaller prime"
    )]
    TooLarge(u32),
    #[error(
        "backends[{first}] and backends[{second}] have the same Maglev name {name:?}; \
         every backend needs its own name"
    )]
    DuplicateName {
        first: usize,
        second: usize,
        name: String,
    },
}

/// A filled Maglev lookup table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maglev {
    /// The caller's backend index per slot, or [`EMPTY`] when no backend has
    /// weight.
    table: Vec<u32>,
    size: u32,
}

/// A backend's walk through its preference list.
struct Walk {
    /// The next slot it prefers.
    pos: u32,
    skip: u32,
    /// Slots to claim per round: its weight divided by the weights' gcd.
    turns: u32,
    /// Its index in the caller's list.
    caller: u32,
}

impl Maglev {
    /// Builds the table for `backends` with `table_size` slots; see the module
    /// docs for the exact algorithm.
    pub fn new(backends: &[MaglevBackend], table_size: u32) -> Result<Maglev, MaglevError> {
        let m = table_size;
        if m > MAX_TABLE_SIZE {
            return Err(MaglevError::TooLarge(m));
        }
        if !is_prime(m) {
            return Err(MaglevError::NotPrime(m));
        }
        if m as usize <= backends.len() {
            return Err(MaglevError::TooSmall {
                size: m,
                backends: backends.len(),
            });
        }

        // Sorting by name makes the table independent of the caller's order.
        let mut order: Vec<usize> = (0..backends.len()).collect();
        order.sort_unstable_by(|&a, &b| backends[a].name.cmp(&backends[b].name));
        for pair in order.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if backends[a].name == backends[b].name {
                return Err(MaglevError::DuplicateName {
                    first: a.min(b),
                    second: a.max(b),
                    name: String::from_utf8_lossy(&backends[a].name).into_owned(),
                });
            }
        }

        let divisor = backends
            .iter()
            .map(|b| b.weight)
            .filter(|&w| w > 0)
            .fold(0, gcd);
        let mut walks: Vec<Walk> = order
            .iter()
            .filter(|&&i| backends[i].weight > 0)
            .map(|&i| {
                let name = &backends[i].name;
                let offset = (hash_bytes(OFFSET_SEED, name) % u64::from(m)) as u32;
                let skip = (hash_bytes(SKIP_SEED, name) % u64::from(m - 1)) as u32 + 1;
                Walk {
                    pos: offset,
                    skip,
                    turns: backends[i].weight / divisor,
                    // `m > backends.len()`, so every index fits below EMPTY.
                    caller: i as u32,
                }
            })
            .collect();

        let mut table = vec![EMPTY; m as usize];
        if !walks.is_empty() {
            populate(&mut table, &mut walks, m);
        }
        Ok(Maglev { table, size: m })
    }

    /// The backend (an index into the list given to [`Maglev::new`]) for a
    /// flow with hash `flow_hash`; `None` when no backend has weight.
    pub fn lookup(&self, flow_hash: u32) -> Option<u32> {
        let slot = self.table.get((flow_hash % self.size) as usize)?;
        (*slot != EMPTY).then_some(*slot)
    }

    /// The whole table, for installing it into an eBPF map.
    pub fn table(&self) -> &[u32] {
        &self.table
    }

    pub fn size(&self) -> u32 {
        self.size
    }
}

/// Fills every slot. Terminates because `m` is prime and `skip` in
/// `1..m`, so each preference list visits every slot: a backend always finds
/// an empty one while the table is not full.
fn populate(table: &mut [u32], walks: &mut [Walk], m: u32) {
    let mut filled: u32 = 0;
    loop {
        for walk in walks.iter_mut() {
            for _ in 0..walk.turns {
                while table[walk.pos as usize] != EMPTY {
                    walk.advance(m);
                }
                table[walk.pos as usize] = walk.caller;
                walk.advance(m);
                filled += 1;
                if filled == m {
                    return;
                }
            }
        }
    }
}

impl Walk {
    /// `pos = (pos + skip) mod m` without a division or overflow.
    fn advance(&mut self, m: u32) {
        let room = m - self.skip;
        self.pos = if self.pos >= room {
            self.pos - room
        } else {
            self.pos + self.skip
        };
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Trial division: table sizes are at most [`MAX_TABLE_SIZE`], so at most
/// ~2000 odd divisors.
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let n = u64::from(n);
    let mut d: u64 = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

#[cfg(test)]
mod tests;
