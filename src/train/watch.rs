//! Divergence caught at the step it happens, without a readback inside the step.
//!
//! After every step the watch records, on the backend, each agent's squared parameter norm (and
//! its training loss, where the objective reports one) into one slot of a small history buffer:
//! two [`Reduce`] ops appended to the step's own submission, so the step never waits for the
//! device. The history is read at the next natural sync point (an evaluation, a checkpoint, the
//! end of a run) or when it is full, and the first non-finite entry names the real step and
//! agent. The criterion is the evaluation's: a non-finite loss or squared parameter norm.

use crate::backend::{Backend, Buf, BufKind, Reduce, ReduceMode};
use crate::error::{Error, Result};

/// Most history entries (floats) the watch holds: bounds its memory for any number of agents.
const MAX_ENTRIES: usize = 1 << 16;
/// Most steps between two reads of the history.
const MAX_WINDOW: usize = 256;

/// Per-step, per-agent finiteness record of a run (see the module docs).
#[derive(Debug)]
pub struct DivergenceWatch {
    hist: Buf,
    agents: usize,
    stride: usize,
    d: usize,
    loss: Option<Buf>,
    /// Floats per step: the agents' squared norms, then their losses where recorded.
    row: usize,
    window: usize,
    /// Steps recorded since the last read.
    filled: usize,
    /// The step (steps completed) of the first recorded slot.
    first_step: u64,
    /// Kernel dispatches one record costs on this backend.
    dispatches: u64,
}

impl DivergenceWatch {
    /// A watch over `agents` parameter slabs of `stride` floats (the first `d` of each are
    /// parameters, in `params`) and, where given, the per-agent loss sums at the start of
    /// `loss`. One record is made and forgotten to learn its dispatch count (a GPU counts
    /// dispatches when it encodes them, at the flush).
    pub fn new(
        be: &mut dyn Backend,
        agents: usize,
        stride: usize,
        d: usize,
        params: Buf,
        loss: Option<Buf>,
    ) -> Result<Self> {
        let row = if loss.is_some() { 2 * agents } else { agents };
        let window = (MAX_ENTRIES / row.max(1)).clamp(1, MAX_WINDOW);
        let hist = be.alloc(BufKind::F32, window * row, "divergence_watch")?;
        let mut w = DivergenceWatch {
            hist,
            agents,
            stride,
            d,
            loss,
            row,
            window,
            filled: 0,
            first_step: 0,
            dispatches: 0,
        };
        be.flush()?;
        let before = be.counters().dispatches;
        w.record(be, params, 0)?;
        be.flush()?;
        w.dispatches = be.counters().dispatches - before;
        w.filled = 0;
        Ok(w)
    }

    /// Kernel dispatches one [record](DivergenceWatch::record) costs: the trainer leaves them
    /// out of its dispatches per step, which count the algorithm's work.
    pub fn dispatches_per_record(&self) -> u64 {
        self.dispatches
    }

    /// Records the state after step `step` (steps completed) into the next slot; call before
    /// the step's flush, so the record travels in the same submission. Returns true when the
    /// history is full and must be [checked](DivergenceWatch::check) before the next record.
    pub fn record(&mut self, be: &mut dyn Backend, params: Buf, step: u64) -> Result<bool> {
        if self.filled == self.window {
            self.check(be)?;
        }
        if self.filled == 0 {
            self.first_step = step;
        }
        let n = self.agents;
        let at = self.filled * self.row;
        be.reduce(&Reduce {
            mode: ReduceMode::Dot,
            a: params,
            a_offset: 0,
            a_stride: self.stride,
            b: params,
            b_offset: 0,
            b_stride: self.stride,
            segments: n,
            seg_len: self.d,
            out: self.hist,
            out_offset: at,
        })?;
        if let Some(loss) = self.loss {
            // A sum over one element copies each agent's loss sum.
            be.reduce(&Reduce {
                mode: ReduceMode::Sum,
                a: loss,
                a_offset: 0,
                a_stride: 1,
                b: loss,
                b_offset: 0,
                b_stride: 1,
                segments: n,
                seg_len: 1,
                out: self.hist,
                out_offset: at + n,
            })?;
        }
        self.filled += 1;
        Ok(self.filled == self.window)
    }

    /// Steps recorded and not yet read.
    pub fn pending(&self) -> usize {
        self.filled
    }

    /// Reads the history (finishing all recorded work) and forgets it; the first step with a
    /// non-finite loss or squared parameter norm is an [`Error::Diverged`] naming that step
    /// and agent.
    pub fn check(&mut self, be: &mut dyn Backend) -> Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        let h = be.read_f32(self.hist)?;
        let filled = std::mem::take(&mut self.filled);
        let n = self.agents;
        for (k, slot) in h.chunks(self.row).take(filled).enumerate() {
            let (norms, losses) = slot.split_at(n);
            for (agent, &norm) in norms.iter().enumerate() {
                let loss = losses.get(agent).map(|&l| ("training loss", l));
                for (what, value) in loss.into_iter().chain([("squared parameter norm", norm)]) {
                    if !value.is_finite() {
                        return Err(Error::Diverged {
                            step: self.first_step + k as u64,
                            agent,
                            what,
                            value,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}
