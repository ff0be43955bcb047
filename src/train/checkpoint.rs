//! Trainer checkpoints: every named state buffer of the algorithm (and the objective's last loss
//! statistics), the algorithm's host-side state, the sampler's position, the step counter, the
//! byte ledger, the metrics rows so far and the configuration, in one file written atomically
//! (temp file + rename).
//!
//! Format: the 8-byte magic `SWGCKPT\0`, a little-endian u32 version, the [`Checkpoint`] in
//! postcard's serde encoding (floats as their IEEE bits, so NaNs and every f64 survive; the host
//! state as JSON text), and a little-endian CRC-32 of everything before it. Reals are stored as
//! f64 so the CPU reference resumes bit for bit; GPU values are f32 widened exactly.

use crate::backend::{Backend, Buf, BufKind};
use crate::error::{Error, Result};
use crate::objective::sampler::SamplerState;
use crate::train::eval::EvalResult;
use crate::train::metrics::MetricsRow;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file's first eight bytes.
pub const MAGIC: &[u8; 8] = b"SWGCKPT\0";
/// The format version this build writes and reads (1: JSON header and hand-made framing).
pub const VERSION: u32 = 2;
/// The file name `--checkpoint-every` writes in the output directory.
pub const FILE_NAME: &str = "checkpoint.bin";

/// The contents of one saved buffer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BufData {
    /// Reals (f32 on the GPU, f64 on the CPU reference), stored as f64.
    Real(Vec<f64>),
    /// Indices.
    Index(Vec<u32>),
}

impl BufData {
    fn len(&self) -> usize {
        match self {
            BufData::Real(v) => v.len(),
            BufData::Index(v) => v.len(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            BufData::Real(_) => "real",
            BufData::Index(_) => "index",
        }
    }
}

/// Everything a trainer needs to continue a run exactly where it stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The run's configuration as JSON (a resume must match it exactly).
    pub config: String,
    /// Steps completed.
    pub step: u64,
    /// Total steps of the run.
    pub total_steps: u64,
    /// Bytes sent by each agent so far.
    pub bytes: Vec<u64>,
    /// The minibatch sampler's position.
    pub sampler: SamplerState,
    /// Metrics rows so far.
    pub rows: Vec<MetricsRow>,
    /// The last evaluation.
    pub last: Option<EvalResult>,
    /// Wall-clock seconds spent so far.
    pub wall_s: f64,
    /// Named state buffers (algorithm state first).
    pub buffers: Vec<(String, BufData)>,
    /// The algorithm's host-side state ([`crate::algo::Algo::host_state`]; `Null` if none).
    #[serde(with = "json_text")]
    pub algo_host: serde_json::Value,
}

/// A JSON value as its text: binary formats cannot hold `serde_json::Value`'s self-describing
/// encoding.
mod json_text {
    use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &serde_json::Value, s: S) -> Result<S::Ok, S::Error> {
        v.to_string().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
        serde_json::from_str(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl Checkpoint {
    /// The file contents.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&VERSION.to_le_bytes());
        let mut out = postcard::to_extend(self, out)
            .map_err(|e| Error::param("checkpoint", format!("cannot encode: {e}")))?;
        out.extend_from_slice(&crc32fast::hash(&out).to_le_bytes());
        Ok(out)
    }

    /// Parses file contents; `path` names the file in errors. A truncated or corrupted file, or
    /// one of another format version, is an [`Error::Checkpoint`].
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let fixed = MAGIC.len() + 4;
        if bytes.len() < fixed + 4 {
            return Err(corrupt(path, format!("{} bytes is too short", bytes.len())));
        }
        if &bytes[..8] != MAGIC {
            return Err(corrupt(path, "not a swarmgrad checkpoint (bad magic)"));
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != VERSION {
            return Err(corrupt(
                path,
                format!(
                    "format version {version} is unsupported (this build reads version {VERSION})"
                ),
            ));
        }
        let (body, tail) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != tail {
            return Err(corrupt(path, "checksum mismatch (truncated or corrupted)"));
        }
        match postcard::take_from_bytes::<Checkpoint>(&body[fixed..]) {
            Ok((c, [])) => Ok(c),
            Ok((_, rest)) => Err(corrupt(path, format!("{} trailing bytes", rest.len()))),
            Err(e) => Err(corrupt(path, format!("bad contents: {e}"))),
        }
    }

    /// Writes the checkpoint atomically: a temp file in the same directory, synced, then renamed.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes()?;
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| Error::Io { path: p, source }
        };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(d) = dir {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        let name = path.file_name().ok_or_else(|| {
            Error::param("checkpoint", format!("{} is not a file", path.display()))
        })?;
        let tmp: PathBuf = path.with_file_name(format!(
            ".{}.tmp{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(&tmp)(e));
        }
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(path)(e)
        })
    }

    /// Reads and checks a checkpoint file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Checkpoint::from_bytes(&bytes, path)
    }
}

/// Reads named buffers from a backend.
pub fn read_buffers(
    be: &mut dyn Backend,
    named: &[(String, Buf)],
) -> Result<Vec<(String, BufData)>> {
    named
        .iter()
        .map(|(name, b)| {
            Ok((
                name.clone(),
                match b.kind {
                    BufKind::U32 => BufData::Index(be.read_u32(*b)?),
                    _ => BufData::Real(be.read_f32(*b)?),
                },
            ))
        })
        .collect()
}

/// Refuses a diverged state: the first non-finite real of `buffers` is an [`Error::Diverged`]
/// at `step`, naming the agent whose slab holds it (agent 0 for a buffer not split by agent).
pub fn check_finite(buffers: &[(String, BufData)], agents: usize, step: u64) -> Result<()> {
    for (_, data) in buffers {
        if let BufData::Real(v) = data {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                let slab = if agents > 0 && v.len() % agents == 0 {
                    v.len() / agents
                } else {
                    v.len()
                };
                return Err(Error::Diverged {
                    step,
                    agent: i / slab.max(1),
                    what: "saved state",
                    value: v[i],
                });
            }
        }
    }
    Ok(())
}

fn same_bits(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Writes saved contents into named buffers, exactly (`write_f64`: the CPU reference keeps f64,
/// a GPU saved f32 values to begin with). The result is read back and compared bit for bit.
/// Names, kinds and lengths must match.
pub fn write_buffers(
    be: &mut dyn Backend,
    named: &[(String, Buf)],
    saved: &[(String, BufData)],
    path: &Path,
) -> Result<()> {
    let names = |v: Vec<&str>| v.join(", ");
    if named.len() != saved.len() || named.iter().zip(saved).any(|((a, _), (b, _))| a != b) {
        return Err(corrupt(
            path,
            format!(
                "it holds buffers [{}], this run has [{}]",
                names(saved.iter().map(|(n, _)| n.as_str()).collect()),
                names(named.iter().map(|(n, _)| n.as_str()).collect())
            ),
        ));
    }
    for ((name, buf), (_, data)) in named.iter().zip(saved) {
        if data.len() != buf.len || matches!(data, BufData::Index(_)) != (buf.kind == BufKind::U32)
        {
            return Err(corrupt(
                path,
                format!(
                    "buffer {name}: {} {} values, this run has {}",
                    data.len(),
                    data.kind(),
                    buf.len
                ),
            ));
        }
        match data {
            BufData::Index(v) => be.write_u32(*buf, 0, v)?,
            BufData::Real(v) => be.write_f64(*buf, 0, v)?,
        }
    }
    be.flush()?;
    for ((name, buf), (_, data)) in named.iter().zip(saved) {
        let ok = match data {
            BufData::Index(v) => be.read_u32(*buf)? == *v,
            BufData::Real(v) => {
                let got = be.read_f32(*buf)?;
                got.iter().zip(v).all(|(a, b)| same_bits(*a, *b))
            }
        };
        if !ok {
            return Err(corrupt(
                path,
                format!("buffer {name} does not fit this backend's precision"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::reference::ReferenceBackend;

    fn sample() -> Checkpoint {
        Checkpoint {
            config: "{\"a\":1}".into(),
            step: 7,
            total_steps: 20,
            bytes: vec![1, 2, 3],
            sampler: SamplerState {
                order: vec![vec![2, 0, 1], Vec::new()],
                pos: vec![1, u64::MAX],
                word_pos: vec![(0, 16), (1, 2)],
            },
            rows: vec![MetricsRow {
                step: 5,
                train_loss: f64::NAN,
                lr: 0.1,
                ..Default::default()
            }],
            last: Some(EvalResult {
                local_acc: vec![0.5, 0.25],
                worst_agent: 1,
                ..Default::default()
            }),
            wall_s: 1.5,
            buffers: vec![
                ("params".into(), BufData::Real(vec![0.1, -2.0, 1e-300])),
                ("flags".into(), BufData::Index(vec![4, 5])),
            ],
            algo_host: serde_json::json!({"rounds": 3, "lanes": [{"received": [true, false]}]}),
        }
    }

    #[test]
    fn round_trip_and_every_truncation_or_flip_is_a_typed_error() {
        let c = sample();
        let bytes = c.to_bytes().unwrap();
        let back = Checkpoint::from_bytes(&bytes, Path::new("x")).unwrap();
        assert_eq!(back.rows[0].train_loss.to_bits(), f64::NAN.to_bits());
        assert_eq!(back.to_bytes().unwrap(), bytes, "every field survives");
        assert_eq!(
            (back.step, &back.buffers, &back.last, &back.algo_host),
            (c.step, &c.buffers, &c.last, &c.algo_host)
        );
        for cut in [0, 5, 20, bytes.len() / 2, bytes.len() - 1] {
            let e = Checkpoint::from_bytes(&bytes[..cut], Path::new("x")).unwrap_err();
            assert!(matches!(e, Error::Checkpoint { .. }), "{e}");
        }
        for k in [0, 9, 15, 40, bytes.len() - 20, bytes.len() - 1] {
            let mut b = bytes.clone();
            b[k] ^= 0x10;
            let e = Checkpoint::from_bytes(&b, Path::new("x")).unwrap_err();
            assert!(matches!(e, Error::Checkpoint { .. }), "{e}");
        }
        // A file of the previous format (JSON header, version 1) names its version.
        let mut old = bytes.clone();
        old[8..12].copy_from_slice(&1u32.to_le_bytes());
        let e = Checkpoint::from_bytes(&old, Path::new("x")).unwrap_err();
        assert!(
            e.to_string().contains("format version 1 is unsupported"),
            "{e}"
        );
    }

    #[test]
    fn f64_values_are_restored_bit_for_bit_on_the_cpu() {
        let mut be = ReferenceBackend::new();
        let b = be.alloc(BufKind::F32, 5, "p").unwrap();
        let v = vec![
            0.1,
            std::f64::consts::PI,
            -1.0 / 3.0,
            1e-20,
            12345.678901234567,
        ];
        let named = vec![("p".to_string(), b)];
        write_buffers(
            &mut be,
            &named,
            &[("p".into(), BufData::Real(v.clone()))],
            Path::new("x"),
        )
        .unwrap();
        let got = be.read_f32(b).unwrap();
        assert!(got.iter().zip(&v).all(|(a, b)| a.to_bits() == b.to_bits()));
        let e = write_buffers(
            &mut be,
            &named,
            &[("q".into(), BufData::Real(v))],
            Path::new("x"),
        )
        .unwrap_err();
        assert!(matches!(e, Error::Checkpoint { .. }));
    }
}
