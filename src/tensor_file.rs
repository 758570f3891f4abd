//! Small safetensors files of typed arrays with a JSON header entry — adapters and fine-tuning
//! feature shards: written in one call, read with every name, dtype and shape checked (they
//! come from users' disks and from other workers). Errors name what the file is.

use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;

/// One array to write: name, dtype, shape and its little-endian bytes.
pub struct Array {
    pub name: &'static str,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl Array {
    pub fn f32(name: &'static str, shape: Vec<usize>, v: &[f32]) -> Array {
        Self::of(
            name,
            Dtype::F32,
            shape,
            v.iter().flat_map(|x| x.to_le_bytes()),
        )
    }
    pub fn f64(name: &'static str, shape: Vec<usize>, v: &[f64]) -> Array {
        Self::of(
            name,
            Dtype::F64,
            shape,
            v.iter().flat_map(|x| x.to_le_bytes()),
        )
    }
    pub fn u32(name: &'static str, shape: Vec<usize>, v: &[u32]) -> Array {
        Self::of(
            name,
            Dtype::U32,
            shape,
            v.iter().flat_map(|x| x.to_le_bytes()),
        )
    }
    fn of(
        name: &'static str,
        dtype: Dtype,
        shape: Vec<usize>,
        bytes: impl Iterator<Item = u8>,
    ) -> Array {
        Array {
            name,
            dtype,
            shape,
            bytes: bytes.collect(),
        }
    }
}

/// The file: `arrays` and the header entry `key` = `json`.
pub fn write(what: &str, arrays: &[Array], key: &str, json: String) -> Result<Vec<u8>> {
    let mut views = Vec::with_capacity(arrays.len());
    for a in arrays {
        let view = safetensors::tensor::TensorView::new(a.dtype, a.shape.clone(), &a.bytes)
            .map_err(|e| Error::corrupt(what, e.to_string()))?;
        views.push((a.name, view));
    }
    let meta = HashMap::from([(key.to_string(), json)]);
    safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| Error::corrupt(what, e.to_string()))
}

/// A file being read.
pub struct Reader<'a> {
    what: &'static str,
    st: SafeTensors<'a>,
}

impl<'a> Reader<'a> {
    /// Open `bytes` as a `what` file and return it with its header entry `key`.
    pub fn open(what: &'static str, bytes: &'a [u8], key: &str) -> Result<(Reader<'a>, String)> {
        let corrupt = |msg: String| Error::corrupt(what, msg);
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| corrupt(format!("not a safetensors file ({e})")))?;
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| corrupt(format!("unreadable header ({e})")))?;
        let json = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .ok_or_else(|| corrupt(format!("no {what} header ({key}) in the file")))?;
        Ok((Reader { what, st }, json))
    }

    pub fn corrupt(&self, msg: String) -> Error {
        Error::corrupt(self.what, msg)
    }

    /// Whether the file holds an array `name`.
    pub fn has(&self, name: &str) -> bool {
        self.st.tensor(name).is_ok()
    }

    /// The shape of array `name`.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self.view(name)?.shape().to_vec())
    }

    fn view(&self, name: &str) -> Result<safetensors::tensor::TensorView<'_>> {
        self.st
            .tensor(name)
            .map_err(|_| self.corrupt(format!("tensor {name} missing")))
    }

    /// The bytes of array `name`, checked to be `dtype` and `shape`.
    fn bytes(&self, name: &str, dtype: Dtype, shape: &[usize]) -> Result<&[u8]> {
        let t = self.view(name)?;
        if t.dtype() != dtype || t.shape() != shape {
            return Err(self.corrupt(format!(
                "tensor {name} is {:?} {:?}, expected {dtype:?} {shape:?}",
                t.dtype(),
                t.shape()
            )));
        }
        Ok(t.data())
    }

    pub fn f32s(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        Ok(words::<4>(self.bytes(name, Dtype::F32, shape)?)
            .map(f32::from_le_bytes)
            .collect())
    }

    pub fn f64s(&self, name: &str, shape: &[usize]) -> Result<Vec<f64>> {
        Ok(words::<8>(self.bytes(name, Dtype::F64, shape)?)
            .map(f64::from_le_bytes)
            .collect())
    }

    pub fn u32s(&self, name: &str, shape: &[usize]) -> Result<Vec<u32>> {
        Ok(words::<4>(self.bytes(name, Dtype::U32, shape)?)
            .map(u32::from_le_bytes)
            .collect())
    }
}

fn words<const N: usize>(b: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    b.chunks_exact(N)
        .map(|c| c.try_into().expect("chunks of N bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let bytes = write(
            "test file",
            &[
                Array::f32("a", vec![2, 2], &[1.0, -2.0, 3.5, 0.0]),
                Array::u32("b", vec![3], &[7, 8, u32::MAX]),
                Array::f64("c", vec![1], &[0.1]),
            ],
            "k",
            "{\"v\":1}".into(),
        )
        .unwrap();
        let (r, json) = Reader::open("test file", &bytes, "k").unwrap();
        assert_eq!(json, "{\"v\":1}");
        assert_eq!(r.shape("a").unwrap(), vec![2, 2]);
        assert_eq!(r.f32s("a", &[2, 2]).unwrap(), vec![1.0, -2.0, 3.5, 0.0]);
        assert_eq!(r.u32s("b", &[3]).unwrap(), vec![7, 8, u32::MAX]);
        assert_eq!(r.f64s("c", &[1]).unwrap(), vec![0.1]);
        let wrong_shape = r.f32s("a", &[4]).unwrap_err().to_string();
        assert!(
            wrong_shape.contains("tensor a is F32 [2, 2], expected F32 [4]"),
            "{wrong_shape}"
        );
        assert!(r.u32s("a", &[2, 2]).is_err());
        assert!(r
            .f32s("z", &[1])
            .unwrap_err()
            .to_string()
            .contains("tensor z missing"));
        assert!(Reader::open("test file", &bytes, "other").is_err());
        assert!(Reader::open("test file", &bytes[..bytes.len() - 3], "k").is_err());
    }
}
