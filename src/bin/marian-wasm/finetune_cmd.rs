//! `marian-wasm finetune`: train an adapter on sentence pairs, with a progress line, a report of
//! every skipped pair, loss per epoch and BLEU/chrF on the held-out pairs before and after.

use anyhow::{bail, Context, Result};
use marian_wasm::finetune::pairs::{parse_pairs, split_validation, Pair};
use marian_wasm::finetune::{
    fine_tune, Control, FineTuneOptions, FineTuneOverrides, FineTuneRun, Progress,
};
use marian_wasm::GenerateOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct FinetuneArgs {
    /// Base package folder; without it, the embedded default model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Training pairs: TSV (source<TAB>target) or JSON lines ({"source", "target"}).
    #[arg(long)]
    pairs: PathBuf,
    /// Held-out pairs for selection and the before/after scores; without it, a fraction of
    /// --pairs (--val-fraction) is held out, spread evenly.
    #[arg(long)]
    val: Option<PathBuf>,
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// A multi-target model's output language (as `translate --target-language`): put before
    /// every pair's source, in training and in the before/after translations.
    #[arg(long)]
    target_language: Option<String>,
    /// Where to write the adapter (a .safetensors file).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    options: FineTuneOverrides,
    /// Refuse to train when any pair is bad (default: report it and skip it).
    #[arg(long)]
    strict: bool,
    /// Beams for the before/after translation of the held-out pairs.
    #[arg(long)]
    beams: Option<usize>,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Where the frozen model runs over the pairs (and the held-out pairs are translated);
    /// training itself runs on the CPU.
    #[arg(long, value_enum, default_value = "cpu")]
    device: crate::cli::DeviceArg,
}

fn read_pairs(path: &Path, strict: bool) -> Result<Vec<Pair>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let set = parse_pairs(&bytes);
    for issue in &set.issues {
        eprintln!(
            "{}:{}: {} ({})",
            path.display(),
            issue.line,
            issue.reason,
            if strict { "rejected" } else { "skipped" }
        );
    }
    if strict && !set.issues.is_empty() {
        bail!(
            "{}: {} bad pairs (--strict); fix them or drop --strict to skip them",
            path.display(),
            set.issues.len()
        );
    }
    if set.pairs.is_empty() {
        bail!("{}: no usable pairs", path.display());
    }
    Ok(set.pairs)
}

pub fn run(a: FinetuneArgs) -> Result<()> {
    let o = FineTuneOptions::with_overrides(&a.options);
    o.validate()?;

    let all = read_pairs(&a.pairs, a.strict)?;
    let (train, val) = match &a.val {
        Some(v) => (all, read_pairs(v, a.strict)?),
        None => split_validation(all, a.val_fraction),
    };
    eprintln!(
        "{} training pairs, {} held-out pairs{}",
        train.len(),
        val.len(),
        if a.val.is_none() && !val.is_empty() {
            " (every ~10th of --pairs)"
        } else {
            ""
        }
    );
    let mut translator = crate::cli::load_translator_on(a.model.as_deref(), None, a.device)?;
    if a.target_language.is_some() {
        translator.language_prefix(a.target_language.as_deref(), &[])?;
        translator.target_language = a.target_language.clone();
    }
    let gen = GenerateOptions {
        num_beams: a.beams,
        ..Default::default()
    };

    // Ctrl-C cancels cleanly: the best correction so far is still written.
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let c = cancel.clone();
        // A second handler cannot be installed in one process: only then is this an error.
        let _ = ctrlc::set_handler(move || c.store(true, Ordering::SeqCst));
    }
    let mut last_draw = std::time::Instant::now() - std::time::Duration::from_secs(1);
    let mut on_progress = |p: &Progress| {
        if last_draw.elapsed().as_millis() >= 100 || p.step == p.steps {
            last_draw = std::time::Instant::now();
            let width = 24;
            let filled = (p.step * width) / p.steps.max(1);
            let bar: String = "#".repeat(filled) + &"-".repeat(width - filled);
            let what = if p.phase == "features" {
                format!("running the model over the pairs {}/{}", p.step, p.steps)
            } else {
                format!(
                    "epoch {}/{} step {}/{} loss {:.4}",
                    p.epoch, p.epochs, p.step, p.steps, p.loss
                )
            };
            eprint!("\r[{bar}] {what} ETA {:.0}s   ", p.eta_seconds);
            let _ = std::io::stderr().flush();
        }
        if cancel.load(Ordering::SeqCst) {
            Control::Cancel
        } else {
            Control::Continue
        }
    };
    let FineTuneRun {
        adapter,
        report,
        val_before,
        val_after,
        unrelated_changed,
    } = marian_wasm::finetune::run(&mut translator, &train, &val, &gen, |t| {
        fine_tune(t, &train, &val, &o, &mut on_progress)
    })?;
    let before = val_before.map(serde_json::to_value).transpose()?;
    let after = val_after.map(serde_json::to_value).transpose()?;
    eprintln!();
    for e in &report.epochs {
        eprintln!(
            "epoch {}: train loss {:.4}{} ({:.1} s)",
            e.epoch,
            e.train_loss,
            e.val_loss
                .map(|v| format!(", held-out loss {v:.4}"))
                .unwrap_or_default(),
            e.seconds
        );
    }
    for r in &report.rollbacks {
        eprintln!("warning: {r}");
    }
    if report.cancelled {
        eprintln!(
            "cancelled: keeping the best epoch so far ({})",
            report.best_epoch
        );
    }
    adapter.write(&a.out)?;
    let size = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "adapter": a.out,
                "bytes": size,
                "report": report,
                "val_before": before,
                "val_after": after,
                "unrelated_changed": unrelated_changed,
            })
        );
    } else {
        let fmt = |s: &Option<serde_json::Value>| match s {
            Some(v) => format!(
                "BLEU {:.2} chrF {:.2}",
                v["bleu"].as_f64().unwrap_or(f64::NAN),
                v["chrf"].as_f64().unwrap_or(f64::NAN)
            ),
            None => "n/a (no held-out pairs)".into(),
        };
        eprintln!("held-out before: {}", fmt(&before));
        eprintln!("held-out after:  {}", fmt(&after));
        eprintln!(
            "unrelated sentences changed: {}",
            unrelated_changed.describe()
        );
        eprintln!(
            "wrote {} ({:.1} KB: {} target tokens, best epoch {}); features {:.1} s on the {} (frozen model {:.1} s, vocabulary {:.1} s), training {:.1} s",
            a.out.display(),
            size as f64 / 1024.0,
            report.trained_tokens,
            report.best_epoch,
            report.feature_seconds,
            report.feature_device.to_uppercase(),
            report.frozen_model_seconds,
            report.vocabulary_seconds,
            report.train_seconds
        );
    }
    Ok(())
}
