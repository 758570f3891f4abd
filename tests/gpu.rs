//! The GPU backend against the CPU backend on the committed fixtures, natively through wgpu
//! (lavapipe on machines without a GPU: `apt-get install mesa-vulkan-drivers`).
//!
//! Reference: the CPU model with the same stored weights, quantized matrices dequantized to f32
//! (`Marian::from_package_dequantized`) — the GPU dequantizes weights inside its kernels but
//! keeps activations in f32, where candle's q8 kernels quantize activations too. Asserted:
//! identical tokens (greedy and beam, batched) and step scores within 1e-4 of the reference.

use crate::common::*;
use marian_wasm::generate::{generate, ready, Backend, GenerateOptions, Select};
use marian_wasm::gpu::{F16Products, GpuContext, GpuMarian, KernelOptions};
use marian_wasm::model::Marian;
use marian_wasm::package::convert::{convert_with, ConvertOptions};
use marian_wasm::package::quant::Quant;
use marian_wasm::package::Package;
use marian_wasm::Translator;
use std::sync::{Arc, OnceLock};

fn gpu() -> Arc<GpuContext> {
    static CTX: OnceLock<Arc<GpuContext>> = OnceLock::new();
    CTX.get_or_init(|| {
        ready(GpuContext::open(true)).unwrap_or_else(|e| {
            panic!("{e}\n(the GPU tests need a Vulkan driver; on Debian: apt-get install mesa-vulkan-drivers)")
        })
    })
    .clone()
}

fn sources(t: &Translator, fx: &std::path::Path) -> Vec<Vec<u32>> {
    let exp = expected(fx);
    exp["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| t.tokenizer.encode(s["src"].as_str().unwrap()).unwrap())
        .collect()
}

const QUANTS: [Quant; 4] = [Quant::F32, Quant::F16, Quant::Q8, Quant::Q4];

#[test]
fn gpu_generates_the_same_tokens_as_the_cpu() {
    let ctx = gpu();
    eprintln!("GPU adapter: {}", ctx.describe());
    same_tokens_as_the_cpu(&ctx, &QUANTS);
}

/// The path that needs no optional feature (what adapters without subgroups run) against the
/// CPU too; on an adapter that offers subgroups, the test above ran the subgroup kernels.
#[test]
fn plain_kernels_generate_the_same_tokens_as_the_cpu() {
    let plain = ready(GpuContext::open_with(
        true,
        KernelOptions {
            features: false,
            ..KernelOptions::from_env()
        },
    ))
    .unwrap();
    assert!(!plain.subgroups);
    eprintln!(
        "GPU adapter: {} (the default context: {})",
        plain.describe(),
        gpu().describe()
    );
    same_tokens_as_the_cpu(&plain, &[Quant::F32, Quant::Q8]);
}

/// Split-K (what hardware adapters run for tiled products with few tiles: every product of more
/// than 8 rows on these fixtures) against the CPU; lavapipe runs without it by default.
#[test]
fn split_k_kernels_generate_the_same_tokens_as_the_cpu() {
    let split = ready(GpuContext::open_with(
        true,
        KernelOptions {
            split_k: Some(true),
            ..KernelOptions::from_env()
        },
    ))
    .unwrap();
    assert!(split.split_k);
    eprintln!("GPU adapter: {}", split.describe());
    same_tokens_as_the_cpu(&split, &[Quant::F32, Quant::Q8]);
}

/// f16 operands in the matrix products (what hardware adapters offering shader-f16 run for
/// f16-stored matrices; lavapipe offers it but runs f32 by default) keep the tokens of the f32
/// path: here for every stored form, greedy and beam 4, batched and one at a time.
#[test]
fn f16_product_kernels_generate_the_same_tokens_as_the_cpu() {
    let half = ready(GpuContext::open_with(
        true,
        KernelOptions {
            f16_products: Some(F16Products::All),
            ..KernelOptions::from_env()
        },
    ))
    .unwrap();
    eprintln!("GPU adapter: {}", half.describe());
    assert_eq!(
        half.f16_products,
        F16Products::All,
        "the adapter does not offer shader-f16 (lavapipe does)"
    );
    same_tokens_as_the_cpu(&half, &QUANTS);
}

fn same_tokens_as_the_cpu(ctx: &Arc<GpuContext>, quants: &[Quant]) {
    for fx in fixtures() {
        for &quant in quants {
            let (_dir, pkg) = package(&fx, quant);
            let t = Translator::new(&pkg).unwrap();
            let reference = Marian::from_package_dequantized(&pkg).unwrap();
            let g_model = GpuMarian::from_package(&pkg, ctx.clone()).unwrap();
            let srcs = sources(&t, &fx);
            for beams in [1, 4] {
                let g = t
                    .generation_for(&GenerateOptions {
                        num_beams: Some(beams),
                        ..Default::default()
                    })
                    .unwrap();
                // All together (padding, rows finishing at different steps); one at a time too
                // for f32 (the other forms share every kernel but the weight read).
                let batches: &[usize] = if quant == Quant::F32 {
                    &[1, usize::MAX]
                } else {
                    &[usize::MAX]
                };
                for &batch in batches {
                    let batch = batch.min(srcs.len());
                    for chunk in srcs.chunks(batch) {
                        let want = generate(&reference, chunk, &g).unwrap();
                        let got = generate(&g_model, chunk, &g).unwrap();
                        assert_eq!(
                            got,
                            want,
                            "{} {quant} beams {beams} batch {batch}",
                            name(&fx)
                        );
                    }
                }
            }
        }
    }
}

/// Issue 17's "the same tokens on the CPU and the GPU": one q8 (and q4) package on the GPU against
/// the CPU's own quantized path (16-bit activations in its integer kernels, where the GPU keeps
/// f32), on held-out sentences in padded batches of 32, greedy and beam 4. Target >= 99 %
/// identical; measured 2026-12-01 on lavapipe: 100 % of 1 000 sentences for both fixtures, q8
/// and q4, greedy. Here the first 64 sentences (lavapipe time), also for q8 with f16 embeddings
/// and for q8 with a residual on the embeddings and the decoder.
#[test]
fn quantized_gpu_output_matches_the_quantized_cpu_on_held_out_sentences() {
    let ctx = gpu();
    let mut checked = 0;
    for fx in fixtures() {
        let Ok(text) = std::fs::read_to_string(fx.join("heldout.json")) else {
            continue;
        };
        let held: serde_json::Value = serde_json::from_str(&text).unwrap();
        let srcs: Vec<Vec<u32>> = held["src_ids"].as_array().unwrap()[..64]
            .iter()
            .map(ids)
            .collect();
        // q8 with the embeddings kept at f16: the GPU multiplies the f16 projection as stored,
        // the CPU through its q8 screen (`screened_head`).
        let e16 = ConvertOptions {
            keep_f16: vec!["embeddings".into()],
            ..ConvertOptions::new(Quant::Q8)
        };
        // q8 with a residual on the embeddings and the decoder's matrices: the GPU dequantizes
        // q8 + residual in every kernel, the CPU adds the residual's product (for the output
        // projection only where its screen cannot rule a token out).
        let residual = ConvertOptions {
            residual: vec!["embeddings".into(), "decoder.".into()],
            ..ConvertOptions::new(Quant::Q8)
        };
        let variants = [
            ("q8", ConvertOptions::new(Quant::Q8)),
            ("q4", ConvertOptions::new(Quant::Q4)),
            ("q8 + f16 embeddings", e16),
            ("q8 + residual embeddings, decoder", residual),
        ];
        for (quant, options) in &variants {
            let dir = tempfile::tempdir().unwrap();
            convert_with(&fx, dir.path(), options).unwrap();
            let pkg = Package::read_dir(dir.path()).unwrap();
            let t = Translator::new(&pkg).unwrap();
            let g_model = GpuMarian::from_package(&pkg, ctx.clone()).unwrap();
            for beams in [1, 4] {
                let g = t
                    .generation_for(&GenerateOptions {
                        num_beams: Some(beams),
                        ..Default::default()
                    })
                    .unwrap();
                let (mut same, mut total) = (0, 0);
                for chunk in srcs.chunks(32) {
                    let cpu = generate(&t.model, chunk, &g).unwrap();
                    let gpu = generate(&g_model, chunk, &g).unwrap();
                    same += cpu.iter().zip(&gpu).filter(|(a, b)| a == b).count();
                    total += chunk.len();
                }
                let share = same as f64 / total as f64;
                eprintln!(
                    "{} {quant} beams {beams}: GPU = CPU on {same} / {total}",
                    name(&fx)
                );
                assert!(
                    share >= 0.99,
                    "{} {quant} beams {beams}: {share}",
                    name(&fx)
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 2, "heldout.json missing");
}

/// Teacher-forced steps: the best 8 log-probabilities of every step agree within 1e-4.
#[test]
fn gpu_step_scores_match_the_cpu() {
    let ctx = gpu();
    for fx in fixtures() {
        for quant in QUANTS {
            let (_dir, pkg) = package(&fx, quant);
            let t = Translator::new(&pkg).unwrap();
            let reference = Marian::from_package_dequantized(&pkg).unwrap();
            let g_model = GpuMarian::from_package(&pkg, ctx.clone()).unwrap();
            let srcs = sources(&t, &fx);
            let g = t.generation_for(&GenerateOptions::default()).unwrap();
            let outs = generate(&reference, &srcs, &g).unwrap();
            let select = Select {
                k: 8,
                log_softmax: true,
                banned: &[],
                forced: None,
            };
            let mut worst = 0f32;
            let mut cs = ready(reference.start(&srcs, 1, g.max_length)).unwrap();
            let mut gs = ready(g_model.start(&srcs, 1, g.max_length)).unwrap();
            let steps = outs.iter().map(|o| o.len()).min().unwrap() - 1;
            for step in 0..steps {
                let tokens: Vec<u32> = outs.iter().map(|o| o[step]).collect();
                let want = ready(reference.step(&mut cs, &tokens, &select)).unwrap();
                let got = ready(g_model.step(&mut gs, &tokens, &select)).unwrap();
                for (w, gt) in want.iter().zip(&got) {
                    assert_eq!(w.len(), gt.len());
                    for (a, b) in w.iter().zip(gt) {
                        worst = worst.max((a.1 - b.1).abs());
                    }
                    assert_eq!(
                        w[0].0,
                        gt[0].0,
                        "{} {quant}: best token at step {step}",
                        name(&fx)
                    );
                }
            }
            eprintln!(
                "{} {quant}: max |score diff| {worst:.2e} over {steps} steps",
                name(&fx)
            );
            assert!(
                worst < 1e-4,
                "{} {quant}: scores differ by {worst}",
                name(&fx)
            );
        }
    }
}

#[test]
fn gpu_applies_a_fine_tuning_adapter_like_the_cpu() {
    let ctx = gpu();
    let fx = fixtures().into_iter().next().unwrap();
    let (_dir, pkg) = package(&fx, Quant::F32);
    let mut reference = Marian::from_package_dequantized(&pkg).unwrap();
    let g_model = GpuMarian::from_package(&pkg, ctx).unwrap();
    let t = Translator::new(&pkg).unwrap();
    let srcs = sources(&t, &fx);
    let g = t.generation_for(&GenerateOptions::default()).unwrap();
    let plain = generate(&reference, &srcs, &g).unwrap();
    // A strong correction toward two tokens changes the output; both backends agree on it.
    let d = reference.config.d_model;
    let dev = candle_core::Device::Cpu;
    let ids = candle_core::Tensor::new(&[5u32, 9], &dev).unwrap();
    let weight = candle_core::Tensor::ones((2, d), candle_core::DType::F32, &dev).unwrap();
    let bias = candle_core::Tensor::new(&[3f32, 2.5], &dev).unwrap();
    let delta = marian_wasm::model::HeadDelta {
        ids,
        weight,
        bias,
        conditions: None,
    };
    reference.set_head_delta(Some(delta.clone())).unwrap();
    g_model.set_head_delta(Some(&delta)).unwrap();
    let want = generate(&reference, &srcs, &g).unwrap();
    assert_ne!(want, plain, "the test delta must change something");
    assert_eq!(generate(&g_model, &srcs, &g).unwrap(), want);

    // Conditioned entries (adapter format 3): token 809 is pushed down right after a 16 (and
    // nudged up everywhere by a second entry of the same token), token 802 is pushed down only
    // in sentences whose source holds the first sentence's first token. Both backends agree,
    // and the conditions change the output.
    use marian_wasm::adapter::{EntryConditions, NOT_CONDITIONED as NONE};
    let ids = candle_core::Tensor::new(&[802u32, 809, 809], &dev).unwrap();
    let weight = candle_core::Tensor::zeros((3, d), candle_core::DType::F32, &dev).unwrap();
    let bias = candle_core::Tensor::new(&[-30f32, 0.5, -30.0], &dev).unwrap();
    let conditioned = marian_wasm::model::HeadDelta {
        ids,
        weight,
        bias,
        conditions: Some(EntryConditions {
            after: vec![NONE, NONE, 16],
            group: vec![0, NONE, NONE],
            triggers: vec![vec![srcs[2][0]]],
        }),
    };
    reference.set_head_delta(Some(conditioned.clone())).unwrap();
    g_model.set_head_delta(Some(&conditioned)).unwrap();
    let want_conditioned = generate(&reference, &srcs, &g).unwrap();
    assert_ne!(
        want_conditioned, want,
        "the conditions must change something"
    );
    assert_eq!(generate(&g_model, &srcs, &g).unwrap(), want_conditioned);
}

/// An adapter with a last-layer part (merged into the last decoder layer's fc2): the GPU
/// translator gives the CPU translator's tokens, and taking it off restores the base output.
#[test]
fn gpu_applies_a_last_layer_adapter_like_the_cpu() {
    use marian_wasm::adapter::{
        Adapter, AdapterManifest, LastLayerAdapter, ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION,
    };
    use marian_wasm::translator::{Device, DeviceChoice};
    let fx = fixtures().into_iter().next().unwrap();
    let (_dir, pkg) = package(&fx, Quant::F32);
    let mut cpu = Translator::new(&pkg).unwrap();
    let mut gpu = ready(Translator::with_device(&pkg, DeviceChoice::Gpu)).unwrap();
    let cfg = cpu.model.config.clone();
    let (d, f, r) = (cfg.d_model, cfg.decoder_ffn_dim, 2);
    // A deterministic, strong enough correction (no head part: zero factors).
    let wave = |n: usize, k: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * k).sin()).collect() };
    let adapter = Adapter {
        manifest: AdapterManifest {
            format: ADAPTER_FORMAT.into(),
            format_version: ADAPTER_FORMAT_VERSION,
            base_model_sha256: cpu.model_sha256.clone(),
            d_model: d,
            target_vocab_size: cfg.target_vocab_size(),
            decoder_ffn_dim: f,
            trained: "test".into(),
            hyperparameters: serde_json::json!({}),
            metrics: serde_json::json!({}),
            created_by: "tests/gpu.rs".into(),
        },
        ids: vec![5],
        rank: 1,
        lora_b: vec![0.0],
        lora_a: vec![0.0; d],
        delta_bias: vec![0.0],
        conditions: None,
        last_layer: Some(LastLayerAdapter {
            rank: r,
            a: wave(r * f, 0.37),
            b: wave(d * r, 0.11).iter().map(|x| x * 0.5).collect(),
        }),
    };
    let texts = [
        "A man is riding a bicycle.",
        "Two dogs play in the snow.",
        "A woman is reading a book in the park.",
    ];
    let run = |t: &Translator| -> Vec<String> {
        let out = t.translate(&texts, &GenerateOptions::default(), 8).unwrap();
        out.into_iter().map(|x| x.text).collect()
    };
    let base = run(&cpu);
    cpu.set_adapter(Some(&adapter)).unwrap();
    gpu.set_adapter(Some(&adapter)).unwrap();
    let want = run(&cpu);
    assert_ne!(want, base, "the test adapter must change something");
    let on_gpu = gpu
        .translate(&texts, &GenerateOptions::default(), 8)
        .unwrap();
    assert!(on_gpu.iter().all(|x| x.device == Device::Gpu));
    assert_eq!(on_gpu.into_iter().map(|x| x.text).collect::<Vec<_>>(), want);
    gpu.set_adapter(None).unwrap();
    assert_eq!(run(&gpu), base);
}

/// A device lost in the middle of a translation: the batch is translated again on the CPU,
/// the caller is told, and later calls stay on the CPU.
#[test]
fn a_lost_device_falls_back_to_the_cpu_mid_translation() {
    use marian_wasm::translator::{Device, DeviceChoice};
    let fx = fixtures().into_iter().next().unwrap();
    let (_dir, pkg) = package(&fx, Quant::F32);
    let cpu = Translator::new(&pkg).unwrap();
    let t = ready(Translator::with_device(&pkg, DeviceChoice::Gpu)).unwrap();
    let texts = ["A man is riding a bicycle.", "Two dogs play in the snow."];
    let opts = GenerateOptions {
        num_beams: Some(2),
        ..Default::default()
    };
    let want: Vec<String> = cpu
        .translate(&texts, &opts, 8)
        .unwrap()
        .into_iter()
        .map(|x| x.text)
        .collect();
    let on_gpu = t.translate(&texts, &opts, 8).unwrap();
    assert!(on_gpu.iter().all(|x| x.device == Device::Gpu));
    assert_eq!(
        on_gpu.iter().map(|x| x.text.clone()).collect::<Vec<_>>(),
        want
    );
    t.gpu.as_ref().unwrap().context().simulate_loss_after(3);
    let after = t.translate(&texts, &opts, 8).unwrap();
    assert!(
        after.iter().all(|x| x.device == Device::Cpu),
        "served by {:?}",
        after.iter().map(|x| x.device).collect::<Vec<_>>()
    );
    assert_eq!(after.into_iter().map(|x| x.text).collect::<Vec<_>>(), want);
    assert_eq!(t.device(), Device::Cpu);
}

/// `auto` natively uses only hardware GPUs: on a machine with only lavapipe it serves from the
/// CPU and says why; a device name that does not exist is refused by name.
#[test]
fn auto_without_a_hardware_gpu_uses_the_cpu_and_says_why() {
    use marian_wasm::translator::{Device, DeviceChoice};
    let fx = fixtures().into_iter().next().unwrap();
    let (_dir, pkg) = package(&fx, Quant::Q8);
    let t = ready(Translator::with_device(&pkg, DeviceChoice::Auto)).unwrap();
    let hardware = t.gpu.as_ref().is_some_and(|g| !g.context().is_software());
    if !hardware {
        assert_eq!(t.device(), Device::Cpu);
        let why = t.gpu_unavailable.clone().expect("a reason");
        assert!(why.contains("GPU"), "{why}");
    }
    assert!("tpu"
        .parse::<DeviceChoice>()
        .unwrap_err()
        .to_string()
        .contains("tpu"));
}

/// Models and batches free their GPU memory: loading, translating and dropping a model five
/// times leaves the device's allocations where they were after the first round.
#[test]
fn repeated_create_and_destroy_does_not_grow_gpu_memory() {
    // A device of its own: the other tests allocate on the shared one concurrently.
    let ctx = ready(GpuContext::open(true)).unwrap();
    let fx = fixtures().into_iter().next().unwrap();
    let (_dir, pkg) = package(&fx, Quant::Q8);
    let t = Translator::new(&pkg).unwrap();
    let srcs = sources(&t, &fx);
    let g = t.generation_for(&GenerateOptions::default()).unwrap();
    let allocated = || {
        ctx.device
            .poll(wgpu::PollType::wait_indefinitely())
            .unwrap();
        ctx.device
            .generate_allocator_report()
            .map(|r| r.total_allocated_bytes)
    };
    let mut after_each = Vec::new();
    for _ in 0..5 {
        let m = GpuMarian::from_package(&pkg, ctx.clone()).unwrap();
        generate(&m, &srcs, &g).unwrap();
        drop(m);
        after_each.push(allocated());
    }
    let Some(first) = after_each[0] else {
        eprintln!("this driver gives no allocator report; skipped");
        return;
    };
    eprintln!("GPU bytes allocated after each round: {after_each:?}");
    let last = after_each[4].unwrap();
    assert!(
        last <= first,
        "GPU allocations grew from {first} to {last} bytes"
    );
}

/// Read tensor `name` of a feature shard's bytes as f64 values (f32, f64 or u32 stored).
fn shard_tensor(bytes: &[u8], name: &str) -> Vec<f64> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let words = |n: usize| t.data().chunks_exact(n);
    match t.dtype() {
        safetensors::Dtype::F32 => words(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        safetensors::Dtype::U32 => words(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        safetensors::Dtype::F64 => words(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        other => panic!("{name}: unexpected {other:?}"),
    }
}

/// Pairs for fine-tuning from a fixture: each source with the CPU translation of the next
/// source as its target (real target-side tokens, many of them unlikely where they stand).
fn fixture_pairs(t: &Translator, fx: &std::path::Path) -> Vec<marian_wasm::finetune::pairs::Pair> {
    let exp = expected(fx);
    let srcs: Vec<String> = exp["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["src"].as_str().unwrap().to_string())
        .collect();
    let refs: Vec<&str> = srcs.iter().map(String::as_str).collect();
    let out = t.translate(&refs, &GenerateOptions::default(), 8).unwrap();
    (0..srcs.len())
        .map(|i| marian_wasm::finetune::pairs::Pair {
            source: srcs[i].clone(),
            target: out[(i + 1) % srcs.len()].text.clone(),
            line: i + 1,
        })
        .collect()
}

/// Fine-tuning's features pass on the GPU (teacher forcing + the row-summary kernel) against
/// the CPU pass over the same stored weights: hidden states, logit summaries and top-k.
#[test]
fn gpu_fine_tuning_features_match_the_cpu() {
    use marian_wasm::finetune::{prepare, Control, FeatureShard, FineTuneOptions};
    use marian_wasm::translator::DeviceChoice;
    let fx = fixtures().into_iter().next().unwrap();
    for quant in [Quant::F32, Quant::Q8] {
        let (_dir, pkg) = package(&fx, quant);
        let t = ready(Translator::with_device(&pkg, DeviceChoice::Gpu)).unwrap();
        let pairs = fixture_pairs(&t, &fx);
        let prepared = prepare(&t, &pairs, &[], &FineTuneOptions::default()).unwrap();
        let ids = prepared.pairs_of(&prepared.whole()[0]);
        let top_k = 8;
        let go = &mut |_| Control::Continue;
        let cpu = FeatureShard::compute(&t, &ids, top_k, go).unwrap().unwrap();
        let gpu = ready(FeatureShard::compute_on_gpu(&t, &ids, top_k, go))
            .unwrap()
            .unwrap();
        assert!(gpu.on_gpu() && !cpu.on_gpu());
        assert_eq!(gpu.positions(), cpu.positions());
        let (c, g) = (cpu.to_bytes().unwrap(), gpu.to_bytes().unwrap());
        let worst = |name: &str, relative: bool| -> f64 {
            let (a, b) = (shard_tensor(&c, name), shard_tensor(&g, name));
            assert_eq!(a.len(), b.len(), "{name}");
            a.iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs() / if relative { x.abs().max(1.0) } else { 1.0 })
                .fold(0.0, f64::max)
        };
        for (name, bound, relative) in [
            ("hidden", 1e-4, false),
            ("ffn_input", 1e-4, false),
            ("max", 1e-4, false),
            ("y_logit", 1e-4, false),
            ("p_target", 1e-5, false),
            ("exp_sum", 1e-5, true),
            ("logit_sum", 1e-5, true),
        ] {
            let w = worst(name, relative);
            eprintln!("{quant:?} {name}: worst difference {w:.2e}");
            assert!(w < bound, "{quant:?} {name}: {w} ≥ {bound}");
        }
        assert_eq!(shard_tensor(&c, "labels"), shard_tensor(&g, "labels"));
        // Top-k ids: identical but where two logits are within float noise of each other.
        let (a, b) = (shard_tensor(&c, "top"), shard_tensor(&g, "top"));
        let differing = a
            .chunks_exact(top_k)
            .zip(b.chunks_exact(top_k))
            .filter(|(x, y)| x != y)
            .count();
        let n = a.len() / top_k;
        eprintln!("{quant:?} top-{top_k}: {differing} of {n} positions differ");
        assert!(differing * 50 <= n, "{differing} of {n} positions");
        assert_eq!(
            a.iter().step_by(top_k).collect::<Vec<_>>(),
            b.iter().step_by(top_k).collect::<Vec<_>>(),
            "the best token of every position"
        );
    }
}

/// `fine_tune` on a GPU translator runs its features pass there; when the device is lost
/// during the pass, the pass runs on the CPU and the run completes.
#[test]
fn fine_tuning_uses_the_gpu_and_survives_losing_it() {
    use marian_wasm::finetune::{fine_tune, Control, FineTuneOptions};
    use marian_wasm::translator::{Device, DeviceChoice};
    let fx = fixtures().into_iter().next().unwrap();
    let (_dir, pkg) = package(&fx, Quant::Q8);
    let t = ready(Translator::with_device(&pkg, DeviceChoice::Gpu)).unwrap();
    let pairs = fixture_pairs(&t, &fx);
    // The pairs are shifted translations (no consistent term): what is taught is chosen
    // without its consistency tests, as this test is about where the features are computed.
    let o = FineTuneOptions {
        epochs: 2,
        term_p_value: 1.0,
        source_triggers: false,
        ..Default::default()
    };
    let go = &mut |_: &marian_wasm::finetune::Progress| Control::Continue;
    let (_, on_gpu) = fine_tune(&t, &pairs, &[], &o, go).unwrap();
    assert_eq!(on_gpu.feature_device, "gpu");
    t.gpu.as_ref().unwrap().context().simulate_loss_after(2);
    let (_, after) = fine_tune(&t, &pairs, &[], &o, go).unwrap();
    assert_eq!(after.feature_device, "cpu");
    assert_eq!(t.device(), Device::Cpu);
    assert_eq!(after.train_positions, on_gpu.train_positions);
}
