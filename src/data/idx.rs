//! IDX files (MNIST, Fashion-MNIST, KMNIST): parsing from bytes, loading from files and
//! directories, raw or gzip (detected by the `1f 8b` magic, not by file name).
//!
//! Layout: a big-endian magic `00 00 TT DD` (TT = element type, 0x08 = unsigned byte; DD = number
//! of dimensions), DD big-endian `u32` dimension sizes, then the elements. Images: 0x00000803
//! (count × rows × cols), labels: 0x00000801 (count).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::gz::{decode_maybe_gzip, read_file};
use super::{DataError, Dataset, ImageShape, Split};

/// Magic number of an IDX image file (unsigned byte, 3 dimensions).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX label file (unsigned byte, 1 dimension).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;
/// Number of classes of every MNIST-family dataset; larger labels are rejected.
pub const IDX_N_CLASSES: usize = 10;
/// IDX element type code of unsigned bytes.
const IDX_U8: u8 = 0x08;

/// Images parsed from an IDX file: `count` images of `rows × cols` bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// `count · rows · cols` pixel bytes.
    pub pixels: Vec<u8>,
}

/// Which member of the MNIST family a directory holds (sets name and normalisation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MnistKind {
    /// Handwritten digits (LeCun et al.).
    Mnist,
    /// Zalando's Fashion-MNIST.
    Fashion,
    /// Kuzushiji-MNIST (cursive Japanese characters).
    Kmnist,
}

impl MnistKind {
    /// Customary normalisation `(mean, std)` of the training set, in units of byte/255.
    pub fn mean_std(self) -> (f32, f32) {
        match self {
            MnistKind::Mnist => (0.1307, 0.3081),
            MnistKind::Fashion => (0.2860, 0.3530),
            MnistKind::Kmnist => (0.1918, 0.3483),
        }
    }

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            MnistKind::Mnist => "MNIST",
            MnistKind::Fashion => "Fashion-MNIST",
            MnistKind::Kmnist => "KMNIST",
        }
    }
}

impl std::fmt::Display for MnistKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MnistKind {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "mnist" => Ok(MnistKind::Mnist),
            "fashion" | "fashion-mnist" | "fashion_mnist" | "fmnist" => Ok(MnistKind::Fashion),
            "kmnist" => Ok(MnistKind::Kmnist),
            _ => Err(DataError::UnknownKind {
                given: s.to_string(),
                accepted: "mnist, fashion, kmnist",
            }),
        }
    }
}

/// Parses the IDX magic and dimension sizes; returns (dims, header length in bytes).
fn parse_header(
    bytes: &[u8],
    name: &str,
    expected_magic: u32,
    what: &'static str,
) -> Result<(Vec<u64>, usize), DataError> {
    let actual = bytes.len() as u64;
    if bytes.len() < 4 {
        return Err(DataError::Truncated {
            file: name.to_string(),
            what: "the 4-byte IDX magic number".into(),
            needed: 4,
            actual,
        });
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(DataError::BadMagic {
            file: name.to_string(),
            found: magic,
            expected: expected_magic,
            what,
        });
    }
    if bytes[2] != IDX_U8 {
        return Err(DataError::WrongDtype {
            file: name.to_string(),
            found: bytes[2],
            expected: IDX_U8,
        });
    }
    let expected_dims = (expected_magic & 0xff) as u8;
    if bytes[3] != expected_dims {
        return Err(DataError::WrongDims {
            file: name.to_string(),
            found: bytes[3],
            expected: expected_dims,
            what,
        });
    }
    let ndims = usize::from(expected_dims);
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(DataError::Truncated {
            file: name.to_string(),
            what: format!("the IDX header ({ndims} dimension sizes)"),
            needed: header as u64,
            actual,
        });
    }
    let dims = (0..ndims)
        .map(|k| {
            let o = 4 + 4 * k;
            u64::from(u32::from_be_bytes([
                bytes[o],
                bytes[o + 1],
                bytes[o + 2],
                bytes[o + 3],
            ]))
        })
        .collect();
    Ok((dims, header))
}

/// Checks that the payload after the header is exactly `needed` bytes (before any allocation).
fn check_payload(
    bytes: &[u8],
    header: usize,
    needed: Option<u64>,
    name: &str,
    what: String,
) -> Result<(), DataError> {
    let actual = bytes.len() as u64;
    let total = needed.and_then(|n| n.checked_add(header as u64));
    match total {
        Some(total) if total == actual => Ok(()),
        Some(total) if total < actual => Err(DataError::TrailingBytes {
            file: name.to_string(),
            expected: total,
            extra: actual - total,
        }),
        _ => Err(DataError::Truncated {
            file: name.to_string(),
            what,
            needed: total.unwrap_or(u64::MAX),
            actual,
        }),
    }
}

/// Parses an IDX image file (raw or gzip) held in memory; `name` labels errors.
pub fn parse_idx_images(bytes: &[u8], name: &str) -> Result<IdxImages, DataError> {
    let bytes = decode_maybe_gzip(bytes, name)?;
    let (dims, header) = parse_header(&bytes, name, IDX_IMAGES_MAGIC, "an image file")?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    for (v, what) in [
        (count, "the image count"),
        (rows, "the image height"),
        (cols, "the image width"),
    ] {
        if v == 0 {
            return Err(DataError::Empty {
                file: name.to_string(),
                what,
            });
        }
    }
    let needed = count.checked_mul(rows).and_then(|x| x.checked_mul(cols));
    check_payload(
        &bytes,
        header,
        needed,
        name,
        format!("{count} images of {rows}×{cols} bytes"),
    )?;
    // The payload length now equals count·rows·cols, so every product below fits in usize.
    Ok(IdxImages {
        count: count as usize,
        rows: rows as usize,
        cols: cols as usize,
        pixels: bytes[header..].to_vec(),
    })
}

/// Parses an IDX label file (raw or gzip) held in memory; labels must be `< 10`.
pub fn parse_idx_labels(bytes: &[u8], name: &str) -> Result<Vec<u32>, DataError> {
    let bytes = decode_maybe_gzip(bytes, name)?;
    let (dims, header) = parse_header(&bytes, name, IDX_LABELS_MAGIC, "a label file")?;
    let count = dims[0];
    if count == 0 {
        return Err(DataError::Empty {
            file: name.to_string(),
            what: "the label count",
        });
    }
    check_payload(
        &bytes,
        header,
        Some(count),
        name,
        format!("{count} labels of 1 byte"),
    )?;
    let payload = &bytes[header..];
    if let Some((index, &label)) = payload
        .iter()
        .enumerate()
        .find(|(_, &l)| usize::from(l) >= IDX_N_CLASSES)
    {
        return Err(DataError::LabelOutOfRange {
            file: name.to_string(),
            index,
            label: u32::from(label),
            n_classes: IDX_N_CLASSES,
        });
    }
    Ok(payload.iter().map(|&l| u32::from(l)).collect())
}

/// Loads an IDX image file (raw or gzip).
pub fn load_idx_images(path: impl AsRef<Path>) -> Result<IdxImages, DataError> {
    let path = path.as_ref();
    parse_idx_images(&read_file(path)?, &path.display().to_string())
}

/// Loads an IDX label file (raw or gzip).
pub fn load_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u32>, DataError> {
    let path = path.as_ref();
    parse_idx_labels(&read_file(path)?, &path.display().to_string())
}

/// Builds a dataset from parsed images and labels; the counts must agree.
pub(crate) fn idx_dataset(
    images: IdxImages,
    labels: Vec<u32>,
    images_name: &str,
    labels_name: &str,
) -> Result<Dataset, DataError> {
    if images.count != labels.len() {
        return Err(DataError::CountMismatch {
            images: images_name.to_string(),
            labels: labels_name.to_string(),
            n_images: images.count,
            n_labels: labels.len(),
        });
    }
    let shape = ImageShape {
        channels: 1,
        height: images.rows,
        width: images.cols,
    };
    let ds = Dataset::new(
        images_name,
        images.pixels,
        labels,
        images.rows * images.cols,
        IDX_N_CLASSES,
    )?
    .with_shape(shape)?;
    let (mean, std) = ds.pixel_stats();
    let std = if std > 0.0 { std } else { 1.0 };
    ds.with_normalization(mean, std)
}

/// Loads an IDX image file and its label file as one dataset (10 classes, 1 channel).
///
/// Normalisation constants are the pixel mean/std of these images; [`load_mnist_dir`] uses the
/// customary constants of the dataset kind instead.
pub fn load_idx_pair(
    images_path: impl AsRef<Path>,
    labels_path: impl AsRef<Path>,
) -> Result<Dataset, DataError> {
    let (ip, lp) = (images_path.as_ref(), labels_path.as_ref());
    let images = load_idx_images(ip)?;
    let labels = load_idx_labels(lp)?;
    idx_dataset(
        images,
        labels,
        &ip.display().to_string(),
        &lp.display().to_string(),
    )
}

/// Candidate file names for one IDX file of a split (`images` or `labels`).
fn idx_candidates(split: Split, what: &str) -> Vec<String> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let ndim = if what == "images" { 3 } else { 1 };
    let mut out = Vec::new();
    for sep in ['-', '.'] {
        for ext in ["", ".gz"] {
            out.push(format!("{prefix}-{what}{sep}idx{ndim}-ubyte{ext}"));
        }
    }
    out
}

/// Returns the first existing `dir/candidate`, or a [`DataError::MissingFile`] listing them all.
pub(crate) fn find_first(
    dir: &Path,
    candidates: &[String],
    what: String,
) -> Result<PathBuf, DataError> {
    candidates
        .iter()
        .map(|c| dir.join(c))
        .find(|p| p.is_file())
        .ok_or_else(|| DataError::MissingFile {
            dir: dir.to_path_buf(),
            what,
            tried: candidates.to_vec(),
        })
}

/// Loads a split of an MNIST-family dataset from a directory of standard IDX files.
///
/// Looks for `train-images-idx3-ubyte` / `train-labels-idx1-ubyte` (train) or
/// `t10k-images-idx3-ubyte` / `t10k-labels-idx1-ubyte` (test), each optionally with `.gz`
/// (and the `train-images.idx3-ubyte` spelling). Sets the kind's customary normalisation.
pub fn load_mnist_dir(
    dir: impl AsRef<Path>,
    split: Split,
    kind: MnistKind,
) -> Result<Dataset, DataError> {
    let dir = dir.as_ref();
    let images = find_first(
        dir,
        &idx_candidates(split, "images"),
        format!("{kind} {split} image file"),
    )?;
    let labels = find_first(
        dir,
        &idx_candidates(split, "labels"),
        format!("{kind} {split} label file"),
    )?;
    let (mean, std) = kind.mean_std();
    Ok(load_idx_pair(&images, &labels)?
        .with_normalization(mean, std)?
        .with_name(format!("{kind} {split} ({})", dir.display())))
}

/// Directory of the MNIST files: `$SWARMGRAD_MNIST_DIR` if set, else the first existing of
/// `../shared/data/mnist` and `../../shared/data/mnist` (relative to the current directory).
pub fn mnist_dir_from_env() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SWARMGRAD_MNIST_DIR") {
        return Some(PathBuf::from(dir));
    }
    ["../shared/data/mnist", "../../shared/data/mnist"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
}

/// Test helpers that build IDX files in memory.
#[cfg(test)]
pub(crate) mod testutil {
    /// An IDX image file with the given header fields and pixels.
    pub fn images_bytes(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, 3];
        for d in [count, rows, cols] {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(pixels);
        v
    }

    /// An IDX label file with the given labels.
    pub fn labels_bytes(labels: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, 1];
        v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        v.extend_from_slice(labels);
        v
    }

    /// A fresh empty temporary directory for one test.
    pub fn temp_dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "swarmgrad-data-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create temp dir");
        d
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use crate::data::gz::gzip;

    fn pixels(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 256) as u8).collect()
    }

    #[test]
    fn parses_valid_images_and_labels_raw_and_gzip() {
        let px = pixels(3 * 4 * 5);
        let raw = images_bytes(3, 4, 5, &px);
        for bytes in [raw.clone(), gzip(&raw)] {
            let im = parse_idx_images(&bytes, "im").unwrap();
            assert_eq!((im.count, im.rows, im.cols), (3, 4, 5));
            assert_eq!(im.pixels, px);
        }
        let lb = labels_bytes(&[7, 2, 1, 0, 9]);
        for bytes in [lb.clone(), gzip(&lb)] {
            assert_eq!(parse_idx_labels(&bytes, "lb").unwrap(), vec![7, 2, 1, 0, 9]);
        }
    }

    #[test]
    fn every_header_problem_is_a_typed_error_naming_the_file() {
        let px = pixels(2 * 3 * 3);
        let good = images_bytes(2, 3, 3, &px);
        let name = "my/images.idx";
        let check = |bytes: &[u8], pred: &dyn Fn(&DataError) -> bool| {
            let err = parse_idx_images(bytes, name).unwrap_err();
            assert!(pred(&err), "unexpected error {err:?}");
            assert!(err.to_string().contains(name), "{err}");
        };
        check(&good[..3], &|e| {
            matches!(e, DataError::Truncated { needed: 4, .. })
        });
        check(&good[..10], &|e| {
            matches!(e, DataError::Truncated { needed: 16, .. })
        });
        check(&good[..good.len() - 1], &|e| {
            matches!(
                e,
                DataError::Truncated {
                    needed: 34,
                    actual: 33,
                    ..
                }
            )
        });
        let mut long = good.clone();
        long.push(0);
        check(&long, &|e| {
            matches!(e, DataError::TrailingBytes { extra: 1, .. })
        });
        let mut bad = good.clone();
        bad[0] = 1;
        check(&bad, &|e| {
            matches!(
                e,
                DataError::BadMagic {
                    found: 0x0100_0803,
                    ..
                }
            )
        });
        let mut bad = good.clone();
        bad[2] = 0x0d; // float
        check(&bad, &|e| {
            matches!(e, DataError::WrongDtype { found: 0x0d, .. })
        });
        let mut bad = good.clone();
        bad[3] = 2;
        check(&bad, &|e| {
            matches!(
                e,
                DataError::WrongDims {
                    found: 2,
                    expected: 3,
                    ..
                }
            )
        });
        check(&images_bytes(0, 3, 3, &[]), &|e| {
            matches!(e, DataError::Empty { .. })
        });
        check(&images_bytes(2, 0, 3, &[]), &|e| {
            matches!(e, DataError::Empty { .. })
        });
        // A label file where an image file is expected.
        check(&labels_bytes(&[1, 2]), &|e| {
            matches!(e, DataError::WrongDims { found: 1, .. })
        });
    }

    #[test]
    fn absurd_header_sizes_error_without_allocating() {
        // 4e9 images of 28×28 but only 100 payload bytes: must be a Truncated error, quickly.
        let bytes = images_bytes(4_000_000_000, 28, 28, &pixels(100));
        let err = parse_idx_images(&bytes, "huge").unwrap_err();
        match err {
            DataError::Truncated { needed, actual, .. } => {
                assert_eq!(needed, 16 + 4_000_000_000u64 * 784);
                assert_eq!(actual, 116);
            }
            e => panic!("unexpected {e:?}"),
        }
        // u32::MAX in every dimension overflows u64: still a Truncated error.
        let bytes = images_bytes(u32::MAX, u32::MAX, u32::MAX, &[1, 2, 3]);
        assert!(matches!(
            parse_idx_images(&bytes, "overflow"),
            Err(DataError::Truncated {
                needed: u64::MAX,
                ..
            })
        ));
        let mut lb = labels_bytes(&[1, 2, 3]);
        lb[4..8].copy_from_slice(&4_000_000_000u32.to_be_bytes());
        assert!(matches!(
            parse_idx_labels(&lb, "lb"),
            Err(DataError::Truncated { .. })
        ));
    }

    #[test]
    fn label_problems() {
        let err = parse_idx_labels(&labels_bytes(&[1, 2, 10, 3]), "lab").unwrap_err();
        assert!(matches!(
            err,
            DataError::LabelOutOfRange {
                index: 2,
                label: 10,
                n_classes: 10,
                ..
            }
        ));
        assert!(err.to_string().contains("lab"));
        let mut bad = labels_bytes(&[1]);
        bad[3] = 3;
        assert!(matches!(
            parse_idx_labels(&bad, "lab"),
            Err(DataError::WrongDims { .. })
        ));
        assert!(matches!(
            parse_idx_labels(&labels_bytes(&[]), "lab"),
            Err(DataError::Empty { .. })
        ));
    }

    #[test]
    fn files_pairs_and_directories() {
        let dir = temp_dir("idx");
        let px = pixels(4 * 2 * 2);
        std::fs::write(
            dir.join("t10k-images-idx3-ubyte.gz"),
            gzip(&images_bytes(4, 2, 2, &px)),
        )
        .unwrap();
        // Raw file whose name says nothing about compression: detection is by content.
        std::fs::write(
            dir.join("t10k-labels-idx1-ubyte"),
            labels_bytes(&[3, 1, 4, 1]),
        )
        .unwrap();
        let ds = load_mnist_dir(&dir, Split::Test, MnistKind::Fashion).unwrap();
        assert_eq!(ds.len(), 4);
        assert_eq!(ds.dim(), 4);
        assert_eq!(ds.labels(), &[3, 1, 4, 1]);
        assert_eq!(ds.sample(3), &px[12..16]);
        assert_eq!(ds.normalization(), &[(0.2860, 0.3530)]);
        assert_eq!(
            ds.shape(),
            Some(ImageShape {
                channels: 1,
                height: 2,
                width: 2
            })
        );

        // Missing train split: the error lists the names it looked for.
        let err = load_mnist_dir(&dir, Split::Train, MnistKind::Mnist).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::MissingFile { .. }));
        assert!(msg.contains("train-images-idx3-ubyte.gz"), "{msg}");
        assert!(msg.contains("train-images-idx3-ubyte,"), "{msg}");
        assert!(msg.contains(&dir.display().to_string()), "{msg}");

        // Count mismatch between images and labels names both files.
        let lp = dir.join("short-labels");
        std::fs::write(&lp, labels_bytes(&[1, 2, 3])).unwrap();
        let err = load_idx_pair(dir.join("t10k-images-idx3-ubyte.gz"), &lp).unwrap_err();
        assert!(matches!(
            err,
            DataError::CountMismatch {
                n_images: 4,
                n_labels: 3,
                ..
            }
        ));
        assert!(err.to_string().contains("short-labels"));

        // A missing file is an I/O error naming the path.
        let err = load_idx_images(dir.join("nope")).unwrap_err();
        assert!(matches!(err, DataError::Io { .. }));
        assert!(err.to_string().contains("nope"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kind_parsing() {
        assert_eq!("Fashion".parse::<MnistKind>().unwrap(), MnistKind::Fashion);
        assert_eq!("kmnist".parse::<MnistKind>().unwrap(), MnistKind::Kmnist);
        let err = "cifar".parse::<MnistKind>().unwrap_err().to_string();
        assert!(err.contains("mnist, fashion, kmnist"), "{err}");
    }

    /// Loads the real MNIST test set if present (see [`mnist_dir_from_env`]); skipped with a
    /// message when the files are missing unless `SWARMGRAD_REQUIRE_DATA=1`.
    #[test]
    fn real_mnist_test_set() {
        let require = std::env::var("SWARMGRAD_REQUIRE_DATA").as_deref() == Ok("1");
        let dir = mnist_dir_from_env();
        let loaded = match &dir {
            Some(d) => load_mnist_dir(d, Split::Test, MnistKind::Mnist),
            None => Err(DataError::MissingFile {
                dir: PathBuf::from("../shared/data/mnist"),
                what: "MNIST directory (set SWARMGRAD_MNIST_DIR)".into(),
                tried: vec![
                    "../shared/data/mnist".into(),
                    "../../shared/data/mnist".into(),
                ],
            }),
        };
        let ds = match loaded {
            Ok(ds) => ds,
            Err(e @ DataError::MissingFile { .. }) if !require => {
                eprintln!("SKIPPED real_mnist_test_set: MNIST files are missing: {e}");
                return;
            }
            Err(e) => {
                panic!("loading the MNIST test set failed (SWARMGRAD_REQUIRE_DATA={require}): {e}")
            }
        };
        assert_eq!(ds.len(), 10_000);
        assert_eq!(ds.dim(), 784);
        assert_eq!(
            ds.shape(),
            Some(ImageShape {
                channels: 1,
                height: 28,
                width: 28
            })
        );
        assert!(ds.labels().iter().all(|&l| l < 10));
        let h = ds.label_histogram();
        assert_eq!(h.iter().sum::<usize>(), 10_000);
        assert_eq!(
            h,
            vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
        );
        assert_eq!(&ds.labels()[..5], &[7, 2, 1, 0, 4]);
        let (m, s) = ds.pixel_stats();
        assert!((m - 0.1325).abs() < 0.002, "pixel mean {m}");
        assert!((s - 0.3105).abs() < 0.002, "pixel std {s}");
        assert_eq!(ds.normalization(), &[(0.1307, 0.3081)]);
    }
}
