//! `marian-wasm bench`: encode + decode (greedy, or `--beams N`) exactly `--tokens` target tokens per sentence
//! (EOS suppressed, so every engine does the same work), after one warm-up batch.
//! With `--baseline-hf DIR` it also runs candle-transformers' own f32 `marian` model on the
//! same ids in the same process, one sentence at a time (that model cannot batch).

use anyhow::{Context, Result};
use marian_wasm::translator::{Device, DeviceChoice};
use marian_wasm::{Package, Translator};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// cpu, gpu (wgpu: Vulkan/Metal/DX12, software adapters included) or auto.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    #[arg(long, default_value_t = 32)]
    pub tokens: usize,
    /// Beam search with this many beams (1: greedy). Tokens counted are the best beam's.
    #[arg(long, default_value_t = 1)]
    pub beams: usize,
    /// Sentences, one a line (default: a built-in set of 16 everyday English sentences).
    #[arg(long)]
    pub sentences: Option<PathBuf>,
    /// How many sentences to time (cycled from the set).
    #[arg(long, default_value_t = 16)]
    pub count: usize,
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long)]
    pub json: bool,
    /// GPU only: profile the timed batches — dispatches, submissions and read-backs per step,
    /// and `time` (the default): GPU time per kernel where the adapter has timestamp queries
    /// (each dispatch waited for, so tokens/s is not the unprofiled speed); `counts`: the
    /// host's time encoding and waiting, the work run as unprofiled.
    #[arg(long, num_args = 0..=1, default_missing_value = "time", value_parser = ["time", "counts"])]
    pub profile: Option<String>,
    /// A Hugging Face checkpoint folder to run candle-transformers' marian on as a baseline.
    #[arg(long)]
    pub baseline_hf: Option<PathBuf>,
}

const SENTENCES: &[&str] = &[
    "A man in a blue shirt is standing on a ladder cleaning windows.",
    "Two young children are playing in the sand at the beach.",
    "A woman is reading a book in a quiet cafe near the station.",
    "The dog runs across the green field to catch a red ball.",
    "Several people are waiting for the bus in the rain.",
    "A group of friends is having dinner together on a terrace.",
    "An old man sits on a bench and feeds the pigeons.",
    "The little girl is wearing a yellow dress and a hat.",
    "A cyclist rides down a narrow street in the old town.",
    "Three workers in orange vests are repairing the road.",
    "A musician plays the guitar on a busy street corner.",
    "The children are laughing while they play with a kite.",
    "A chef is preparing food in a large restaurant kitchen.",
    "Two women are walking their dogs along the river.",
    "A boy jumps into the swimming pool with his clothes on.",
    "People are dancing at a wedding under colorful lights.",
];

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn sentence_set(args: &BenchArgs) -> Result<Vec<String>> {
    let base: Vec<String> = match &args.sentences {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading {}", p.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(String::from)
            .collect(),
        None => SENTENCES.iter().map(|s| s.to_string()).collect(),
    };
    anyhow::ensure!(!base.is_empty(), "no sentences to benchmark");
    Ok((0..args.count.max(1))
        .map(|i| base[i % base.len()].clone())
        .collect())
}

pub fn run(args: BenchArgs, load: fn(Option<&std::path::Path>) -> Result<Package>) -> Result<()> {
    let choice: DeviceChoice = args.device.parse()?;
    if let Some(t) = args.threads {
        // candle's CPU kernels size their thread pools from this variable.
        std::env::set_var("RAYON_NUM_THREADS", t.to_string());
    }
    if let Some(kind) = &args.profile {
        // Read when the GPU device is opened (src/gpu/profile.rs).
        let value = if kind == "counts" { "counts" } else { "1" };
        std::env::set_var("MARIAN_GPU_PROFILE", value);
    }
    let threads = candle_core::utils::get_num_threads();
    let t0 = Instant::now();
    let pkg = load(args.model.as_deref())?;
    let quant = pkg.manifest.quant.to_string();
    let translator = marian_wasm::generate::ready(Translator::with_device(&pkg, choice))?;
    if let Some(why) = &translator.gpu_unavailable {
        eprintln!("bench: using the CPU ({why})");
    }
    let device = translator.device();
    let adapter = translator.gpu.as_ref().map(|g| g.context().describe());
    let load_s = t0.elapsed().as_secs_f64();
    drop(pkg);
    let sentences = sentence_set(&args)?;
    let ids: Vec<Vec<u32>> = sentences
        .iter()
        .map(|s| translator.tokenizer.encode(s))
        .collect::<marian_wasm::Result<_>>()?;
    let run = marian_wasm::generate::ready(translator.bench_fixed_length(
        &ids,
        args.batch.max(1),
        args.tokens,
        args.beams,
    ))?;
    let batch = args.batch.max(1);
    let (produced, secs) = (run.tokens, run.seconds);
    anyhow::ensure!(
        run.device == device,
        "the GPU failed during the benchmark: {}",
        translator
            .gpu
            .as_ref()
            .and_then(|g| g.context().check().err())
            .map(|e| e.to_string())
            .unwrap_or_default()
    );
    let tokens_per_s = produced as f64 / secs;
    let baseline = match &args.baseline_hf {
        Some(dir) => Some(baseline::run(
            dir,
            &ids,
            args.tokens,
            translator.generation.eos_token_id,
        )?),
        None => None,
    };
    let peak = peak_rss_mb();
    let profile = translator
        .gpu
        .as_ref()
        .and_then(|g| g.context().profiler.as_ref())
        .map(|p| p.report());
    if let Some(p) = &profile {
        print_profile(p);
    }
    if args.json {
        let mut obj = serde_json::json!({
            "tokens_per_s": tokens_per_s, "load_s": load_s, "peak_rss_mb": peak,
            "batch": batch, "beams": args.beams.max(1), "tokens": args.tokens, "threads": threads, "device": device.as_str(),
            "quant": quant, "sentences": ids.len(), "adapter": adapter,
        });
        if let Some(t) = run.cpu_time {
            // All threads' CPU seconds in the timed batches, and seconds they waited for a CPU.
            obj["cpu_s"] = serde_json::json!(t.on_cpu);
            obj["cpu_wait_s"] = serde_json::json!(t.waiting);
            obj["seconds"] = serde_json::json!(secs);
        }
        if let Some(p) = &profile {
            obj["profile"] = serde_json::to_value(p)?;
        }
        if let Some(b) = baseline {
            obj["baseline_candle_marian_f32"] =
                serde_json::json!({"tokens_per_s": b.0, "load_s": b.1, "batch": 1});
        }
        println!("{obj}");
    } else {
        let on = match &adapter {
            Some(a) if device == Device::Gpu => format!("gpu [{a}]"),
            _ => format!("cpu, {threads} threads"),
        };
        println!("marian-wasm {quant} {on}: {tokens_per_s:.1} tokens/s (batch {batch}, {} sentences x {} tokens), load {load_s:.3} s, peak RSS {peak:.0} MB", ids.len(), args.tokens);
        if let Some(b) = baseline {
            println!(
                "candle-transformers marian f32 (batch 1): {:.1} tokens/s, load {:.3} s",
                b.0, b.1
            );
        }
    }
    Ok(())
}

/// The profile as a table on stderr: per step, then per kernel and grid.
fn print_profile(p: &marian_wasm::gpu::profile::Profile) {
    let steps = p.steps.max(1) as f64;
    eprintln!(
        "profile: {} steps; per step {:.1} dispatches, {:.2} submissions, {:.2} read-backs, host {:.3} ms encoding and {:.3} ms waiting, {}",
        p.steps,
        p.dispatches as f64 / steps,
        p.submissions as f64 / steps,
        p.read_backs as f64 / steps,
        p.encode_ns as f64 / 1e6 / steps,
        p.wait_ns as f64 / 1e6 / steps,
        match p.gpu_ns {
            Some(ns) => format!("{:.3} ms of GPU time", ns as f64 / 1e6 / steps),
            None => "no GPU times (--profile counts, or no timestamp queries on this adapter)".into(),
        }
    );
    let timed = p.gpu_ns.is_some();
    eprintln!(
        "| kernel and grid | dispatches/step | workgroups each |{}",
        if timed { " GPU µs/step | share |" } else { "" }
    );
    eprintln!("|---|---|---|{}", if timed { "---|---|" } else { "" });
    let total = p.gpu_ns.unwrap_or(0).max(1) as f64;
    for k in &p.kernels {
        let times = match k.gpu_ns {
            Some(ns) => format!(
                " {:.1} | {:.1} % |",
                ns as f64 / 1e3 / steps,
                100.0 * ns as f64 / total
            ),
            None => String::new(),
        };
        eprintln!(
            "| {} | {:.2} | {} |{times}",
            k.kernel,
            k.dispatches as f64 / steps,
            k.workgroups / k.dispatches.max(1),
        );
    }
}

mod baseline {
    use anyhow::{Context, Result};
    use candle_core::{DType, Device, IndexOp, Tensor};
    use candle_nn::VarBuilder;
    use candle_transformers::models::marian::{Config, MTModel};
    use std::path::Path;
    use std::time::Instant;

    /// (tokens per second, load seconds) of candle-transformers' marian, greedy, EOS banned.
    pub fn run(dir: &Path, ids: &[Vec<u32>], tokens: usize, eos: u32) -> Result<(f64, f64)> {
        let t0 = Instant::now();
        let cfg: Config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)
            .context("config.json for candle-transformers' marian")?;
        let weights = dir.join("model.safetensors");
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)? };
        let mut model = MTModel::new(&cfg, vb)?;
        let load_s = t0.elapsed().as_secs_f64();
        let mut one = |src: &[u32]| -> Result<()> {
            model.reset_kv_cache();
            let input = Tensor::new(src, &Device::Cpu)?.unsqueeze(0)?;
            let enc = model.encoder().forward(&input, 0)?;
            let mut last = cfg.decoder_start_token_id;
            for step in 0..tokens {
                let x = Tensor::new(&[last], &Device::Cpu)?.unsqueeze(0)?;
                let logits = model.decode(&x, &enc, step)?.i((0, 0))?;
                let mut v = logits.to_vec1::<f32>()?;
                v[eos as usize] = f32::NEG_INFINITY;
                v[cfg.pad_token_id as usize] = f32::NEG_INFINITY;
                last = v
                    .iter()
                    .enumerate()
                    .fold((0usize, f32::NEG_INFINITY), |b, (i, &x)| {
                        if x > b.1 {
                            (i, x)
                        } else {
                            b
                        }
                    })
                    .0 as u32;
            }
            Ok(())
        };
        one(&ids[0])?; // warm-up
        let t1 = Instant::now();
        for src in ids {
            one(src)?;
        }
        Ok((
            (ids.len() * tokens) as f64 / t1.elapsed().as_secs_f64(),
            load_s,
        ))
    }
}
