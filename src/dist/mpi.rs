//! The MPI transport (rsmpi over the system's MPI): `mpirun -np R` starts R processes, each
//! finds its rank in `MPI_COMM_WORLD`.

use super::Transport;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Count;

/// Whether this process was started by an MPI launcher (`mpirun`, `srun`, `mpiexec`), read from
/// the environment the launchers set, so a plain run never initialises MPI.
pub fn launched_by_mpi() -> bool {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_RANK",
        "MPI_LOCALNRANKS",
        "SLURM_NTASKS",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some())
}

/// This process's rank among the ranks of its node (selects a GPU adapter), from the
/// launcher's environment; 0 when it does not say.
pub fn local_rank() -> usize {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "SLURM_LOCALID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse().ok())
    .unwrap_or(0)
}

/// MPI_COMM_WORLD; MPI is finalised when the transport is dropped.
pub struct MpiTransport {
    world: SimpleCommunicator,
    _universe: Universe,
}

impl MpiTransport {
    /// Initialises MPI (once per process); `None` if it was initialised already.
    pub fn init() -> Option<Self> {
        let universe = mpi::initialize()?;
        Some(MpiTransport {
            world: universe.world(),
            _universe: universe,
        })
    }
}

fn count(n: usize) -> Count {
    Count::try_from(n).expect("an MPI message below 2^31 bytes")
}

impl Transport for MpiTransport {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_gather(&self, mine: &[u8]) -> Vec<Vec<u8>> {
        // Every message carries one leading byte: an empty Rust slice points at address 1,
        // which Open MPI reads as MPI_IN_PLACE.
        let mut padded = Vec::with_capacity(mine.len() + 1);
        padded.push(0u8);
        padded.extend_from_slice(mine);
        let mine = &padded[..];
        let size = self.size();
        let mut lens = vec![0u64; size];
        self.world
            .all_gather_into(&(mine.len() as u64), &mut lens[..]);
        let counts: Vec<Count> = lens.iter().map(|&l| count(l as usize)).collect();
        let mut displs = Vec::with_capacity(size);
        let mut at = 0usize;
        for &l in &lens {
            displs.push(count(at));
            at += l as usize;
        }
        let mut all = vec![0u8; at];
        {
            let mut part = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            self.world.all_gather_varcount_into(mine, &mut part);
        }
        let mut out = Vec::with_capacity(size);
        let mut at = 0usize;
        for &l in &lens {
            out.push(all[at + 1..at + l as usize].to_vec());
            at += l as usize;
        }
        out
    }

    fn exchange(&self, sends: &[(usize, Vec<u8>)], recvs: &mut [(usize, Vec<u8>)]) {
        let total = sends.len() + recvs.len();
        mpi::request::multiple_scope(total, |scope, coll| {
            for (peer, buf) in recvs.iter_mut() {
                let p = self.world.process_at_rank(*peer as i32);
                coll.add(p.immediate_receive_into(scope, &mut buf[..]));
            }
            for (peer, buf) in sends {
                let p = self.world.process_at_rank(*peer as i32);
                coll.add(p.immediate_send(scope, &buf[..]));
            }
            let mut done = Vec::with_capacity(total);
            coll.wait_all(&mut done);
        });
    }

    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

/// The MPI world when this process was started by an MPI launcher ([`launched_by_mpi`]), else
/// `None` (a plain run); an error if MPI cannot be initialised.
pub fn world_from_env() -> crate::Result<Option<super::World>> {
    if !launched_by_mpi() {
        return Ok(None);
    }
    let t = MpiTransport::init().ok_or_else(|| {
        crate::Error::param("mpi", "MPI could not be initialised (initialised twice?)")
    })?;
    Ok(Some(super::World::new(std::rc::Rc::new(t))))
}
