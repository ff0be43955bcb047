//! Transparent gzip: a byte buffer starting with the gzip magic `1f 8b` is decompressed, anything
//! else is passed through (detection by content, never by file name).

use std::borrow::Cow;
use std::io::Read;

use super::DataError;

/// Largest decompressed size accepted from one gzip stream (2 GiB; MNIST train images are 47 MB).
pub const MAX_DECOMPRESSED_BYTES: u64 = 1 << 31;

/// Decompresses `bytes` if they start with the gzip magic, else borrows them unchanged.
///
/// `name` only labels errors. Concatenated gzip members are all decoded.
pub fn decode_maybe_gzip<'a>(bytes: &'a [u8], name: &str) -> Result<Cow<'a, [u8]>, DataError> {
    decode_with_limit(bytes, name, MAX_DECOMPRESSED_BYTES)
}

/// [`decode_maybe_gzip`] with an explicit decompressed-size limit.
pub(crate) fn decode_with_limit<'a>(
    bytes: &'a [u8],
    name: &str,
    limit: u64,
) -> Result<Cow<'a, [u8]>, DataError> {
    if !is_gzip(bytes) {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut out = Vec::new();
    let decoder = flate2::read::MultiGzDecoder::new(bytes);
    // Read one byte past the limit so that "exactly at the limit" and "over it" are told apart.
    decoder
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| DataError::Gzip {
            file: name.to_string(),
            message: e.to_string(),
        })?;
    if out.len() as u64 > limit {
        return Err(DataError::DecompressedTooLarge {
            file: name.to_string(),
            limit,
        });
    }
    Ok(Cow::Owned(out))
}

/// True if `bytes` start with the gzip magic number.
pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

/// Reads a whole file, mapping I/O failures to [`DataError::Io`] naming the path.
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Gzip-compresses `bytes` (test helper).
#[cfg(test)]
pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes_pass_through_borrowed() {
        let data = [0u8, 0, 8, 3, 1, 2, 3];
        let out = decode_maybe_gzip(&data, "x").unwrap();
        assert!(matches!(out, Cow::Borrowed(_)));
        assert_eq!(&*out, &data);
    }

    #[test]
    fn gzip_round_trip_detected_by_magic() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let z = gzip(&data);
        assert_eq!(&z[..2], &[0x1f, 0x8b]);
        let out = decode_maybe_gzip(&z, "x.gz").unwrap();
        assert_eq!(&*out, &data[..]);
    }

    #[test]
    fn truncated_gzip_is_a_typed_error_naming_the_file() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 13 % 256) as u8).collect();
        let z = gzip(&data);
        let err = decode_maybe_gzip(&z[..z.len() / 2], "images.gz").unwrap_err();
        assert!(matches!(err, DataError::Gzip { .. }), "{err}");
        assert!(err.to_string().contains("images.gz"), "{err}");
    }

    #[test]
    fn decompression_limit_is_enforced() {
        let data = vec![0u8; 10_000];
        let z = gzip(&data);
        let err = decode_with_limit(&z, "bomb.gz", 9_999).unwrap_err();
        assert!(
            matches!(err, DataError::DecompressedTooLarge { limit: 9_999, .. }),
            "{err}"
        );
        assert_eq!(
            decode_with_limit(&z, "ok.gz", 10_000).unwrap().len(),
            10_000
        );
    }
}
