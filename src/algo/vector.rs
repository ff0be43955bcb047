//! The vector vocabulary the algorithms are written in: whole-buffer operations over
//! agent-major buffers (the length is the destination's), so each update reads as its line of
//! ALGORITHMS.md. Each is one backend op; the coefficients are exactly those the updates always
//! used, so the numbers do not depend on which helper spelled them.

use crate::backend::{Axpby, Backend, Buf, CopyRange, Fill};
use crate::error::Result;

/// Whole-buffer vector operations on any backend (`y` is written, its length is used).
pub trait VectorOps {
    /// `y ← a·x + b·y`.
    fn axpby_assign(&mut self, y: Buf, a: f64, x: Buf, b: f64) -> Result<()>;
    /// `y ← value` (a real fill: NaN and ∞ in y are overwritten).
    fn fill_all(&mut self, y: Buf, value: f64) -> Result<()>;
    /// `y ← x`.
    fn assign(&mut self, y: Buf, x: Buf) -> Result<()>;

    /// `y ← y + x`.
    fn add_assign(&mut self, y: Buf, x: Buf) -> Result<()> {
        self.axpby_assign(y, 1.0, x, 1.0)
    }
    /// `y ← y − x`.
    fn sub_assign(&mut self, y: Buf, x: Buf) -> Result<()> {
        self.axpby_assign(y, -1.0, x, 1.0)
    }
    /// `y ← x − y`.
    fn rsub_assign(&mut self, y: Buf, x: Buf) -> Result<()> {
        self.axpby_assign(y, 1.0, x, -1.0)
    }
}

impl<B: Backend + ?Sized> VectorOps for B {
    fn axpby_assign(&mut self, y: Buf, a: f64, x: Buf, b: f64) -> Result<()> {
        self.axpby(&Axpby {
            x,
            y,
            a,
            b,
            len: y.len,
        })
    }

    fn fill_all(&mut self, y: Buf, value: f64) -> Result<()> {
        self.fill(&Fill {
            y,
            offset: 0,
            stride: 0,
            count: 1,
            len: y.len,
            value,
        })
    }

    fn assign(&mut self, y: Buf, x: Buf) -> Result<()> {
        self.copy(&CopyRange::whole(x, y, y.len))
    }
}
