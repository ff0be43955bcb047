//! CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes (1024 R, 1024 G, 1024 B,
//! each 32×32 row-major). Files `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin`.

use std::path::Path;

use super::gz::{decode_maybe_gzip, read_file};
use super::idx::find_first;
use super::{DataError, Dataset, ImageShape, Split};

/// Bytes per CIFAR-10 record: 1 label + 3·32·32 pixels.
pub const CIFAR_RECORD_BYTES: usize = 1 + 3 * 32 * 32;
/// Per-channel normalisation means of CIFAR-10, red, green, blue (byte/255 units; the standard
/// values of the training set).
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
/// Per-channel normalisation standard deviations of CIFAR-10, red, green, blue (byte/255 units).
pub const CIFAR10_STD: [f32; 3] = [0.2470, 0.2435, 0.2616];
/// Number of CIFAR-10 classes.
const CIFAR_CLASSES: usize = 10;
/// Pixel bytes per image.
const CIFAR_PIXELS: usize = CIFAR_RECORD_BYTES - 1;

/// Parses one CIFAR-10 batch (raw or gzip) into `(pixels, labels)`; `name` labels errors.
pub fn parse_cifar_batch(bytes: &[u8], name: &str) -> Result<(Vec<u8>, Vec<u32>), DataError> {
    let bytes = decode_maybe_gzip(bytes, name)?;
    if bytes.is_empty() {
        return Err(DataError::Empty {
            file: name.to_string(),
            what: "the file size",
        });
    }
    if bytes.len() % CIFAR_RECORD_BYTES != 0 {
        return Err(DataError::CifarSize {
            file: name.to_string(),
            len: bytes.len() as u64,
            record: CIFAR_RECORD_BYTES as u64,
        });
    }
    let n = bytes.len() / CIFAR_RECORD_BYTES;
    let mut pixels = Vec::with_capacity(n * CIFAR_PIXELS);
    let mut labels = Vec::with_capacity(n);
    for (index, rec) in bytes.chunks_exact(CIFAR_RECORD_BYTES).enumerate() {
        if usize::from(rec[0]) >= CIFAR_CLASSES {
            return Err(DataError::LabelOutOfRange {
                file: name.to_string(),
                index,
                label: u32::from(rec[0]),
                n_classes: CIFAR_CLASSES,
            });
        }
        labels.push(u32::from(rec[0]));
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok((pixels, labels))
}

/// Builds the CIFAR-10 dataset (shape 3×32×32, per-channel normalisation) from pixels and labels.
fn cifar_dataset(name: String, pixels: Vec<u8>, labels: Vec<u32>) -> Result<Dataset, DataError> {
    Dataset::new(name, pixels, labels, CIFAR_PIXELS, CIFAR_CLASSES)?
        .with_shape(ImageShape {
            channels: 3,
            height: 32,
            width: 32,
        })?
        .with_channel_normalization(&[
            (CIFAR10_MEAN[0], CIFAR10_STD[0]),
            (CIFAR10_MEAN[1], CIFAR10_STD[1]),
            (CIFAR10_MEAN[2], CIFAR10_STD[2]),
        ])
}

/// Loads one CIFAR-10 batch file as a dataset.
pub fn load_cifar_batch(path: impl AsRef<Path>) -> Result<Dataset, DataError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let (pixels, labels) = parse_cifar_batch(&read_file(path)?, &name)?;
    cifar_dataset(name, pixels, labels)
}

/// Loads a CIFAR-10 split from a directory (or its `cifar-10-batches-bin` subdirectory).
///
/// Train: `data_batch_1.bin` … `data_batch_5.bin` concatenated in order; test: `test_batch.bin`.
/// Every batch must exist; a missing one is reported with the names looked for.
pub fn load_cifar_dir(dir: impl AsRef<Path>, split: Split) -> Result<Dataset, DataError> {
    let dir = dir.as_ref();
    let sub = dir.join("cifar-10-batches-bin");
    let base = if sub.is_dir() && !dir.join("test_batch.bin").is_file() {
        sub
    } else {
        dir.to_path_buf()
    };
    let files: Vec<String> = match split {
        Split::Train => (1..=5).map(|k| format!("data_batch_{k}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".to_string()],
    };
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for f in &files {
        let candidates = [f.clone(), format!("{f}.gz")];
        let path = find_first(&base, &candidates, format!("CIFAR-10 {split} batch {f}"))?;
        let (p, l) = parse_cifar_batch(&read_file(&path)?, &path.display().to_string())?;
        pixels.extend_from_slice(&p);
        labels.extend_from_slice(&l);
    }
    cifar_dataset(
        format!("CIFAR-10 {split} ({})", base.display()),
        pixels,
        labels,
    )
}

/// Test helper: a CIFAR batch of the given labels with deterministic pixels.
#[cfg(test)]
pub(crate) fn cifar_bytes(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(labels.len() * CIFAR_RECORD_BYTES);
    for (i, &l) in labels.iter().enumerate() {
        v.push(l);
        v.extend((0..CIFAR_PIXELS).map(|k| ((k * 7 + i * 13) % 256) as u8));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::gz::gzip;
    use crate::data::idx::testutil::temp_dir;

    #[test]
    fn parses_records() {
        let bytes = cifar_bytes(&[3, 9, 0]);
        for b in [bytes.clone(), gzip(&bytes)] {
            let (p, l) = parse_cifar_batch(&b, "batch").unwrap();
            assert_eq!(l, vec![3, 9, 0]);
            assert_eq!(p.len(), 3 * 3072);
            assert_eq!(&p[3072..3072 + 4], &bytes[3073 + 1..3073 + 5]);
        }
    }

    #[test]
    fn bad_sizes_and_labels() {
        let bytes = cifar_bytes(&[1, 2]);
        let err = parse_cifar_batch(&bytes[..bytes.len() - 5], "b.bin").unwrap_err();
        assert!(
            matches!(
                err,
                DataError::CifarSize {
                    len: 6141,
                    record: 3073,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("b.bin"));
        assert!(matches!(
            parse_cifar_batch(&[], "e"),
            Err(DataError::Empty { .. })
        ));
        let mut bad = bytes.clone();
        bad[3073] = 10;
        assert!(matches!(
            parse_cifar_batch(&bad, "b"),
            Err(DataError::LabelOutOfRange {
                index: 1,
                label: 10,
                ..
            })
        ));
    }

    #[test]
    fn directory_loading() {
        let dir = temp_dir("cifar");
        let sub = dir.join("cifar-10-batches-bin");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("test_batch.bin"), cifar_bytes(&[4, 5, 6])).unwrap();
        for k in 1..=4 {
            std::fs::write(
                sub.join(format!("data_batch_{k}.bin")),
                cifar_bytes(&[k as u8]),
            )
            .unwrap();
        }
        let test = load_cifar_dir(&dir, Split::Test).unwrap();
        assert_eq!(test.len(), 3);
        assert_eq!(test.dim(), 3072);
        assert_eq!(test.labels(), &[4, 5, 6]);
        let per_channel: Vec<(f32, f32)> = CIFAR10_MEAN.into_iter().zip(CIFAR10_STD).collect();
        assert_eq!(test.normalization(), &per_channel[..]);
        let err = load_cifar_dir(&dir, Split::Train).unwrap_err();
        assert!(err.to_string().contains("data_batch_5.bin"), "{err}");
        std::fs::write(sub.join("data_batch_5.bin"), cifar_bytes(&[5, 5])).unwrap();
        let train = load_cifar_dir(&dir, Split::Train).unwrap();
        assert_eq!(train.labels(), &[1, 2, 3, 4, 5, 5]);
        let one = load_cifar_batch(sub.join("test_batch.bin")).unwrap();
        assert_eq!(one.features(), test.features());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
