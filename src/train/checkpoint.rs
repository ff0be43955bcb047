//! Trainer checkpoints: every named state buffer of the algorithm (and the objective's last loss
//! statistics), the algorithm's host-side state, the sampler's position, the step counter, the
//! byte ledger, the metrics rows so far and the configuration, in one file written atomically
//! (temp file + rename).
//!
//! Format (little endian): the 8-byte magic `SWGCKPT\0`, a u32 version, a u64 header length, the
//! JSON header (floats stored as their bit patterns; `algo_host` may be absent in older files and
//! then reads as `null`), the buffers back to back (reals as f64,
//! indices as u32, in header order), and a u64 FNV-1a checksum of everything before it. Reals are
//! stored as f64 so the CPU reference resumes bit for bit; GPU values are f32 widened exactly.

use crate::backend::{Backend, Buf, BufKind};
use crate::error::{Error, Result};
use crate::objective::sampler::SamplerState;
use crate::train::eval::EvalResult;
use crate::train::metrics::MetricsRow;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The file's first eight bytes.
pub const MAGIC: &[u8; 8] = b"SWGCKPT\0";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// The file name `--checkpoint-every` writes in the output directory.
pub const FILE_NAME: &str = "checkpoint.bin";

/// The contents of one saved buffer.
#[derive(Clone, Debug, PartialEq)]
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
#[derive(Clone, Debug, PartialEq)]
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
    pub algo_host: serde_json::Value,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    config: String,
    step: u64,
    total_steps: u64,
    bytes: Vec<u64>,
    sampler: SamplerState,
    rows: Vec<Vec<u64>>,
    last: Option<LastRecord>,
    wall_s: u64,
    buffers: Vec<BufEntry>,
    #[serde(default)]
    algo_host: serde_json::Value,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct BufEntry {
    name: String,
    kind: String,
    len: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LastRecord {
    values: Vec<u64>,
    worst_agent: u64,
    local_acc: Vec<u64>,
}

fn row_bits(r: &MetricsRow) -> Vec<u64> {
    let f = [
        r.epoch,
        r.lr,
        r.consensus_acc,
        r.consensus_loss,
        r.mean_local_acc,
        r.worst_local_acc,
        r.consensus_distance,
        r.train_loss,
        r.bytes_sent_per_agent,
        r.wall_s,
    ];
    std::iter::once(r.step)
        .chain(f.iter().map(|v| v.to_bits()))
        .collect()
}

fn row_from_bits(b: &[u64]) -> Option<MetricsRow> {
    if b.len() != 11 {
        return None;
    }
    let f = |k: usize| f64::from_bits(b[k]);
    Some(MetricsRow {
        step: b[0],
        epoch: f(1),
        lr: f(2),
        consensus_acc: f(3),
        consensus_loss: f(4),
        mean_local_acc: f(5),
        worst_local_acc: f(6),
        consensus_distance: f(7),
        train_loss: f(8),
        bytes_sent_per_agent: f(9),
        wall_s: f(10),
    })
}

fn last_record(e: &EvalResult) -> LastRecord {
    LastRecord {
        values: [
            e.consensus_acc,
            e.consensus_loss,
            e.mean_local_acc,
            e.worst_local_acc,
            e.consensus_distance,
            e.train_loss,
        ]
        .iter()
        .map(|v| v.to_bits())
        .collect(),
        worst_agent: e.worst_agent as u64,
        local_acc: e.local_acc.iter().map(|v| v.to_bits()).collect(),
    }
}

fn last_from_record(r: &LastRecord) -> Option<EvalResult> {
    if r.values.len() != 6 {
        return None;
    }
    let f = |k: usize| f64::from_bits(r.values[k]);
    Some(EvalResult {
        consensus_acc: f(0),
        consensus_loss: f(1),
        mean_local_acc: f(2),
        worst_local_acc: f(3),
        worst_agent: usize::try_from(r.worst_agent).ok()?,
        consensus_distance: f(4),
        train_loss: f(5),
        local_acc: r.local_acc.iter().map(|&b| f64::from_bits(b)).collect(),
    })
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
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
        let header = Header {
            config: self.config.clone(),
            step: self.step,
            total_steps: self.total_steps,
            bytes: self.bytes.clone(),
            sampler: self.sampler.clone(),
            rows: self.rows.iter().map(row_bits).collect(),
            last: self.last.as_ref().map(last_record),
            wall_s: self.wall_s.to_bits(),
            buffers: self
                .buffers
                .iter()
                .map(|(name, d)| BufEntry {
                    name: name.clone(),
                    kind: d.kind().into(),
                    len: d.len() as u64,
                })
                .collect(),
            algo_host: self.algo_host.clone(),
        };
        let json = serde_json::to_vec(&header)
            .map_err(|e| Error::param("checkpoint", format!("cannot encode the header: {e}")))?;
        let mut out = Vec::with_capacity(json.len() + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        for (_, d) in &self.buffers {
            match d {
                BufData::Real(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                BufData::Index(v) => v
                    .iter()
                    .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            }
        }
        let sum = fnv1a(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        Ok(out)
    }

    /// Parses file contents; `path` names the file in errors. Every length is checked and a
    /// truncated or corrupted file is an [`Error::Checkpoint`].
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let fixed = MAGIC.len() + 4 + 8;
        if bytes.len() < fixed + 8 {
            return Err(corrupt(path, format!("{} bytes is too short", bytes.len())));
        }
        if &bytes[..8] != MAGIC {
            return Err(corrupt(path, "not a swarmgrad checkpoint (bad magic)"));
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != VERSION {
            return Err(corrupt(
                path,
                format!("format version {version}, this build reads {VERSION}"),
            ));
        }
        let (body, tail) = bytes.split_at(bytes.len() - 8);
        let mut sum = [0u8; 8];
        sum.copy_from_slice(tail);
        if fnv1a(body) != u64::from_le_bytes(sum) {
            return Err(corrupt(path, "checksum mismatch (truncated or corrupted)"));
        }
        let mut hl = [0u8; 8];
        hl.copy_from_slice(&body[12..20]);
        let header_len = u64::from_le_bytes(hl);
        let rest = &body[fixed..];
        if header_len > rest.len() as u64 {
            return Err(corrupt(path, "header length exceeds the file"));
        }
        let (json, mut payload) = rest.split_at(header_len as usize);
        let h: Header =
            serde_json::from_slice(json).map_err(|e| corrupt(path, format!("bad header: {e}")))?;
        let mut need: u64 = 0;
        for b in &h.buffers {
            let w = match b.kind.as_str() {
                "real" => 8,
                "index" => 4,
                k => {
                    return Err(corrupt(
                        path,
                        format!("buffer {}: unknown kind {k}", b.name),
                    ))
                }
            };
            need = b
                .len
                .checked_mul(w)
                .and_then(|x| need.checked_add(x))
                .ok_or_else(|| corrupt(path, "buffer sizes overflow"))?;
        }
        if need != payload.len() as u64 {
            return Err(corrupt(
                path,
                format!(
                    "buffers need {need} bytes, the file holds {}",
                    payload.len()
                ),
            ));
        }
        let mut buffers = Vec::with_capacity(h.buffers.len());
        for b in &h.buffers {
            let n = b.len as usize;
            let data = if b.kind == "real" {
                let (head, tail) = payload.split_at(8 * n);
                payload = tail;
                BufData::Real(
                    head.chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                        .collect(),
                )
            } else {
                let (head, tail) = payload.split_at(4 * n);
                payload = tail;
                BufData::Index(
                    head.chunks_exact(4)
                        .map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0; 4])))
                        .collect(),
                )
            };
            buffers.push((b.name.clone(), data));
        }
        let rows = h
            .rows
            .iter()
            .map(|r| row_from_bits(r))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| corrupt(path, "bad metrics row"))?;
        let last = match &h.last {
            Some(r) => Some(last_from_record(r).ok_or_else(|| corrupt(path, "bad evaluation"))?),
            None => None,
        };
        Ok(Checkpoint {
            config: h.config,
            step: h.step,
            total_steps: h.total_steps,
            bytes: h.bytes,
            sampler: h.sampler,
            rows,
            last,
            wall_s: f64::from_bits(h.wall_s),
            buffers,
            algo_host: h.algo_host,
        })
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
