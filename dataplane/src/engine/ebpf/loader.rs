//! Loads the programs into the kernel, keeps their maps in line with a
//! [`Maps`], attaches them to interfaces, and reads their counters.
//! Dropping a [`Programs`] detaches every program (their links are
//! file descriptors) and frees the maps.

use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray};
use aya::programs::tc::SchedClassifierLinkId;
use aya::programs::{
    ProgramError, SchedClassifier, TcAttachType, TestRun, TestRunOptions, Xdp, XdpMode,
};
use aya::{Ebpf, EbpfError, Pod};
use shoal_ebpf_common::{
    BackendEntry, BackendKey, Counters, CtEntry, CtKey, MAGLEV_SLOTS, VipEntry, VipKey, map,
    program,
};

use super::maps::{Maps, Slots};

/// The object built from `ebpf/programs` by the build script.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/shoal-programs"));

/// A failure to load, fill or attach the underlay program.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("loading the eBPF object (the kernel refused it or its maps): {0}")]
    Object(#[from] EbpfError),
    #[error("the eBPF object has no {0}; the build is inconsistent, rebuild shoal")]
    Missing(String),
    #[error("eBPF program `{name}`: {source}")]
    Program {
        name: &'static str,
        source: ProgramError,
    },
    #[error("eBPF map `{name}`: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
}

/// The programs, loaded and verified, with their maps.
pub struct Programs {
    ebpf: Ebpf,
    installed: Maps,
}

impl std::fmt::Debug for Programs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Programs")
            .field("installed", &self.installed)
            .finish_non_exhaustive()
    }
}

impl Programs {
    /// Loads the object and its programs into the kernel (the verifier runs
    /// here), with empty maps: until [`Programs::install`], the underlay
    /// program passes everything and the task program drops everything.
    pub fn load() -> Result<Programs, LoadError> {
        let mut ebpf = Ebpf::load(OBJECT)?;
        xdp_mut(&mut ebpf)?
            .load()
            .map_err(|source| LoadError::Program {
                name: program::XDP_UNDERLAY,
                source,
            })?;
        tc_mut(&mut ebpf)?
            .load()
            .map_err(|source| LoadError::Program {
                name: program::TC_TASK,
                source,
            })?;
        Ok(Programs {
            ebpf,
            installed: Maps::default(),
        })
    }

    /// Makes the maps hold `want`: new and changed entries are written
    /// before stale ones are removed, so a packet never misses an entry
    /// that both the old and the new contents have. After a failure the
    /// maps may hold a mix; the next call rewrites every entry and removes
    /// whatever the kernel holds that `want` does not.
    pub fn install(&mut self, want: &Maps) -> Result<(), LoadError> {
        let have = std::mem::take(&mut self.installed);
        let ebpf = &mut self.ebpf;
        // The senders before the config that turns decapsulation on, so a
        // node's first datagrams are not taken for a stranger's.
        sync(
            &mut map_of(ebpf, map::NODES)?,
            map::NODES,
            &have.nodes,
            &want.nodes,
        )?;
        let mut config: Array<&mut MapData, _> = map_of(ebpf, map::CONFIG)?;
        config
            .set(0, want.config, 0)
            .map_err(map_err(map::CONFIG))?;
        sync(
            &mut map_of(ebpf, map::OWNED)?,
            map::OWNED,
            &have.owned,
            &want.owned,
        )?;
        sync(
            &mut map_of(ebpf, map::SEGMENTS)?,
            map::SEGMENTS,
            &have.segments,
            &want.segments,
        )?;
        sync(&mut map_of(ebpf, map::FDB)?, map::FDB, &have.fdb, &want.fdb)?;
        sync(
            &mut map_of(ebpf, map::PORTS)?,
            map::PORTS,
            &have.ports,
            &want.ports,
        )?;
        // Tables and backends before the VIPs that point to them.
        let mut maglev: Array<&mut MapData, [u8; 4]> = map_of(ebpf, map::MAGLEV)?;
        for (&table, slots) in &want.maglev {
            write_slots(&mut maglev, table, have.maglev.get(&table), slots)?;
        }
        sync(
            &mut map_of(ebpf, map::BACKENDS)?,
            map::BACKENDS,
            &have.backends,
            &want.backends,
        )?;
        sync(
            &mut map_of(ebpf, map::VIPS)?,
            map::VIPS,
            &have.vips,
            &want.vips,
        )?;
        self.installed = want.clone();
        Ok(())
    }

    /// What the kernel's VIP, backend and Maglev maps hold (the tables the
    /// VIPs point to), as a [`Maps`] with only those parts: to check an
    /// install against what it meant to write.
    pub fn read_vips(&mut self) -> Result<Maps, LoadError> {
        let ebpf = &mut self.ebpf;
        let mut read = Maps::default();
        let vips: HashMap<&mut MapData, VipKey, VipEntry> = map_of(ebpf, map::VIPS)?;
        for kv in vips.iter() {
            let (k, v) = kv.map_err(map_err(map::VIPS))?;
            read.vips.insert(k, v);
        }
        let backends: HashMap<&mut MapData, BackendKey, BackendEntry> =
            map_of(ebpf, map::BACKENDS)?;
        for kv in backends.iter() {
            let (k, v) = kv.map_err(map_err(map::BACKENDS))?;
            read.backends.insert(k, v);
        }
        let maglev: Array<&mut MapData, [u8; 4]> = map_of(ebpf, map::MAGLEV)?;
        let tables: std::collections::BTreeSet<u32> = read
            .vips
            .values()
            .map(|v| v.table)
            .filter(|&t| t != shoal_ebpf_common::NO_TABLE)
            .collect();
        for table in tables {
            let slots = (0..MAGLEV_SLOTS)
                .map(|s| maglev.get(&(table * MAGLEV_SLOTS + s), 0))
                .collect::<Result<Slots, MapError>>()
                .map_err(map_err(map::MAGLEV))?;
            read.maglev.insert(table, slots);
        }
        Ok(read)
    }

    /// What [`Programs::install`] last installed.
    pub fn installed(&self) -> &Maps {
        &self.installed
    }

    /// Attaches the task program to the ingress of interface `ifname`
    /// (TCX on kernels from 6.6, a clsact filter before). It stays attached
    /// until [`Programs::detach_task`] or the `Programs` is dropped.
    pub fn attach_task(&mut self, ifname: &str) -> Result<SchedClassifierLinkId, LoadError> {
        let err = |source| LoadError::Program {
            name: program::TC_TASK,
            source,
        };
        // Kernels before 6.6 attach through a clsact qdisc (the interface
        // is shoal's own, and goes with it); one already there is fine.
        let _ = aya::programs::tc::qdisc_add_clsact(ifname);
        tc_mut(&mut self.ebpf)?
            .attach(ifname, TcAttachType::Ingress)
            .map_err(err)
    }

    /// Detaches the task program from an interface. An interface that is
    /// gone took the attachment with it.
    pub fn detach_task(&mut self, link: SchedClassifierLinkId) {
        if let Ok(tc) = tc_mut(&mut self.ebpf) {
            let _ = tc.detach(link);
        }
    }

    /// Attaches the underlay program to the interface with index `ifindex`.
    /// It stays attached until the `Programs` is dropped.
    pub fn attach(&mut self, ifindex: u32, mode: XdpMode) -> Result<(), LoadError> {
        xdp_mut(&mut self.ebpf)?
            .attach_to_if_index(ifindex, mode)
            .map_err(|source| LoadError::Program {
                name: program::XDP_UNDERLAY,
                source,
            })?;
        Ok(())
    }

    /// The counters in `slot` ([`shoal_ebpf_common::counters`]) of every
    /// CPU, summed.
    pub fn counters(&self, slot: u32) -> Result<Counters, LoadError> {
        let raw = self
            .ebpf
            .map(map::COUNTERS)
            .ok_or_else(|| LoadError::Missing(format!("map {}", map::COUNTERS)))?;
        let counters: PerCpuArray<&MapData, Counters> =
            PerCpuArray::try_from(raw).map_err(map_err(map::COUNTERS))?;
        let per_cpu = counters.get(&slot, 0).map_err(map_err(map::COUNTERS))?;
        Ok(per_cpu
            .iter()
            .fold(Counters::default(), |sum, c| sum.add(c)))
    }

    /// Runs the program once on `frame` through BPF_PROG_TEST_RUN: the XDP
    /// action and the frame as the program left it. The maps and counters
    /// are the live ones.
    pub fn test_run(&self, frame: &[u8]) -> Result<(u32, Vec<u8>), LoadError> {
        let program = self.xdp()?;
        // Room for a frame that grows; the program only shrinks frames today.
        let mut out = vec![0; frame.len() + 256];
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..TestRunOptions::new()
            })
            .map_err(|source| LoadError::Program {
                name: program::XDP_UNDERLAY,
                source,
            })?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// Takes the counters map out of the object, for a reader of its own
    /// (the metrics endpoint); [`Programs::counters`] fails afterwards.
    pub fn take_counters(&mut self) -> Result<PerCpuArray<MapData, Counters>, LoadError> {
        let raw = self
            .ebpf
            .take_map(map::COUNTERS)
            .ok_or_else(|| LoadError::Missing(format!("map {}", map::COUNTERS)))?;
        PerCpuArray::try_from(raw).map_err(map_err(map::COUNTERS))
    }

    /// Takes the conntrack maps out (the programs keep using them), for the
    /// metrics' sweeps.
    pub fn take_flows(&mut self) -> Result<Flows, LoadError> {
        let mut take = |name: &'static str| -> Result<HashMap<MapData, CtKey, CtEntry>, LoadError> {
            let raw = self
                .ebpf
                .take_map(name)
                .ok_or_else(|| LoadError::Missing(format!("map {name}")))?;
            HashMap::try_from(raw).map_err(map_err(name))
        };
        Ok(Flows {
            forward: take(map::CT)?,
            reply: take(map::CT_REPLY)?,
        })
    }

    /// Runs the task program once on `frame` through BPF_PROG_TEST_RUN as
    /// if it had arrived on the interface with index `ifindex` (in the
    /// calling thread's namespace): the tc action and the frame as the
    /// program left it.
    pub fn test_run_task(&self, ifindex: u32, frame: &[u8]) -> Result<(i32, Vec<u8>), LoadError> {
        let program: &SchedClassifier = self
            .ebpf
            .program(program::TC_TASK)
            .ok_or_else(|| LoadError::Missing(format!("program {}", program::TC_TASK)))?
            .try_into()
            .map_err(|source| LoadError::Program {
                name: program::TC_TASK,
                source,
            })?;
        let mut out = vec![0; frame.len() + 256];
        // A __sk_buff naming the interface; the rest zero.
        let mut ctx = vec![0u8; SK_BUFF_LEN];
        ctx[SK_BUFF_IFINDEX..SK_BUFF_IFINDEX + 4].copy_from_slice(&ifindex.to_ne_bytes());
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::new()
            })
            .map_err(|source| LoadError::Program {
                name: program::TC_TASK,
                source,
            })?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value as i32, out))
    }

    fn xdp(&self) -> Result<&Xdp, LoadError> {
        self.ebpf
            .program(program::XDP_UNDERLAY)
            .ok_or_else(|| LoadError::Missing(format!("program {}", program::XDP_UNDERLAY)))?
            .try_into()
            .map_err(|source| LoadError::Program {
                name: program::XDP_UNDERLAY,
                source,
            })
    }
}

fn map_of<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
{
    let raw = ebpf
        .map_mut(name)
        .ok_or_else(|| LoadError::Missing(format!("map {name}")))?;
    T::try_from(raw).map_err(map_err(name))
}

/// Size of `struct __sk_buff`, and the offset of its `ifindex`.
const SK_BUFF_LEN: usize = 192;
const SK_BUFF_IFINDEX: usize = 40;

fn tc_mut(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier, LoadError> {
    ebpf.program_mut(program::TC_TASK)
        .ok_or_else(|| LoadError::Missing(format!("program {}", program::TC_TASK)))?
        .try_into()
        .map_err(|source| LoadError::Program {
            name: program::TC_TASK,
            source,
        })
}

fn xdp_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, LoadError> {
    ebpf.program_mut(program::XDP_UNDERLAY)
        .ok_or_else(|| LoadError::Missing(format!("program {}", program::XDP_UNDERLAY)))?
        .try_into()
        .map_err(|source| LoadError::Program {
            name: program::XDP_UNDERLAY,
            source,
        })
}

fn map_err(name: &'static str) -> impl Fn(MapError) -> LoadError {
    move |source| LoadError::Map { name, source }
}

/// The VIP conntrack maps: client flows and their replies.
pub struct Flows {
    forward: HashMap<MapData, CtKey, CtEntry>,
    reply: HashMap<MapData, CtKey, CtEntry>,
}

impl Flows {
    /// Removes the flows that have timed out by `now_ms` (the programs only
    /// notice a flow's timeout when its next packet comes) and counts the
    /// rest: `[client flows, reply flows]`.
    pub fn sweep(&mut self, now_ms: u64) -> [usize; 2] {
        [
            sweep(&mut self.forward, now_ms),
            sweep(&mut self.reply, now_ms),
        ]
    }
}

fn sweep(map: &mut HashMap<MapData, CtKey, CtEntry>, now_ms: u64) -> usize {
    // Keys first: removing while walking would restart the walk.
    let keys: Vec<CtKey> = map.keys().filter_map(Result::ok).collect();
    let mut live = 0;
    for key in keys {
        let Ok(entry) = map.get(&key, 0) else {
            continue;
        };
        if entry.live_state(now_ms).is_some() {
            live += 1;
        } else {
            // A flow that a packet refreshes meanwhile loses its entry;
            // the program makes it again from that packet (the client's
            // entry picks the same backend, and it re-makes the reply's).
            let _ = map.remove(&key);
        }
    }
    live
}

/// Writes the slots of Maglev table `table` that differ from `had` (all of
/// them when the kernel's are unknown): a backend change moves few slots,
/// so an update is a few thousand writes rather than 65,537.
fn write_slots(
    maglev: &mut Array<&mut MapData, [u8; 4]>,
    table: u32,
    had: Option<&Slots>,
    want: &Slots,
) -> Result<(), LoadError> {
    if had.is_some_and(|h| std::sync::Arc::ptr_eq(h, want)) {
        return Ok(());
    }
    let base = table * MAGLEV_SLOTS;
    for (slot, addr) in (0u32..).zip(want.iter()) {
        if had.and_then(|h| h.get(slot as usize)) != Some(addr) {
            maglev
                .set(base + slot, *addr, 0)
                .map_err(map_err(map::MAGLEV))?;
        }
    }
    Ok(())
}

/// Writes what `want` adds or changes relative to `have`, then removes every
/// key the map holds that `want` does not.
fn sync<K: Pod + Ord, V: Pod + PartialEq>(
    map: &mut HashMap<&mut MapData, K, V>,
    name: &'static str,
    have: &std::collections::BTreeMap<K, V>,
    want: &std::collections::BTreeMap<K, V>,
) -> Result<(), LoadError> {
    for (k, v) in want {
        if have.get(k) != Some(v) {
            map.insert(k, v, 0).map_err(map_err(name))?;
        }
    }
    // The kernel's keys, not `have`'s: after a failed install they differ.
    let stale: Vec<K> = map
        .keys()
        .collect::<Result<Vec<K>, MapError>>()
        .map_err(map_err(name))?
        .into_iter()
        .filter(|k| !want.contains_key(k))
        .collect();
    for k in stale {
        match map.remove(&k) {
            Ok(()) => {}
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {}
            Err(source) => return Err(LoadError::Map { name, source }),
        }
    }
    Ok(())
}

/// Turns on the kernel's run-time accounting of every BPF program
/// (`run_time_ns`, `run_cnt` in `bpftool prog show`) for as long as the
/// returned descriptor is open: BPF_ENABLE_STATS, which, unlike the
/// `kernel.bpf_stats_enabled` sysctl, ends with the process.
pub fn run_time_stats() -> Result<std::os::fd::OwnedFd, LoadError> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|e| LoadError::Missing(format!("BPF run-time statistics: {e}")))
}
