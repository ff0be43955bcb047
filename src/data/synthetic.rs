//! A seeded synthetic classification task that needs no files, and a train/test split helper.
//!
//! Class `k` has a centre `μ_k = s · g_k / √(2·dim)` with `g_k ~ N(0, I)`, so two centres are
//! about `s` (the *separation*) apart in units of the noise; a sample of class `y` is
//! `z = μ_y + ε`, `ε ~ N(0, I)`, quantised to bytes as `clamp(round(128 + 32·z), 0, 255)`. The
//! dataset's mean/std are `128/255` and `32/255`, so normalised features are `≈ z` (roughly
//! standard). Smaller separation = harder; the Bayes classifier is linear (equal covariances).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::{DataError, Dataset};

/// RNG stream of the class centres.
const STREAM_CENTRES: u64 = 1;
/// RNG stream of the samples of [`synthetic`] (and the train part of [`synthetic_train_test`]).
const STREAM_TRAIN: u64 = 2;
/// RNG stream of the test part of [`synthetic_train_test`].
const STREAM_TEST: u64 = 3;
/// Byte value of `z = 0`.
const CENTRE_BYTE: f64 = 128.0;
/// Bytes per unit of `z`.
const BYTES_PER_UNIT: f64 = 32.0;

/// Parameters of the synthetic task.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SyntheticSpec {
    /// Number of samples.
    pub n_samples: usize,
    /// Number of classes (labels are balanced: counts differ by at most 1).
    pub n_classes: usize,
    /// Feature dimension.
    pub dim: usize,
    /// Typical distance between class centres in noise standard deviations (difficulty knob).
    pub separation: f32,
    /// Seed of the centres and samples.
    pub seed: u64,
}

impl Default for SyntheticSpec {
    /// 12 000 samples, 10 classes, 64 features, separation 3 (Bayes accuracy ≈ 0.7), seed 0.
    fn default() -> Self {
        Self {
            n_samples: 12_000,
            n_classes: 10,
            dim: 64,
            separation: 3.0,
            seed: 0,
        }
    }
}

impl SyntheticSpec {
    /// Generates the dataset described by this spec (see [`synthetic`]).
    pub fn generate(&self) -> Result<Dataset, DataError> {
        synthetic(
            self.n_samples,
            self.n_classes,
            self.dim,
            self.separation,
            self.seed,
        )
    }

    /// Generates `n_samples` training and `n_test` test samples with the same centres.
    pub fn generate_train_test(&self, n_test: usize) -> Result<(Dataset, Dataset), DataError> {
        synthetic_train_test(
            self.n_samples,
            n_test,
            self.n_classes,
            self.dim,
            self.separation,
            self.seed,
        )
    }

    /// The class centres in units of the noise (`n_classes × dim`, row-major).
    pub fn centres(&self) -> Result<Vec<f64>, DataError> {
        validate(
            self.n_samples.max(1),
            self.n_classes,
            self.dim,
            self.separation,
        )?;
        Ok(centres(
            self.n_classes,
            self.dim,
            self.separation,
            self.seed,
        ))
    }
}

/// Checks the parameters of the synthetic task.
fn validate(n: usize, n_classes: usize, dim: usize, separation: f32) -> Result<(), DataError> {
    let bad = |m: String| Err(DataError::InvalidSynthetic(m));
    if n == 0 {
        return bad("n_samples is 0".into());
    }
    if n_classes == 0 || n_classes > u32::MAX as usize {
        return bad(format!("n_classes = {n_classes} (need 1..=2^32-1)"));
    }
    if dim == 0 {
        return bad("dim is 0".into());
    }
    if !separation.is_finite() || separation < 0.0 {
        return bad(format!("separation = {separation} (need finite, >= 0)"));
    }
    if n.checked_mul(dim).is_none_or(|b| b > isize::MAX as usize) {
        return bad(format!("{n} samples × {dim} features overflow memory"));
    }
    Ok(())
}

/// Class centres `μ_k = s · g_k / √(2·dim)`, row-major.
fn centres(n_classes: usize, dim: usize, separation: f32, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(STREAM_CENTRES);
    let scale = f64::from(separation) / (2.0 * dim as f64).sqrt();
    (0..n_classes * dim)
        .map(|_| scale * rng.sample::<f64, _>(StandardNormal))
        .collect()
}

/// Draws `n` balanced samples around `centres` from RNG stream `stream` of `seed`.
fn draw(
    name: String,
    centres: &[f64],
    n: usize,
    n_classes: usize,
    dim: usize,
    seed: u64,
    stream: u64,
) -> Result<Dataset, DataError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut labels: Vec<u32> = (0..n).map(|i| (i % n_classes) as u32).collect();
    labels.shuffle(&mut rng);
    let mut features = Vec::with_capacity(n * dim);
    for &y in &labels {
        let mu = &centres[y as usize * dim..(y as usize + 1) * dim];
        for &m in mu {
            let z = m + rng.sample::<f64, _>(StandardNormal);
            let b = (CENTRE_BYTE + BYTES_PER_UNIT * z).round().clamp(0.0, 255.0);
            features.push(b as u8);
        }
    }
    Dataset::new(name, features, labels, dim, n_classes)?.with_normalization(
        (CENTRE_BYTE / 255.0) as f32,
        (BYTES_PER_UNIT / 255.0) as f32,
    )
}

/// Seeded synthetic task: `n_samples` samples of `dim` byte features in `n_classes` balanced
/// Gaussian classes whose centres are about `separation` noise-stds apart (see module docs).
pub fn synthetic(
    n_samples: usize,
    n_classes: usize,
    dim: usize,
    separation: f32,
    seed: u64,
) -> Result<Dataset, DataError> {
    validate(n_samples, n_classes, dim, separation)?;
    let c = centres(n_classes, dim, separation, seed);
    draw(
        format!("synthetic(sep {separation}, seed {seed})"),
        &c,
        n_samples,
        n_classes,
        dim,
        seed,
        STREAM_TRAIN,
    )
}

/// Train and test sets of the same synthetic task (same centres, independent samples); the
/// train set equals `synthetic(n_train, n_classes, dim, separation, seed)`.
pub fn synthetic_train_test(
    n_train: usize,
    n_test: usize,
    n_classes: usize,
    dim: usize,
    separation: f32,
    seed: u64,
) -> Result<(Dataset, Dataset), DataError> {
    validate(n_train, n_classes, dim, separation)?;
    validate(n_test, n_classes, dim, separation)?;
    let c = centres(n_classes, dim, separation, seed);
    let train = draw(
        format!("synthetic(sep {separation}, seed {seed})"),
        &c,
        n_train,
        n_classes,
        dim,
        seed,
        STREAM_TRAIN,
    )?;
    let test = draw(
        format!("synthetic test(sep {separation}, seed {seed})"),
        &c,
        n_test,
        n_classes,
        dim,
        seed,
        STREAM_TEST,
    )?;
    Ok((train, test))
}

/// Splits a dataset at random into (train, test) with `round(test_fraction · N)` test samples
/// (at least 1 each); both keep the original sample order.
pub fn train_test_split(
    ds: &Dataset,
    test_fraction: f64,
    seed: u64,
) -> Result<(Dataset, Dataset), DataError> {
    let n = ds.len();
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(DataError::InvalidDataset {
            name: ds.name().to_string(),
            reason: format!("test fraction {test_fraction} must be strictly between 0 and 1"),
        });
    }
    if n < 2 {
        return Err(DataError::InvalidDataset {
            name: ds.name().to_string(),
            reason: format!("cannot split {n} samples into train and test"),
        });
    }
    let n_test = ((n as f64 * test_fraction).round() as usize).clamp(1, n - 1);
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let (test, train) = perm.split_at_mut(n_test);
    test.sort_unstable();
    train.sort_unstable();
    Ok((ds.subset(train)?, ds.subset(test)?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Accuracy of the nearest-centre rule with the given centres (in normalised units).
    fn nearest_centre_accuracy(ds: &Dataset, centres: &[f64]) -> f64 {
        let d = ds.dim();
        let mut x = vec![0.0f32; d];
        let mut correct = 0;
        for i in 0..ds.len() {
            ds.normalized_into(i, &mut x).unwrap();
            let best = (0..ds.n_classes())
                .map(|k| {
                    let c = &centres[k * d..(k + 1) * d];
                    let dist: f64 = x
                        .iter()
                        .zip(c)
                        .map(|(&a, &b)| (f64::from(a) - b).powi(2))
                        .sum();
                    (dist, k)
                })
                .fold((f64::INFINITY, 0), |a, b| if b.0 < a.0 { b } else { a })
                .1;
            correct += usize::from(best as u32 == ds.label(i));
        }
        correct as f64 / ds.len() as f64
    }

    /// Trains softmax regression with plain SGD on `train` and returns test accuracy.
    pub(crate) fn softmax_regression_accuracy(
        train: &Dataset,
        test: &Dataset,
        epochs: usize,
    ) -> f64 {
        let (d, c) = (train.dim(), train.n_classes());
        let mut w = vec![0.0f32; c * (d + 1)];
        let mut x = vec![0.0f32; d];
        let mut logits = vec![0.0f32; c];
        let lr = 0.05f32;
        for _ in 0..epochs {
            for i in 0..train.len() {
                train.normalized_into(i, &mut x).unwrap();
                for k in 0..c {
                    let row = &w[k * (d + 1)..(k + 1) * (d + 1)];
                    logits[k] = row[d] + row[..d].iter().zip(&x).map(|(a, b)| a * b).sum::<f32>();
                }
                let m = logits.iter().cloned().fold(f32::MIN, f32::max);
                let z: f32 = logits.iter().map(|l| (l - m).exp()).sum();
                for k in 0..c {
                    let p = (logits[k] - m).exp() / z;
                    let g = p - f32::from(u8::from(k as u32 == train.label(i)));
                    let row = &mut w[k * (d + 1)..(k + 1) * (d + 1)];
                    for (wj, xj) in row[..d].iter_mut().zip(&x) {
                        *wj -= lr * g * xj;
                    }
                    row[d] -= lr * g;
                }
            }
        }
        let mut correct = 0;
        for i in 0..test.len() {
            test.normalized_into(i, &mut x).unwrap();
            let pred = (0..c)
                .map(|k| {
                    let row = &w[k * (d + 1)..(k + 1) * (d + 1)];
                    row[d] + row[..d].iter().zip(&x).map(|(a, b)| a * b).sum::<f32>()
                })
                .enumerate()
                .fold((0, f32::MIN), |a, b| if b.1 > a.1 { b } else { a })
                .0;
            correct += usize::from(pred as u32 == test.label(i));
        }
        correct as f64 / test.len() as f64
    }

    #[test]
    fn shape_balance_and_normalisation() {
        let ds = synthetic(1003, 10, 16, 3.0, 5).unwrap();
        assert_eq!(ds.len(), 1003);
        assert_eq!(ds.dim(), 16);
        assert_eq!(ds.features().len(), 1003 * 16);
        let h = ds.label_histogram();
        assert_eq!(h.iter().sum::<usize>(), 1003);
        assert!(h.iter().all(|&c| c == 100 || c == 101), "{h:?}");
        // Normalised features are roughly standard.
        let mut x = vec![0.0; 16];
        let (mut s, mut s2, mut n) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..ds.len() {
            ds.normalized_into(i, &mut x).unwrap();
            for &v in &x {
                s += f64::from(v);
                s2 += f64::from(v) * f64::from(v);
                n += 1.0;
            }
        }
        let mean = s / n;
        let std = (s2 / n - mean * mean).sqrt();
        assert!(mean.abs() < 0.2, "mean {mean}");
        assert!((0.85..1.4).contains(&std), "std {std}");
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let a = synthetic(200, 4, 8, 2.0, 1).unwrap();
        let b = synthetic(200, 4, 8, 2.0, 1).unwrap();
        let c = synthetic(200, 4, 8, 2.0, 2).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.features(), c.features());
        let (train, test) = synthetic_train_test(200, 50, 4, 8, 2.0, 1).unwrap();
        assert_eq!(train, a);
        assert_eq!(test.len(), 50);
        assert_ne!(&test.features()[..8 * 50], &a.features()[..8 * 50]);
    }

    #[test]
    fn invalid_parameters_are_errors() {
        assert!(synthetic(0, 10, 8, 1.0, 0).is_err());
        assert!(synthetic(10, 0, 8, 1.0, 0).is_err());
        assert!(synthetic(10, 10, 0, 1.0, 0).is_err());
        assert!(synthetic(10, 10, 8, f32::NAN, 0).is_err());
        assert!(synthetic(10, 10, 8, -1.0, 0).is_err());
        assert!(synthetic(usize::MAX / 2, 10, 8, 1.0, 0).is_err());
    }

    #[test]
    fn difficulty_is_controlled_by_separation() {
        let spec = SyntheticSpec {
            n_samples: 2000,
            ..SyntheticSpec::default()
        };
        let mut accs = Vec::new();
        for sep in [0.0f32, 1.5, 3.0, 6.0] {
            let s = SyntheticSpec {
                separation: sep,
                ..spec
            };
            let ds = s.generate().unwrap();
            accs.push(nearest_centre_accuracy(&ds, &s.centres().unwrap()));
        }
        eprintln!("nearest-true-centre accuracy for separation 0, 1.5, 3, 6: {accs:?}");
        assert!(accs[0] < 0.15, "{accs:?}");
        assert!(accs.windows(2).all(|w| w[0] < w[1]), "{accs:?}");
        assert!(
            (0.6..0.92).contains(&accs[2]),
            "default too easy/hard: {accs:?}"
        );
        assert!(accs[3] > 0.97, "{accs:?}");
    }

    #[test]
    fn default_task_is_learnable_but_not_trivial() {
        let spec = SyntheticSpec {
            n_samples: 4000,
            ..SyntheticSpec::default()
        };
        let (train, test) = spec.generate_train_test(2000).unwrap();
        let acc = softmax_regression_accuracy(&train, &test, 5);
        eprintln!("softmax regression test accuracy on the default synthetic task: {acc:.3}");
        assert!(
            acc > 0.5,
            "linear model should clearly beat chance (0.1): {acc}"
        );
        assert!(
            acc < 0.95,
            "default task should not be trivially separable: {acc}"
        );
    }

    #[test]
    fn split_helper() {
        let ds = synthetic(100, 5, 4, 2.0, 0).unwrap();
        let (tr, te) = train_test_split(&ds, 0.2, 9).unwrap();
        assert_eq!((tr.len(), te.len()), (80, 20));
        let mut h = tr.label_histogram();
        for (a, b) in h.iter_mut().zip(te.label_histogram()) {
            *a += b;
        }
        assert_eq!(h, ds.label_histogram());
        assert_eq!(train_test_split(&ds, 0.2, 9).unwrap().1, te);
        assert!(train_test_split(&ds, 0.0, 9).is_err());
        assert!(train_test_split(&ds, 1.0, 9).is_err());
        assert!(train_test_split(&ds, f64::NAN, 9).is_err());
        let one = ds.subset(&[0]).unwrap();
        assert!(train_test_split(&one, 0.5, 9).is_err());
    }
}
