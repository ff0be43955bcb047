//! Learning-rate schedules as functions of the fractional epoch `e = t/B` (ALGORITHMS.md §6).

use crate::error::{Error, Result};

/// A learning-rate schedule: linear warmup, then multiplicative decay at epoch milestones.
///
/// `η(e) = warm(e) · decay^{#{m ∈ milestones : E(e) ≥ m}}` with
/// `warm(e) = start + (peak − start)·e/W` for `e < W` and `peak` afterwards, where `E(e)` is `e`
/// itself or `⌊e⌋` when `integer_epochs` (epoch-step schedules).
#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    /// Rate after warmup and before the first milestone.
    pub peak: f64,
    /// Rate at e = 0 when warming up (0 for RelaySGD-style, η_base for QGM-style).
    pub warmup_start: f64,
    /// Warmup length W in epochs (0: no warmup).
    pub warmup_epochs: f64,
    /// Milestones in epochs, ascending.
    pub milestones: Vec<f64>,
    /// Factor applied at each milestone.
    pub decay: f64,
    /// Compare milestones with whole epochs only.
    pub integer_epochs: bool,
}

impl LrSchedule {
    /// A constant rate.
    pub fn constant(lr: f64) -> Self {
        LrSchedule {
            peak: lr,
            warmup_start: lr,
            warmup_epochs: 0.0,
            milestones: Vec::new(),
            decay: 1.0,
            integer_epochs: false,
        }
    }

    /// Linear warmup from `start` (0 or a base rate) to `peak` over `epochs` epochs.
    pub fn with_warmup(mut self, start: f64, epochs: f64) -> Self {
        self.warmup_start = start;
        self.warmup_epochs = epochs;
        self
    }

    /// Multiplies by `decay` at each fraction `r` of `total_epochs` (milestone `⌊r·E + 0.5⌋`).
    pub fn with_decay_at_fractions(
        mut self,
        fractions: &[f64],
        total_epochs: f64,
        decay: f64,
    ) -> Self {
        self.milestones = fractions
            .iter()
            .map(|r| (r * total_epochs + 0.5).floor())
            .collect();
        self.milestones.sort_by(f64::total_cmp);
        self.decay = decay;
        self
    }

    /// Multiplies by `decay` at each epoch in `milestones`.
    pub fn with_decay_at_epochs(mut self, milestones: &[f64], decay: f64) -> Self {
        self.milestones = milestones.to_vec();
        self.milestones.sort_by(f64::total_cmp);
        self.decay = decay;
        self
    }

    /// RelaySGD style: `η·min(e/W, 1)` times `decay` at each milestone epoch (warmup from 0).
    pub fn relaysgd(lr: f64, warmup_epochs: f64, milestones: &[f64], decay: f64) -> Self {
        LrSchedule::constant(lr)
            .with_warmup(0.0, warmup_epochs)
            .with_decay_at_epochs(milestones, decay)
    }

    /// QGM style: peak `(η_base/B_base)·B_local·k_scale`, warmup from η_base over W epochs,
    /// `decay` at `⌊r·E + 0.5⌋` for each ratio r.
    #[allow(clippy::too_many_arguments)]
    pub fn qgm(
        base_lr: f64,
        base_batch: usize,
        local_batch: usize,
        k_scale: f64,
        warmup_epochs: f64,
        ratios: &[f64],
        total_epochs: f64,
        decay: f64,
    ) -> Self {
        let peak = base_lr / base_batch as f64 * local_batch as f64 * k_scale;
        LrSchedule::constant(peak)
            .with_warmup(base_lr, warmup_epochs)
            .with_decay_at_fractions(ratios, total_epochs, decay)
    }

    /// Epoch-step style (NGM, MATCHA): `decay` at whole-epoch milestones, no warmup.
    pub fn epoch_step(lr: f64, milestones: &[f64], decay: f64) -> Self {
        let mut s = LrSchedule::constant(lr).with_decay_at_epochs(milestones, decay);
        s.integer_epochs = true;
        s
    }

    /// The rate at fractional epoch `e` (evaluated before the iteration).
    pub fn at(&self, e: f64) -> f64 {
        let warm = if self.warmup_epochs > 0.0 && e < self.warmup_epochs {
            self.warmup_start + (self.peak - self.warmup_start) * e / self.warmup_epochs
        } else {
            self.peak
        };
        let ee = if self.integer_epochs { e.floor() } else { e };
        let passed = self.milestones.iter().filter(|&&m| ee >= m).count();
        warm * self.decay.powi(passed as i32)
    }

    /// Checks that every rate the schedule can produce is finite and non-negative.
    pub fn validate(&self) -> Result<()> {
        if !(self.peak.is_finite() && self.peak > 0.0) {
            return Err(Error::param(
                "lr",
                format!("{} must be finite and > 0", self.peak),
            ));
        }
        if !(self.warmup_start.is_finite() && self.warmup_start >= 0.0) {
            return Err(Error::param(
                "warmup_from",
                format!("{} must be finite and >= 0", self.warmup_start),
            ));
        }
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            return Err(Error::param(
                "warmup_epochs",
                format!("{} must be finite and >= 0", self.warmup_epochs),
            ));
        }
        if !(self.decay.is_finite() && self.decay > 0.0) {
            return Err(Error::param(
                "decay",
                format!("{} must be finite and > 0", self.decay),
            ));
        }
        if self.milestones.iter().any(|m| !m.is_finite() || *m < 0.0) {
            return Err(Error::param(
                "decay_at",
                "milestones must be finite and >= 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_constant() {
        let s = LrSchedule::constant(0.05);
        for e in [0.0, 0.5, 3.0, 1e6] {
            assert_eq!(s.at(e), 0.05);
        }
    }

    #[test]
    fn relaysgd_warms_up_from_zero_and_decays() {
        let s = LrSchedule::relaysgd(0.1, 5.0, &[150.0, 180.0], 0.1);
        assert_eq!(s.at(0.0), 0.0);
        assert!((s.at(2.5) - 0.05).abs() < 1e-15);
        assert_eq!(s.at(5.0), 0.1);
        assert_eq!(s.at(149.99), 0.1);
        assert!((s.at(150.0) - 0.01).abs() < 1e-15);
        assert!((s.at(185.0) - 0.001).abs() < 1e-15);
    }

    #[test]
    fn qgm_scales_up_from_the_base_rate() {
        // README: 0.1/64·32·16 = 0.8 for ring n = 16; milestones ⌊0.5·300+0.5⌋ = 150, 225.
        let s = LrSchedule::qgm(0.1, 64, 32, 16.0, 5.0, &[0.5, 0.75], 300.0, 0.1);
        assert!((s.peak - 0.8).abs() < 1e-12);
        assert_eq!(s.milestones, vec![150.0, 225.0]);
        assert!((s.at(0.0) - 0.1).abs() < 1e-15);
        // η_0·((η_peak/η_0 − 1)·e/W + 1) at e = 1: 0.1·(7·0.2 + 1) = 0.24.
        assert!((s.at(1.0) - 0.24).abs() < 1e-12);
        assert!((s.at(5.0) - 0.8).abs() < 1e-12);
        assert!((s.at(150.0) - 0.08).abs() < 1e-12);
        assert!((s.at(225.0) - 0.008).abs() < 1e-12);
    }

    #[test]
    fn multistep_at_fractions_and_integer_epochs() {
        let s = LrSchedule::constant(1.0).with_decay_at_fractions(&[0.5, 0.75], 10.0, 0.1);
        assert_eq!(s.milestones, vec![5.0, 8.0]);
        assert_eq!(s.at(4.99), 1.0);
        assert!((s.at(5.0) - 0.1).abs() < 1e-15);
        assert!((s.at(8.0) - 0.01).abs() < 1e-15);
        let e = LrSchedule::epoch_step(0.1, &[100.0, 150.0], 0.1);
        assert_eq!(e.at(99.99), 0.1);
        assert!((e.at(100.0) - 0.01).abs() < 1e-15);
        let f = LrSchedule::constant(1.0).with_decay_at_epochs(&[2.5], 0.5);
        assert_eq!(f.at(2.4), 1.0);
        assert_eq!(f.at(2.5), 0.5);
    }

    #[test]
    fn validation_rejects_bad_rates() {
        assert!(LrSchedule::constant(0.0).validate().is_err());
        assert!(LrSchedule::constant(f64::NAN).validate().is_err());
        assert!(LrSchedule::constant(0.1)
            .with_warmup(-1.0, 2.0)
            .validate()
            .is_err());
        assert!(LrSchedule::constant(0.1).validate().is_ok());
    }
}
