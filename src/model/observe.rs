//! Watching what each linear layer of the CPU model is fed: the Gram matrix `Σ xᵀx` of its
//! inputs, which GPTQ rounding (`package::gptq`) needs to place each weight's rounding error
//! where the layer's inputs make it matter least. Only the converter records; everywhere else
//! `linear_input` is a thread-local check that finds nothing to do.

use crate::error::Result;
use candle_core::{DType, Tensor};
use std::cell::RefCell;
use std::collections::HashMap;

/// `Σ xᵀx` over every input row x ([dim]) a linear layer saw, and how many rows that was.
#[derive(Debug, Clone)]
pub struct InputGram {
    pub dim: usize,
    pub rows: usize,
    /// [dim, dim] row-major, f64 (sums of up to millions of f32 products).
    pub gram: Vec<f64>,
}

/// A layer's inputs not yet folded into its Gram matrix (folding them in batches of
/// `FOLD_ROWS` rows makes one large product of each batch instead of one small one per call).
struct Pending {
    gram: InputGram,
    rows: Vec<f32>,
}

const FOLD_ROWS: usize = 512;

impl Pending {
    fn fold(&mut self) -> Result<()> {
        let dim = self.gram.dim;
        let n = self.rows.len() / dim;
        if n == 0 {
            return Ok(());
        }
        // f32 products over at most FOLD_ROWS rows, summed into f64.
        let x = Tensor::from_slice(&self.rows, (n, dim), &candle_core::Device::Cpu)?;
        let g = x.t()?.matmul(&x)?.flatten_all()?.to_vec1::<f32>()?;
        for (a, &b) in self.gram.gram.iter_mut().zip(&g) {
            *a += b as f64;
        }
        self.gram.rows += n;
        self.rows.clear();
        Ok(())
    }
}

thread_local! {
    static RECORDING: RefCell<Option<HashMap<String, Pending>>> = const { RefCell::new(None) };
}

/// Runs `f` with recording on for this thread and returns, beside its result, the Gram matrix
/// of each linear layer's inputs, keyed by the layer's package name (`decoder.layers.0.fc1`).
/// Only the model code that runs on this thread is seen: call the model directly (`encode`,
/// `decode_teacher_forced`), not through the generation loop, which runs on rayon's pool.
pub fn record_linear_inputs<R>(f: impl FnOnce() -> R) -> Result<(R, HashMap<String, InputGram>)> {
    let previous = RECORDING.with(|r| r.replace(Some(HashMap::new())));
    let out = f();
    let pending = RECORDING.with(|r| r.replace(previous)).unwrap_or_default();
    let mut grams = HashMap::new();
    for (name, mut p) in pending {
        p.fold()?;
        grams.insert(name, p.gram);
    }
    Ok((out, grams))
}

/// Called by `Linear::forward` with its input x [..., dim]: keeps x's rows for the layer's
/// Gram matrix when recording is on.
pub(crate) fn linear_input(name: &str, x: &Tensor) -> Result<()> {
    let on = RECORDING.with(|r| r.borrow().is_some());
    if !on {
        return Ok(());
    }
    let dim = *x.dims().last().unwrap_or(&1);
    let values = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    RECORDING.with(|r| -> Result<()> {
        let mut r = r.borrow_mut();
        let pending = r.as_mut().expect("checked above");
        let p = pending.entry(name.to_string()).or_insert_with(|| Pending {
            gram: InputGram {
                dim,
                rows: 0,
                gram: vec![0.0; dim * dim],
            },
            rows: Vec::new(),
        });
        p.rows.extend_from_slice(&values);
        if p.rows.len() >= FOLD_ROWS * dim {
            p.fold()?;
        }
        Ok(())
    })
}
