//! The tensors of a Hugging Face checkpoint folder as `save_pretrained` writes it: one
//! `model.safetensors`, or shards listed by `model.safetensors.index.json`. Each tensor's shape
//! and dtype (F32, F64, F16 or BF16) are checked before its values are converted, exactly, to
//! f64; a shard name that leaves the folder, a missing shard or an unmapped tensor is refused
//! by name.

use crate::error::{Error, Result, invalid};
use crate::matrix::Matrix;
use crate::weights::{LayerNorm, Linear};
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

/// The file of an unsharded checkpoint.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The index of a sharded checkpoint.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Weight files of other frameworks, named when a folder holds one of them but no safetensors
/// (they are pickles or foreign formats, not read here).
const OTHER_FORMATS: [&str; 3] = ["pytorch_model.bin", "tf_model.h5", "flax_model.msgpack"];

/// The bytes of a checkpoint's safetensors files, and which file holds which tensor.
pub(crate) struct CheckpointFiles {
    /// Each file with its contents.
    files: Vec<(PathBuf, Vec<u8>)>,
    /// For a sharded checkpoint: the index file, and tensor name → position in `files`.
    index: Option<(PathBuf, HashMap<String, usize>)>,
}

/// The part of `model.safetensors.index.json` that locates tensors.
#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

impl CheckpointFiles {
    /// Reads the safetensors files of the checkpoint in `dir`: `model.safetensors` when there
    /// is one, else every shard its index names.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let single = dir.join(SINGLE_FILE);
        if single.is_file() {
            return Self::single(&single);
        }
        let index = dir.join(INDEX_FILE);
        if index.is_file() {
            return Self::sharded(dir, &index);
        }
        match OTHER_FORMATS.iter().find(|f| dir.join(f).exists()) {
            Some(other) => invalid!(
                "{} holds {other} but neither {SINGLE_FILE} nor {INDEX_FILE}; only safetensors \
                 checkpoints are read (save with safe_serialization=True)",
                dir.display()
            ),
            None => invalid!(
                "{} holds neither {SINGLE_FILE} nor {INDEX_FILE}",
                dir.display()
            ),
        }
    }

    /// Reads one safetensors file.
    pub(crate) fn single(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(Error::io("reading", path))?;
        Ok(CheckpointFiles {
            files: vec![(path.to_path_buf(), bytes)],
            index: None,
        })
    }

    /// Reads the index at `index_path` and every shard it names, each a file in `dir`.
    fn sharded(dir: &Path, index_path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index_path).map_err(Error::io("reading", index_path))?;
        let index: Index = serde_json::from_str(&text).map_err(|source| Error::Json {
            what: format!(
                "{} is not a safetensors index with a weight_map",
                index_path.display()
            ),
            source,
        })?;
        let mut names: Vec<&str> = index.weight_map.values().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        if names.is_empty() {
            invalid!("{}: the weight_map is empty", index_path.display());
        }
        for name in &names {
            check_shard_name(name).map_err(Error::in_file(index_path))?;
        }
        let files = names
            .iter()
            .map(|name| {
                let path = dir.join(name);
                let bytes = std::fs::read(&path).map_err(Error::io("reading the shard", &path))?;
                Ok((path, bytes))
            })
            .collect::<Result<Vec<_>>>()?;
        let position: HashMap<&str, usize> =
            names.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let map = index
            .weight_map
            .iter()
            .map(|(tensor, file)| (tensor.clone(), position[file.as_str()]))
            .collect();
        Ok(CheckpointFiles {
            files,
            index: Some((index_path.to_path_buf(), map)),
        })
    }

    /// Parses every file's header (offsets checked against the file's length).
    pub(crate) fn tensors(&self) -> Result<Tensors<'_>> {
        let shards = self
            .files
            .iter()
            .map(|(path, bytes)| {
                let st = SafeTensors::deserialize(bytes).map_err(not_safetensors(path))?;
                Ok((path.as_path(), st))
            })
            .collect::<Result<_>>()?;
        Ok(Tensors {
            shards,
            index: self.index.as_ref().map(|(p, m)| (p.as_path(), m)),
        })
    }
}

/// A tensor to write: its name, shape and values (stored as F32).
pub(crate) type NamedTensor<'a> = (String, Vec<usize>, &'a [f64]);

/// Writes `tensors` as one F32 safetensors file with PyTorch's `format` metadata, as
/// `save_pretrained` writes it (every loader of the format reads it).
pub(crate) fn write_f32_safetensors(path: &Path, tensors: &[NamedTensor<'_>]) -> Result<()> {
    let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape, values)| {
            let bytes = values
                .iter()
                .flat_map(|&x| (x as f32).to_le_bytes())
                .collect();
            (name.clone(), shape.clone(), bytes)
        })
        .collect();
    let metadata = Some(std::collections::HashMap::from([(
        "format".to_string(),
        "pt".to_string(),
    )]));
    let bytes = encoded
        .iter()
        .map(|(name, shape, data)| {
            Ok((
                name.clone(),
                safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .and_then(|views| safetensors::serialize(views, metadata))
        .map_err(|source| Error::Safetensors {
            what: format!("encoding {}", path.display()),
            source,
        })?;
    std::fs::write(path, bytes).map_err(Error::io("writing", path))
}

/// Refuses a shard name that is not a plain file name (absolute, `..`, a subfolder): shards
/// sit next to their index, and a name must not reach outside the checkpoint folder.
fn check_shard_name(name: &str) -> Result<()> {
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) => Ok(()),
        _ => invalid!("shard file {name:?} is not a file name inside the checkpoint folder"),
    }
}

/// [`Error::Safetensors`] for a file that does not parse, for `map_err`.
fn not_safetensors(path: &Path) -> impl FnOnce(safetensors::SafeTensorError) -> Error {
    move |source| Error::Safetensors {
        what: format!("{} is not a safetensors file", path.display()),
        source,
    }
}

/// The parsed headers of a checkpoint's files: finds each tensor in the file that holds it.
pub(crate) struct Tensors<'a> {
    shards: Vec<(&'a Path, SafeTensors<'a>)>,
    index: Option<(&'a Path, &'a HashMap<String, usize>)>,
}

impl Tensors<'_> {
    /// Whether the checkpoint lists a tensor of this full name.
    pub(crate) fn contains(&self, name: &str) -> bool {
        match self.index {
            Some((_, map)) => map.contains_key(name),
            None => self.shards.iter().any(|(_, st)| st.tensor(name).is_ok()),
        }
    }

    /// The values of tensor `name`, refused unless its shape is `shape` and its dtype a float
    /// one; checked before anything is converted.
    pub(crate) fn values(&self, name: &str, shape: &[usize]) -> Result<Vec<f64>> {
        let (path, st) = match self.index {
            Some((index, map)) => match map.get(name) {
                Some(&i) => &self.shards[i],
                None => invalid!(
                    "{}: tensor {name} is missing from the weight_map",
                    index.display()
                ),
            },
            None => &self.shards[0],
        };
        let t = st.tensor(name).map_err(|source| Error::Safetensors {
            what: format!("{}: tensor {name} is missing", path.display()),
            source,
        })?;
        if t.shape() != shape {
            invalid!(
                "{}: tensor {name} has shape {:?}, the config needs {shape:?}",
                path.display(),
                t.shape()
            );
        }
        let Some(values) = to_f64(t.dtype(), t.data()) else {
            invalid!(
                "{}: tensor {name} has dtype {:?}; only F32, F64, F16 and BF16 are supported",
                path.display(),
                t.dtype()
            )
        };
        if values.iter().any(|v| !v.is_finite()) {
            invalid!("{}: tensor {name} holds NaN or infinity", path.display());
        }
        Ok(values)
    }
}

/// Little-endian float data as f64 (every F16, BF16 and F32 value is exactly an f64), or
/// `None` for a dtype that is not floating point or not supported.
fn to_f64(dtype: Dtype, data: &[u8]) -> Option<Vec<f64>> {
    let halves = || {
        data.chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    Some(match dtype {
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect(),
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
            .collect(),
        Dtype::F16 => halves().map(f16_to_f64).collect(),
        Dtype::BF16 => halves().map(bf16_to_f64).collect(),
        _ => return None,
    })
}

/// An IEEE binary16 value: sign, 5-bit exponent (bias 15), 10-bit fraction; subnormals are
/// fraction·2⁻²⁴.
fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let fraction = f64::from(bits & 0x3ff);
    match exponent {
        0 => sign * fraction * 2f64.powi(-24),
        0x1f if fraction == 0.0 => sign * f64::INFINITY,
        0x1f => f64::NAN,
        e => sign * (1024.0 + fraction) * 2f64.powi(e - 25),
    }
}

/// A bfloat16 value: the top half of an f32.
fn bf16_to_f64(bits: u16) -> f64 {
    f64::from(f32::from_bits(u32::from(bits) << 16))
}

/// Reads tensors under a name prefix (`bert.` in checkpoints saved from a task model such as
/// `BertForSequenceClassification`, none in a bare `BertModel`).
#[derive(Clone, Copy)]
pub(crate) struct TensorFile<'t, 'a> {
    /// The checkpoint's tensors.
    pub(crate) tensors: &'t Tensors<'a>,
    /// Prepended to every name.
    pub(crate) prefix: &'static str,
}

impl TensorFile<'_, '_> {
    /// Tensor `name` (under the prefix) of the given shape, as f64.
    pub(crate) fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f64>> {
        self.tensors
            .values(&format!("{}{name}", self.prefix), shape)
    }

    /// A rows × cols matrix.
    pub(crate) fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Matrix> {
        Ok(Matrix::new(rows, cols, self.tensor(name, &[rows, cols])?))
    }

    /// A linear layer `name.weight` (out × in, as Hugging Face stores it) and `name.bias`.
    pub(crate) fn linear(&self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear {
            weight: self.matrix(&format!("{name}.weight"), out, inp)?,
            bias: self.tensor(&format!("{name}.bias"), &[out])?,
        })
    }

    /// A LayerNorm `name.weight` (γ) and `name.bias` (β).
    pub(crate) fn norm(&self, name: &str, n: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            gamma: self.tensor(&format!("{name}.weight"), &[n])?,
            beta: self.tensor(&format!("{name}.bias"), &[n])?,
            eps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_bits_convert_exactly() {
        for (bits, value) in [
            (0x3c00, 1.0),
            (0xc000, -2.0),
            (0x3555, 0.333_251_953_125),
            (0x7bff, 65504.0),
            (0x0400, 2f64.powi(-14)),
            (0x0001, 2f64.powi(-24)),
            (0x03ff, 1023.0 * 2f64.powi(-24)),
            (0x7c00, f64::INFINITY),
        ] {
            assert_eq!(f16_to_f64(bits), value, "{bits:#06x}");
        }
        assert!(f16_to_f64(0x8000) == 0.0 && f16_to_f64(0x8000).is_sign_negative());
        assert!(f16_to_f64(0x7e00).is_nan());
        assert_eq!(bf16_to_f64(0x3f80), 1.0);
        assert_eq!(bf16_to_f64(0xc0a0), -5.0);
        assert_eq!(bf16_to_f64(0x0001), 2f64.powi(-133));
    }

    #[test]
    fn shard_names_stay_in_the_folder() {
        assert!(check_shard_name("model-00001-of-00002.safetensors").is_ok());
        for bad in [
            "../x.safetensors",
            "/etc/x.safetensors",
            "sub/x.safetensors",
            "",
        ] {
            let e = check_shard_name(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
