//! What the two CPU backends share: a buffer held in host memory, with reals stored as `R` (f64
//! in the reference, f32 in the native backend), and the live-buffer accounting over a table of
//! them.

use super::LiveBuffers;

/// One buffer of a CPU backend.
pub(crate) enum Slot<R> {
    /// Reals.
    Real(Vec<R>),
    /// Indices.
    Index(Vec<u32>),
    /// Bytes (datasets).
    Bytes(Vec<u8>),
}

/// How many buffers a CPU backend's table holds and their bytes in its own storage.
pub(crate) fn live_buffers<R>(slots: &[Slot<R>]) -> LiveBuffers {
    let bytes = slots
        .iter()
        .map(|s| match s {
            Slot::Real(v) => (std::mem::size_of::<R>() * v.len()) as u64,
            Slot::Index(v) => 4 * v.len() as u64,
            Slot::Bytes(v) => v.len() as u64,
        })
        .sum();
    LiveBuffers {
        count: slots.len(),
        bytes,
    }
}
