//! Fuzz-style property test of every parser: random byte strings and mutated valid IDX/CIFAR
//! files (truncated, bytes flipped, header counts changed, gzip or not). Each case must return
//! `Ok` with a consistent result or a typed `Err`; a panic fails the test (no `catch_unwind`).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::cifar::cifar_bytes;
use super::gz::gzip;
use super::idx::idx_dataset;
use super::idx::testutil::{images_bytes, labels_bytes, temp_dir};
use super::*;

/// Number of fuzz cases.
const CASES: usize = 4000;

/// A random valid IDX image file (small) and a matching label file.
fn valid_idx(rng: &mut ChaCha8Rng) -> (Vec<u8>, Vec<u8>) {
    let count = rng.random_range(1..12u32);
    let rows = rng.random_range(1..9u32);
    let cols = rng.random_range(1..9u32);
    let px: Vec<u8> = (0..count * rows * cols).map(|_| rng.random()).collect();
    let labels: Vec<u8> = (0..count).map(|_| rng.random_range(0..10)).collect();
    (images_bytes(count, rows, cols, &px), labels_bytes(&labels))
}

/// A random valid CIFAR batch of 1..4 records.
fn valid_cifar(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let n = rng.random_range(1..4usize);
    let labels: Vec<u8> = (0..n).map(|_| rng.random_range(0..10)).collect();
    cifar_bytes(&labels)
}

/// Applies one random mutation to `bytes`.
fn mutate(rng: &mut ChaCha8Rng, mut bytes: Vec<u8>, header_dims: usize) -> Vec<u8> {
    match rng.random_range(0..6) {
        // Truncate at a random length.
        0 => {
            let len = rng.random_range(0..=bytes.len());
            bytes.truncate(len);
        }
        // Flip random bytes.
        1 => {
            for _ in 0..rng.random_range(1..6) {
                if !bytes.is_empty() {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] ^= rng.random_range(1..=255u8);
                }
            }
        }
        // Change a header count (absurd, zero, off by one, random).
        2 if header_dims > 0 && bytes.len() >= 4 + 4 * header_dims => {
            let d = rng.random_range(0..header_dims);
            let o = 4 + 4 * d;
            let old = u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
            let new = match rng.random_range(0..5) {
                0 => 4_000_000_000,
                1 => 0,
                2 => old.wrapping_add(1),
                3 => old.wrapping_sub(1),
                _ => rng.random(),
            };
            bytes[o..o + 4].copy_from_slice(&new.to_be_bytes());
        }
        // Append garbage.
        3 => {
            for _ in 0..rng.random_range(1..20) {
                bytes.push(rng.random());
            }
        }
        // Flip bits of the magic / type / dims bytes.
        4 if bytes.len() >= 4 => {
            let i = rng.random_range(0..4);
            bytes[i] ^= 1 << rng.random_range(0..8);
        }
        // Leave valid.
        _ => {}
    }
    bytes
}

/// Runs every parser on `bytes`, checking consistency of any `Ok`; returns how many were `Ok`.
fn run_all_parsers(bytes: &[u8], labels_bytes: Option<&[u8]>) -> usize {
    let mut ok = 0;
    let images = parse_idx_images(bytes, "fuzz-images");
    if let Ok(im) = &images {
        assert!(im.count > 0 && im.rows > 0 && im.cols > 0);
        assert_eq!(im.pixels.len(), im.count * im.rows * im.cols);
        ok += 1;
    }
    match parse_idx_labels(bytes, "fuzz-labels") {
        Ok(l) => {
            assert!(!l.is_empty());
            assert!(l.iter().all(|&x| x < 10));
            ok += 1;
        }
        Err(e) => assert!(e.to_string().contains("fuzz-labels"), "{e}"),
    }
    match parse_cifar_batch(bytes, "fuzz-cifar") {
        Ok((p, l)) => {
            assert!(!l.is_empty());
            assert_eq!(p.len(), l.len() * 3072);
            assert!(l.iter().all(|&x| x < 10));
            ok += 1;
        }
        Err(e) => assert!(e.to_string().contains("fuzz-cifar"), "{e}"),
    }
    if let (Ok(im), Some(lb)) = (images, labels_bytes) {
        if let Ok(labels) = parse_idx_labels(lb, "fuzz-labels") {
            let (count, n_labels) = (im.count, labels.len());
            match idx_dataset(im, labels, "fuzz-images", "fuzz-labels") {
                Ok(ds) => {
                    assert_eq!(ds.len(), count);
                    assert_eq!(ds.features().len(), ds.len() * ds.dim());
                    assert!(ds
                        .normalization()
                        .iter()
                        .all(|(m, s)| *s > 0.0 && m.is_finite()));
                }
                Err(DataError::CountMismatch { .. }) => assert_ne!(count, n_labels),
                Err(e) => panic!("unexpected error {e}"),
            }
        }
    }
    ok
}

#[test]
fn parsers_never_panic_on_random_or_mutated_input() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xF022);
    let mut oks = 0;
    let mut kinds = [0usize; 4];
    for _ in 0..CASES {
        let kind = rng.random_range(0..4);
        kinds[kind] += 1;
        let compress = rng.random_bool(0.3);
        let (bytes, companion) = match kind {
            // Random bytes, sometimes with a plausible prefix.
            0 => {
                let len = rng.random_range(0..300);
                let mut b: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                let prefix: &[u8] = match rng.random_range(0..4) {
                    0 => &[0x1f, 0x8b],
                    1 => &[0, 0, 8, 3],
                    2 => &[0, 0, 8, 1],
                    _ => &[],
                };
                b.splice(0..0, prefix.iter().copied());
                (b, None)
            }
            1 => {
                let (im, lb) = valid_idx(&mut rng);
                (mutate(&mut rng, im, 3), Some(lb))
            }
            2 => {
                let (_, lb) = valid_idx(&mut rng);
                (mutate(&mut rng, lb, 1), None)
            }
            _ => {
                let c = valid_cifar(&mut rng);
                (mutate(&mut rng, c, 0), None)
            }
        };
        // Compress either before mutating (mutations hit the gzip stream) or after.
        let bytes = if compress && rng.random_bool(0.5) {
            gzip(&bytes)
        } else if compress {
            mutate(&mut rng, gzip(&bytes), 0)
        } else {
            bytes
        };
        oks += run_all_parsers(&bytes, companion.as_deref());
    }
    eprintln!("fuzz: {CASES} cases (kinds {kinds:?}), {oks} parser calls returned Ok");
    assert!(oks > 100, "mutations should leave many inputs valid: {oks}");
}

#[test]
fn unmutated_valid_files_round_trip() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..200 {
        let (im, lb) = valid_idx(&mut rng);
        for (a, b) in [(im.clone(), lb.clone()), (gzip(&im), gzip(&lb))] {
            let images = parse_idx_images(&a, "i").unwrap();
            assert_eq!(images.pixels, im[16..]);
            let labels = parse_idx_labels(&b, "l").unwrap();
            assert_eq!(labels.len(), images.count);
        }
        let c = valid_cifar(&mut rng);
        let (p, l) = parse_cifar_batch(&c, "c").unwrap();
        assert_eq!(p.len(), l.len() * 3072);
    }
}

#[test]
fn directory_loaders_survive_mutated_files() {
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let dir = temp_dir("fuzzdir");
    for case in 0..60 {
        let (im, lb) = valid_idx(&mut rng);
        let im = mutate(&mut rng, im, 3);
        let lb = mutate(&mut rng, lb, 1);
        let (im, lb) = if case % 2 == 0 {
            (gzip(&im), gzip(&lb))
        } else {
            (im, lb)
        };
        std::fs::write(dir.join("t10k-images-idx3-ubyte"), &im).unwrap();
        std::fs::write(dir.join("t10k-labels-idx1-ubyte"), &lb).unwrap();
        let cifar = valid_cifar(&mut rng);
        std::fs::write(dir.join("test_batch.bin"), mutate(&mut rng, cifar, 0)).unwrap();
        match load_mnist_dir(&dir, Split::Test, MnistKind::Mnist) {
            Ok(ds) => assert_eq!(ds.features().len(), ds.len() * ds.dim()),
            Err(e) => assert!(e.to_string().contains("t10k-"), "{e}"),
        }
        match load_cifar_dir(&dir, Split::Test) {
            Ok(ds) => assert_eq!(ds.features().len(), ds.len() * 3072),
            Err(e) => assert!(e.to_string().contains("test_batch.bin"), "{e}"),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
