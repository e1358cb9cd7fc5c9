//! Loads the underlay program into the kernel, keeps its maps in line with
//! an [`UnderlayMaps`], attaches it to an interface, and reads its counters.
//! Dropping an [`Underlay`] detaches the program and frees its maps.

use aya::maps::{Array, HashMap, MapData, MapError, PerCpuArray};
use aya::programs::{ProgramError, TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode};
use aya::{Ebpf, EbpfError, Pod};
use shoal_ebpf_common::{Counters, map, program};

use super::maps::UnderlayMaps;

/// The object built from `ebpf/programs` by the build script.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/shoal-xdp-underlay"));

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

/// The underlay XDP program, loaded and verified.
pub struct Underlay {
    ebpf: Ebpf,
    installed: UnderlayMaps,
}

impl std::fmt::Debug for Underlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Underlay")
            .field("installed", &self.installed)
            .finish_non_exhaustive()
    }
}

impl Underlay {
    /// Loads the object and the program into the kernel (the verifier runs
    /// here), with empty maps: until [`Underlay::install`], everything passes.
    pub fn load() -> Result<Underlay, LoadError> {
        let mut ebpf = Ebpf::load(OBJECT)?;
        xdp_mut(&mut ebpf)?
            .load()
            .map_err(|source| LoadError::Program {
                name: program::XDP_UNDERLAY,
                source,
            })?;
        Ok(Underlay {
            ebpf,
            installed: UnderlayMaps::default(),
        })
    }

    /// Makes the maps hold `want`: new and changed entries are written
    /// before stale ones are removed, so a packet never misses an entry
    /// that both the old and the new contents have. After a failure the
    /// maps may hold a mix; the next call rewrites every entry and removes
    /// whatever the kernel holds that `want` does not.
    pub fn install(&mut self, want: &UnderlayMaps) -> Result<(), LoadError> {
        let have = std::mem::take(&mut self.installed);
        let ebpf = &mut self.ebpf;
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
        self.installed = want.clone();
        Ok(())
    }

    /// What [`Underlay::install`] last installed.
    pub fn installed(&self) -> &UnderlayMaps {
        &self.installed
    }

    /// Attaches the program to the interface with index `ifindex`. It stays
    /// attached until the `Underlay` is dropped.
    pub fn attach(&mut self, ifindex: u32, mode: XdpMode) -> Result<(), LoadError> {
        xdp_mut(&mut self.ebpf)?
            .attach_to_if_index(ifindex, mode)
            .map_err(|source| LoadError::Program {
                name: program::XDP_UNDERLAY,
                source,
            })?;
        Ok(())
    }

    /// The counters of every CPU, summed.
    pub fn counters(&self) -> Result<Counters, LoadError> {
        let raw = self
            .ebpf
            .map(map::COUNTERS)
            .ok_or_else(|| LoadError::Missing(format!("map {}", map::COUNTERS)))?;
        let counters: PerCpuArray<&MapData, Counters> =
            PerCpuArray::try_from(raw).map_err(map_err(map::COUNTERS))?;
        let per_cpu = counters.get(&0, 0).map_err(map_err(map::COUNTERS))?;
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
    /// Runs the program once on `frame` as if it had just arrived, and
    /// carries its verdict out (BPF_F_TEST_XDP_LIVE_FRAMES): a redirected
    /// frame really leaves through its interface, in the calling thread's
    /// network namespace.
    pub fn run_live(&self, frame: &[u8]) -> Result<(), LoadError> {
        self.xdp()?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                attrs: TestRunAttrs::new().xdp_live_frames(1),
                ..TestRunOptions::new()
            })
            .map_err(|source| LoadError::Program {
                name: program::XDP_UNDERLAY,
                source,
            })?;
        Ok(())
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
