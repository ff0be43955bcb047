//! The in-memory classification dataset: `u8` features, `u32` labels, normalisation constants.

use super::DataError;

/// Image layout of a sample's features (channel-major: `c·h·w + y·w + x`), also the geometry
/// of the convolutional layers' activations ([`crate::backend::ConvLayer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ImageShape {
    /// Number of channels (1 for MNIST, 3 for CIFAR-10).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
}

impl ImageShape {
    /// Number of feature bytes per image, `channels·height·width` (`None` on overflow).
    pub fn numel(&self) -> Option<usize> {
        self.channels
            .checked_mul(self.height)
            .and_then(|x| x.checked_mul(self.width))
    }

    /// Scalars per sample, `channels·height·width` (the layer geometries that use it are
    /// bounded by the model's 32-bit parameter and activation checks).
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether the image holds no scalar.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An in-memory classification dataset.
///
/// Features are `len() × dim()` bytes, row-major; feature byte `b` of channel c is used as
/// `(b / 255 − mean_c) / std_c` (the gather kernels do this, see [`Dataset::normalize`]), with
/// one (mean, std) pair for every feature or one per image channel.
/// Invariants (checked by every constructor): `features.len() == labels.len() · dim`, `dim > 0`,
/// every label `< n_classes`, every `std` finite and `> 0`, every `mean` finite,
/// `shape.numel() == dim`, and per-channel pairs only with an image shape of as many channels.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    name: String,
    features: Vec<u8>,
    labels: Vec<u32>,
    dim: usize,
    n_classes: usize,
    shape: Option<ImageShape>,
    /// (mean, std): one pair, or one per channel of `shape`.
    norm: Vec<(f32, f32)>,
}

impl Dataset {
    /// Builds a dataset after checking the invariants; no image shape, mean 0.5, std 0.5.
    pub fn new(
        name: impl Into<String>,
        features: Vec<u8>,
        labels: Vec<u32>,
        dim: usize,
        n_classes: usize,
    ) -> Result<Self, DataError> {
        let name = name.into();
        let invalid = |reason: String| DataError::InvalidDataset {
            name: name.clone(),
            reason,
        };
        if dim == 0 {
            return Err(invalid("feature dimension is 0".into()));
        }
        if n_classes == 0 {
            return Err(invalid("number of classes is 0".into()));
        }
        let expected = labels.len().checked_mul(dim);
        if expected != Some(features.len()) {
            return Err(invalid(format!(
                "{} feature bytes for {} labels of dimension {dim} (expected {})",
                features.len(),
                labels.len(),
                labels.len().saturating_mul(dim)
            )));
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= n_classes)
        {
            return Err(DataError::LabelOutOfRange {
                file: name,
                index,
                label,
                n_classes,
            });
        }
        Ok(Self {
            name,
            features,
            labels,
            dim,
            n_classes,
            shape: None,
            norm: vec![(0.5, 0.5)],
        })
    }

    /// Sets the image shape; its `numel()` must equal `dim()` (and its channels the number of
    /// per-channel normalisation pairs, if there are several).
    pub fn with_shape(mut self, shape: ImageShape) -> Result<Self, DataError> {
        if self.norm.len() > 1 && self.norm.len() != shape.channels {
            return Err(DataError::InvalidDataset {
                name: self.name,
                reason: format!(
                    "{} normalisation channels for a {}-channel image",
                    self.norm.len(),
                    shape.channels
                ),
            });
        }
        if shape.numel() != Some(self.dim) {
            return Err(DataError::InvalidDataset {
                name: self.name,
                reason: format!(
                    "image shape {}×{}×{} does not match feature dimension {}",
                    shape.channels, shape.height, shape.width, self.dim
                ),
            });
        }
        self.shape = Some(shape);
        Ok(self)
    }

    /// Sets one pair of normalisation constants for every feature (`mean` finite, `std` finite
    /// and `> 0`).
    pub fn with_normalization(self, mean: f32, std: f32) -> Result<Self, DataError> {
        self.with_channel_normalization(&[(mean, std)])
    }

    /// Sets the normalisation constants per image channel, `(mean, std)` for each (one pair:
    /// every feature alike). Several pairs need an image shape with that many channels, at most
    /// [`MAX_NORM_CHANNELS`](crate::backend::MAX_NORM_CHANNELS).
    pub fn with_channel_normalization(mut self, pairs: &[(f32, f32)]) -> Result<Self, DataError> {
        let invalid = |name: String, reason: String| DataError::InvalidDataset { name, reason };
        if let Some((mean, std)) = pairs
            .iter()
            .find(|(m, s)| !m.is_finite() || !s.is_finite() || *s <= 0.0)
        {
            return Err(invalid(
                self.name,
                format!("normalisation mean {mean} / std {std} (need finite, std > 0)"),
            ));
        }
        let channels = self.shape.map_or(1, |s| s.channels);
        let n = pairs.len();
        if n == 0 || (n > 1 && n != channels) || n > crate::backend::MAX_NORM_CHANNELS {
            return Err(invalid(
                self.name,
                format!("{n} normalisation pairs for {channels} image channels"),
            ));
        }
        self.norm = pairs.to_vec();
        Ok(self)
    }

    /// Renames the dataset (the name labels errors and summaries).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Dataset name (file or generator it came from).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if the dataset has no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Feature bytes per sample.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of classes (labels are `0..n_classes`).
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Image shape, if the features are an image.
    pub fn shape(&self) -> Option<ImageShape> {
        self.shape
    }

    /// Normalisation (mean, std) in units of byte/255: one pair for every feature, or one per
    /// image channel.
    pub fn normalization(&self) -> &[(f32, f32)] {
        &self.norm
    }

    /// All features, `len() × dim()` bytes, row-major.
    pub fn features(&self) -> &[u8] {
        &self.features
    }

    /// All labels.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Feature bytes of sample `i`; panics if `i >= len()` (like slice indexing).
    pub fn sample(&self, i: usize) -> &[u8] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }

    /// Label of sample `i`; panics if `i >= len()` (like slice indexing).
    pub fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }

    /// Features and label of sample `i`, or `None` if out of range.
    pub fn get(&self, i: usize) -> Option<(&[u8], u32)> {
        let label = *self.labels.get(i)?;
        Some((self.sample(i), label))
    }

    /// The normalised value of byte `b` at feature `f` (< `dim()`), `(b / 255 − mean_c) / std_c`
    /// in the feature's channel c.
    pub fn normalize(&self, f: usize, byte: u8) -> f32 {
        let (mean, std) = self.norm[f / (self.dim / self.norm.len())];
        (f32::from(byte) / 255.0 - mean) / std
    }

    /// Writes the normalised features of sample `i` into `out` (length `dim()`).
    pub fn normalized_into(&self, i: usize, out: &mut [f32]) -> Result<(), DataError> {
        let (x, _) = self.get(i).ok_or(DataError::IndexOutOfRange {
            index: i,
            len: self.len(),
        })?;
        if out.len() != self.dim {
            return Err(DataError::InvalidDataset {
                name: self.name.clone(),
                reason: format!(
                    "output buffer has {} floats, dimension is {}",
                    out.len(),
                    self.dim
                ),
            });
        }
        for (f, (o, &b)) in out.iter_mut().zip(x).enumerate() {
            *o = self.normalize(f, b);
        }
        Ok(())
    }

    /// Number of samples of each class (length `n_classes()`).
    pub fn label_histogram(&self) -> Vec<usize> {
        let mut h = vec![0usize; self.n_classes];
        for &l in &self.labels {
            h[l as usize] += 1;
        }
        h
    }

    /// Label histogram of the samples `indices` (errors on an out-of-range index).
    pub fn histogram_of(&self, indices: &[usize]) -> Result<Vec<usize>, DataError> {
        let mut h = vec![0usize; self.n_classes];
        for &i in indices {
            let &l = self.labels.get(i).ok_or(DataError::IndexOutOfRange {
                index: i,
                len: self.len(),
            })?;
            h[l as usize] += 1;
        }
        Ok(h)
    }

    /// A new dataset of the samples `indices`, in that order (repeats allowed).
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset, DataError> {
        let mut features = Vec::with_capacity(indices.len().saturating_mul(self.dim));
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let (x, l) = self.get(i).ok_or(DataError::IndexOutOfRange {
                index: i,
                len: self.len(),
            })?;
            features.extend_from_slice(x);
            labels.push(l);
        }
        Ok(Dataset {
            name: self.name.clone(),
            features,
            labels,
            dim: self.dim,
            n_classes: self.n_classes,
            shape: self.shape,
            norm: self.norm.clone(),
        })
    }

    /// Mean and standard deviation of all feature bytes in units of byte/255 (0, 0 if empty).
    pub fn pixel_stats(&self) -> (f32, f32) {
        if self.features.is_empty() {
            return (0.0, 0.0);
        }
        let mut counts = [0u64; 256];
        for &b in &self.features {
            counts[b as usize] += 1;
        }
        let n = self.features.len() as f64;
        let mut sum = 0.0f64;
        for (v, &c) in counts.iter().enumerate() {
            sum += c as f64 * v as f64 / 255.0;
        }
        let mean = sum / n;
        let mut var = 0.0f64;
        for (v, &c) in counts.iter().enumerate() {
            let d = v as f64 / 255.0 - mean;
            var += c as f64 * d * d;
        }
        (mean as f32, (var / n).sqrt() as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Dataset {
        // 5 samples of dimension 3, 3 classes.
        let features: Vec<u8> = (0..15u8).map(|i| i * 17).collect();
        Dataset::new("toy", features, vec![2, 0, 1, 2, 2], 3, 3).unwrap()
    }

    #[test]
    fn accessors_and_histogram() {
        let d = toy();
        assert_eq!(d.len(), 5);
        assert!(!d.is_empty());
        assert_eq!(d.sample(1), &[51, 68, 85]);
        assert_eq!(d.label(4), 2);
        assert_eq!(d.label_histogram(), vec![1, 1, 3]);
        assert_eq!(d.histogram_of(&[0, 0, 1]).unwrap(), vec![1, 0, 2]);
        assert!(d.get(5).is_none());
        assert!(matches!(
            d.histogram_of(&[7]),
            Err(DataError::IndexOutOfRange { index: 7, len: 5 })
        ));
    }

    #[test]
    fn subset_copies_rows_in_order() {
        let d = toy();
        let s = d.subset(&[4, 1, 1]).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.labels(), &[2, 0, 0]);
        assert_eq!(s.sample(0), d.sample(4));
        assert_eq!(s.sample(2), d.sample(1));
        assert!(d.subset(&[0, 5]).is_err());
        assert!(d.subset(&[]).unwrap().is_empty());
    }

    #[test]
    fn constructor_rejects_inconsistent_arrays() {
        assert!(Dataset::new("a", vec![0; 5], vec![0, 1], 3, 2).is_err());
        assert!(Dataset::new("a", vec![], vec![], 0, 2).is_err());
        assert!(Dataset::new("a", vec![0; 6], vec![0, 1], 3, 0).is_err());
        let err = Dataset::new("a", vec![0; 6], vec![0, 2], 3, 2).unwrap_err();
        assert!(matches!(
            err,
            DataError::LabelOutOfRange {
                index: 1,
                label: 2,
                ..
            }
        ));
        let d = toy();
        let shape = ImageShape {
            channels: 1,
            height: 2,
            width: 2,
        };
        assert!(d.clone().with_shape(shape).is_err());
        let shape3 = ImageShape {
            channels: 3,
            height: 1,
            width: 1,
        };
        assert_eq!(d.clone().with_shape(shape3).unwrap().shape(), Some(shape3));
        assert!(d.clone().with_normalization(0.1, 0.0).is_err());
        assert!(d.clone().with_normalization(f32::NAN, 1.0).is_err());
    }

    #[test]
    fn normalisation_matches_formula() {
        let d = toy().with_normalization(0.1307, 0.3081).unwrap();
        let mut out = vec![0.0; 3];
        d.normalized_into(2, &mut out).unwrap();
        for (o, &b) in out.iter().zip(d.sample(2)) {
            let want = (b as f32 / 255.0 - 0.1307) / 0.3081;
            assert!((o - want).abs() < 1e-6);
        }
        assert!(d.normalized_into(9, &mut out).is_err());
        assert!(d.normalized_into(0, &mut [0.0; 2]).is_err());
    }

    #[test]
    fn pixel_stats_of_known_bytes() {
        let d = Dataset::new("p", vec![0, 255, 0, 255], vec![0, 0], 2, 1).unwrap();
        let (m, s) = d.pixel_stats();
        assert!((m - 0.5).abs() < 1e-6);
        assert!((s - 0.5).abs() < 1e-6);
    }
}
