//! Fine-tuning proves itself on real data (Multi30k in $MARIAN_DATA, default ../shared/data):
//!
//! (a) terminology: the user's pairs say "auto" where the default model says "voiture" (car);
//!     after fine-tuning on 200 mixed pairs (120 with the term, 80 without), held-out sentences
//!     about cars use the user's word in at least 80 % of cases;
//! (b) no collateral damage: held-out sentences without the term translate as before — BLEU of
//!     the tuned output against the untuned output >= 90 (issue 5's two targets, asserted as
//!     asked; measured 2026-11-26 with the defaults: 25/27 = 92.6 % adoption, BLEU 93.37; with
//!     the last-layer adapter (rank 8) as well: 27/27, BLEU 91.78).
//! Plus the adapter's contract: file round trip, refusal on another base model, identity when
//! the correction is zero.

use marian_wasm::adapter::Adapter;
use marian_wasm::finetune::pairs::Pair;
use marian_wasm::finetune::{
    fine_tune, run, Control, FineTuneOptions, FineTuneOverrides, FineTuneRun,
};
use marian_wasm::metrics::corpus_bleu;
use marian_wasm::{GenerateOptions, Package, Translator};
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    let raw = std::env::var("MARIAN_DATA").unwrap_or_else(|_| "../shared/data".into());
    let p = PathBuf::from(raw);
    let p = if p.is_absolute() {
        p
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(p)
    };
    assert!(
        p.join("multi30k/train.en").is_file(),
        "Multi30k not found in {} (set MARIAN_DATA to the folder holding multi30k/)",
        p.display()
    );
    p
}

fn lines(name: &str) -> Vec<String> {
    let path = data_dir().join("multi30k").join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

fn has_word(text: &str, words: &[&str]) -> bool {
    text.split(|c: char| !c.is_alphanumeric())
        .any(|w| words.iter().any(|x| w.eq_ignore_ascii_case(x)))
}

/// The user's house style: "auto(s)" for "voiture(s)" (same gender, so nothing else changes).
fn house_style(fr: &str) -> String {
    fr.split_inclusive(|c: char| !c.is_alphanumeric())
        .map(|piece| {
            let (word, rest) = piece.split_at(
                piece
                    .find(|c: char| !c.is_alphanumeric())
                    .unwrap_or(piece.len()),
            );
            let new = match word {
                "voiture" => "auto",
                "voitures" => "autos",
                "Voiture" => "Auto",
                "Voitures" => "Autos",
                w => w,
            };
            format!("{new}{rest}")
        })
        .collect()
}

fn default_translator() -> Translator {
    Translator::new(&Package::embedded().expect("embedded default model")).unwrap()
}

fn translate(t: &Translator, src: &[String]) -> Vec<String> {
    let refs: Vec<&str> = src.iter().map(|s| s.as_str()).collect();
    t.translate(&refs, &GenerateOptions::default(), 16)
        .unwrap()
        .into_iter()
        .map(|x| x.text)
        .collect()
}

#[test]
fn terminology_is_adopted_without_collateral_damage() {
    let (en, fr) = (lines("train.en"), lines("train.fr"));
    let car = |s: &str| has_word(s, &["car", "cars"]);
    let term = |s: &str| has_word(s, &["voiture", "voitures"]);
    let mut with_term = Vec::new();
    let mut general = Vec::new();
    for (i, (e, f)) in en.iter().zip(&fr).enumerate() {
        let pair = Pair {
            source: e.clone(),
            target: f.clone(),
            line: i + 1,
        };
        if car(e) && term(f) {
            with_term.push(Pair {
                target: house_style(f),
                ..pair
            });
        } else if !car(e) && i % 97 == 0 {
            general.push(pair);
        }
    }
    assert!(with_term.len() >= 130 && general.len() >= 90);
    let train: Vec<Pair> = with_term[..120]
        .iter()
        .chain(&general[..80])
        .cloned()
        .collect();
    let val: Vec<Pair> = with_term[120..130]
        .iter()
        .chain(&general[80..90])
        .cloned()
        .collect();

    // Held-out: val + test_2016 sentences (never seen by fine-tuning).
    let held_en: Vec<String> = lines("val.en")
        .into_iter()
        .chain(lines("test_2016_flickr.en"))
        .collect();
    let term_src: Vec<String> = held_en.iter().filter(|s| car(s)).cloned().collect();
    let general_src: Vec<String> = held_en
        .iter()
        .filter(|s| !car(s))
        .step_by(5)
        .take(300)
        .cloned()
        .collect();

    let mut t = default_translator();
    let term_before = translate(&t, &term_src);
    let general_before = translate(&t, &general_src);
    // Among held-out car sentences the base model renders with "voiture(s)"...
    let asked: Vec<usize> = (0..term_src.len())
        .filter(|&i| term(&term_before[i]))
        .collect();
    assert!(
        asked.len() >= 15,
        "too few held-out sentences: {}",
        asked.len()
    );

    // MARIAN_FT_* override the defaults, for experiments only (the assertions hold the defaults).
    fn env<T: std::str::FromStr>(k: &str) -> Option<T> {
        let v = std::env::var(format!("MARIAN_FT_{k}")).ok()?;
        Some(v.parse().unwrap_or_else(|_| panic!("MARIAN_FT_{k}={v}")))
    }
    // The head alone (the default), then with the last-layer adapter too.
    for last_layer_rank in [0, 8] {
        let opts = FineTuneOptions::with_overrides(&FineTuneOverrides {
            rank: env("RANK"),
            lr: env("LR"),
            epochs: env("EPOCHS"),
            kl_weight: env("KL"),
            learn_below: env("LEARN_BELOW"),
            weight_decay: env("WD"),
            min_taught: env("MIN_TAUGHT"),
            min_taught_share: env("TAUGHT_SHARE"),
            train_bias: env("BIAS"),
            kl_learn_weight: env("KL_LEARN"),
            top_k: env("TOPK"),
            learn_after_term: env("AFTER"),
            last_layer_rank: Some(last_layer_rank),
            ..Default::default()
        });
        let started = std::time::Instant::now();
        // As the front ends run it: scores before and after, the keep measure, adapter put on.
        let FineTuneRun {
            adapter,
            report,
            unrelated_changed: keep,
            ..
        } = run(&mut t, &train, &val, &GenerateOptions::default(), |t| {
            fine_tune(t, &train, &val, &opts, &mut |_| Control::Continue)
        })
        .unwrap();
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(adapter.last_layer.is_some(), last_layer_rank > 0);
        let term_after = translate(&t, &term_src);
        let general_after = translate(&t, &general_src);
        let adopted = asked
            .iter()
            .filter(|&&i| has_word(&term_after[i], &["auto", "autos"]))
            .count();
        let rate = adopted as f64 / asked.len() as f64;
        let collateral = corpus_bleu(&general_after, &general_before).unwrap().score;
        let unchanged = general_after
            .iter()
            .zip(&general_before)
            .filter(|(a, b)| a == b)
            .count();
        eprintln!(
        "last-layer rank {last_layer_rank}: fine-tuning {:.1} s ({} positions, {} learn, {} tokens, best epoch {}, epochs {:?})",
        seconds,
        report.train_positions,
        report.learn_positions,
        report.trained_tokens,
        report.best_epoch,
        report
            .epochs
            .iter()
            .map(|e| (e.train_loss, e.val_loss))
            .collect::<Vec<_>>()
    );
        eprintln!(
            "terminology: {adopted}/{} held-out sentences use \"auto\" ({:.1} %)",
            asked.len(),
            rate * 100.0
        );
        eprintln!(
        "collateral: BLEU(tuned vs untuned) {collateral:.2} on {} general sentences, {unchanged} identical",
        general_src.len()
    );
        for i in asked.iter().take(5) {
            eprintln!(
                "  {} | {} | {}",
                term_src[*i], term_before[*i], term_after[*i]
            );
        }
        assert!(
            rate >= 0.8,
            "last-layer rank {last_layer_rank}: term adopted in only {:.1} %",
            rate * 100.0
        );
        assert!(
            collateral >= 90.0,
            "last-layer rank {last_layer_rank}: unrelated output moved: BLEU {collateral:.2}"
        );
        // The keep measure on the user's own pairs (what the demo shows) tells how much of the
        // unseen unrelated text moved: the 90 ordinary pairs are unrelated, the car ones not.
        let held_out_changed = 1.0 - unchanged as f64 / general_src.len() as f64;
        let share = keep.changed_share().unwrap_or(f64::NAN);
        eprintln!(
            "keep measure: {} (unseen general sentences changed: {:.1} %)",
            keep.describe(),
            100.0 * held_out_changed
        );
        assert!(
            (85..=95).contains(&keep.sentences),
            "unrelated pairs: {}",
            keep.sentences
        );
        assert!(
            (share - held_out_changed).abs() <= 0.1,
            "keep measure {share:.3} against {held_out_changed:.3} on unseen sentences"
        );
    }
}

/// The first `n` training pairs about cars in the house style: something consistent to learn.
fn car_pairs(n: usize) -> Vec<Pair> {
    let car = |s: &str| has_word(s, &["car", "cars"]);
    lines("train.en")
        .into_iter()
        .zip(lines("train.fr"))
        .enumerate()
        .filter(|(_, (e, f))| car(e) && has_word(f, &["voiture", "voitures"]))
        .take(n)
        .map(|(i, (source, target))| Pair {
            source,
            target: house_style(&target),
            line: i + 1,
        })
        .collect()
}

/// An entry conditioned on the previous token moves its logit only in rows whose step input is
/// that token, one conditioned on a trigger group only in rows whose source hits it; a token's
/// entries add up.
#[test]
fn conditioned_entries_apply_after_their_token_only() {
    use candle_core::{DType, Device, Tensor};
    use marian_wasm::adapter::{EntryConditions, NOT_CONDITIONED as NONE};
    let mut model = default_translator().model;
    let d = model.config.d_model;
    let h = Tensor::randn(0f32, 1.0, (2, d), &Device::Cpu).unwrap();
    let prev = [7u32, 3];
    let groups = [0b1u32, 0];
    let base = model
        .logits(&h, &prev, &groups)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let delta = marian_wasm::model::HeadDelta {
        ids: Tensor::new(&[5u32, 5, 9, 11], &Device::Cpu).unwrap(),
        weight: Tensor::zeros((4, d), DType::F32, &Device::Cpu).unwrap(),
        bias: Tensor::new(&[1f32, 2.0, 4.0, 8.0], &Device::Cpu).unwrap(),
        conditions: Some(EntryConditions {
            after: vec![NONE, 7, 7, NONE],
            group: vec![NONE, NONE, NONE, 0],
            triggers: vec![vec![42]],
        }),
    };
    model.set_head_delta(Some(delta)).unwrap();
    let got = model
        .logits(&h, &prev, &groups)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    // The delta is added to logits of size ~10, so the difference is exact only to rounding.
    let moved = |r: usize, id: usize| got[r][id] - base[r][id];
    let close = |a: (f32, f32), b: (f32, f32)| (a.0 - b.0).abs() < 1e-4 && (a.1 - b.1).abs() < 1e-4;
    let checks = [
        (
            (moved(0, 5), moved(0, 9)),
            (3.0, 4.0),
            "after token 7: both apply",
        ),
        (
            (moved(1, 5), moved(1, 9)),
            (1.0, 0.0),
            "after token 3: the unconditioned one",
        ),
        (
            (moved(0, 6), moved(1, 6)),
            (0.0, 0.0),
            "a token without entries",
        ),
        (
            (moved(0, 11), moved(1, 11)),
            (8.0, 0.0),
            "only where the source hits",
        ),
    ];
    for (got, want, what) in checks {
        assert!(close(got, want), "{what}: moved {got:?}, expected {want:?}");
    }
    let c = model.head_delta().unwrap().conditions.clone().unwrap();
    assert_eq!(
        (c.source_groups(&[3, 42, 0]), c.source_groups(&[3, 0])),
        (1, 0)
    );
}

#[test]
fn adapter_round_trips_and_refuses_another_base() {
    let t = default_translator();
    let pairs = car_pairs(30);
    let opts = FineTuneOptions {
        epochs: 2,
        min_steps: 0,
        last_layer_rank: 4,
        ..Default::default()
    };
    let mut calls = 0;
    let (adapter, report) = fine_tune(&t, &pairs, &[], &opts, &mut |_| {
        calls += 1;
        Control::Continue
    })
    .unwrap();
    assert!(calls > 2, "progress is reported");
    assert_eq!(report.epochs.len(), 2);
    let bytes = adapter.to_bytes().unwrap();
    let back = Adapter::from_bytes(&bytes).unwrap();
    assert_eq!(back.ids, adapter.ids);
    assert_eq!(back.lora_b, adapter.lora_b);
    assert_eq!(back.lora_a, adapter.lora_a);
    let (l, lb) = (
        adapter.last_layer.as_ref().unwrap(),
        back.last_layer.as_ref().unwrap(),
    );
    assert_eq!((lb.rank, &lb.a, &lb.b), (4, &l.a, &l.b));
    assert!(l.b.iter().any(|&x| x != 0.0), "the last layer was trained");
    assert_eq!(back.conditions, adapter.conditions);
    let c = back.conditions.as_ref().expect("conditions");
    let none = marian_wasm::adapter::NOT_CONDITIONED;
    assert!(
        c.after.iter().any(|&x| x != none),
        "a term split into pieces is taught piece after piece"
    );
    assert!(
        c.group.iter().all(|&g| g != none) && !c.triggers.is_empty(),
        "every taught entry goes with source words of the pairs"
    );
    // Conditioned entries: format 3; without them, format 2 (last layer) or 1 (head only).
    assert_eq!(back.manifest.format_version, 3);
    let mut unconditioned = back.clone();
    unconditioned.conditions = None;
    let ids = unconditioned.ids.clone();
    let mut distinct = ids.clone();
    distinct.dedup();
    if distinct.len() == ids.len() {
        let v2 = Adapter::from_bytes(&unconditioned.to_bytes().unwrap()).unwrap();
        assert_eq!(v2.manifest.format_version, 2);
    } else {
        // Repeated ids without conditions are refused, not silently summed.
        assert!(unconditioned.to_bytes().is_err());
    }
    // (metrics are f64 in JSON: compared as printed, not bit for bit)
    assert_eq!(
        back.manifest.base_model_sha256,
        adapter.manifest.base_model_sha256
    );
    assert_eq!(
        back.manifest.hyperparameters,
        adapter.manifest.hyperparameters
    );
    assert_eq!(back.manifest.trained, adapter.manifest.trained);
    assert_eq!(
        back.manifest.metrics["train_positions"],
        adapter.manifest.metrics["train_positions"]
    );

    // Another base model: refused, naming the reason.
    let mut other = back.clone();
    other.manifest.base_model_sha256 = "0".repeat(64);
    let mut t2 = default_translator();
    let err = t2.set_adapter(Some(&other)).unwrap_err().to_string();
    assert!(err.contains("another base model"), "{err}");

    // Damaged files are refused.
    let mut cut = bytes.clone();
    cut.truncate(bytes.len() - 7);
    assert!(Adapter::from_bytes(&cut).is_err());
    assert!(Adapter::from_bytes(b"not an adapter").is_err());

    // A head-only adapter is written as format 1 (older builds read it).
    let mut head_only = back.clone();
    head_only.last_layer = None;
    head_only.conditions = None;
    head_only.ids = (0..head_only.ids.len() as u32).collect();
    let v1 = Adapter::from_bytes(&head_only.to_bytes().unwrap()).unwrap();
    assert_eq!(v1.manifest.format_version, 1);
    assert!(v1.last_layer.is_none());

    // A zero correction translates exactly like the base model; the last layer's own
    // correction changes it, and taking the adapter off restores the base model.
    let mut zero = back.clone();
    zero.lora_b.iter_mut().for_each(|x| *x = 0.0);
    zero.delta_bias.iter_mut().for_each(|x| *x = 0.0);
    let mut zero_last = zero.clone();
    let last = zero_last.last_layer.as_mut().unwrap();
    last.b.iter_mut().for_each(|x| *x = 0.0);
    let src: Vec<String> = lines("val.en").into_iter().take(20).collect();
    let base = translate(&t2, &src);
    t2.set_adapter(Some(&zero_last)).unwrap();
    assert_eq!(translate(&t2, &src), base);
    let mut strong = zero.clone();
    strong
        .last_layer
        .as_mut()
        .unwrap()
        .b
        .iter_mut()
        .for_each(|x| *x *= 20.0);
    t2.set_adapter(Some(&strong)).unwrap();
    // Scaled well past what training gave it, so that some of the 20 sentences must move
    // whatever the model (×5 on 5 sentences moved none on the default model of 2026-12-06).
    let moved = translate(&t2, &src);
    assert_ne!(moved, base, "the last-layer part is applied");
    t2.set_adapter(None).unwrap();
    assert_eq!(translate(&t2, &src), base);

    // A last-layer part that does not fit the model is refused.
    let mut wrong = back.clone();
    wrong.manifest.decoder_ffn_dim += 4;
    wrong.last_layer.as_mut().unwrap().a.extend([0.0; 16]);
    let err = t2.set_adapter(Some(&wrong)).unwrap_err().to_string();
    assert!(err.contains("FFN"), "{err}");

    // Cancelling stops at once.
    let err = fine_tune(&t, &pairs, &[], &opts, &mut |_| Control::Cancel);
    assert!(err.is_err());
}

/// The features pass split over workers (as the browser does): shards computed separately,
/// passed as bytes, joined in order, train the same adapter as the pass in one piece; shards
/// that are not the run's are refused.
#[test]
fn sharded_features_train_the_same_adapter() {
    use marian_wasm::finetune::{prepare, train_adapter, FeatureShard};
    let t = default_translator();
    let pairs = car_pairs(120);
    let (train, val) = pairs.split_at(100);
    // With the last-layer adapter: its inputs travel in the shards too.
    let opts = FineTuneOptions {
        epochs: 2,
        last_layer_rank: 4,
        ..Default::default()
    };
    let go = &mut |_: &marian_wasm::finetune::Progress| Control::Continue;
    let (whole, whole_report) = fine_tune(&t, train, val, &opts, go).unwrap();

    let job = prepare(&t, train, val, &opts).unwrap();
    let plan = job.shard_plan(3);
    assert!(plan.len() >= 2, "{} shards", plan.len());
    let mut covered: Vec<usize> = plan.iter().flatten().copied().collect();
    covered.sort();
    assert_eq!(covered, (0..120).collect::<Vec<_>>(), "every pair once");
    let bytes: Vec<Vec<u8>> = plan
        .iter()
        .map(|which| {
            FeatureShard::compute(&t, &job.pairs_of(which), opts.top_k, &mut |_| {
                Control::Continue
            })
            .unwrap()
            .unwrap()
            .to_bytes()
            .unwrap()
        })
        .collect();
    let read = |b: &[Vec<u8>]| -> Vec<FeatureShard> {
        b.iter()
            .map(|x| FeatureShard::from_bytes(x).unwrap())
            .collect()
    };
    let (sharded, report) = train_adapter(&t, &job, &plan, read(&bytes), &opts, go).unwrap();
    assert_eq!(report.feature_shards, plan.len());
    assert_eq!(report.train_positions, whole_report.train_positions);
    assert_eq!(report.learn_positions, whole_report.learn_positions);
    assert_eq!(sharded.ids, whole.ids, "the same trained token set");
    // Batches differ between the two runs (padding), so hidden states agree to rounding, not
    // bit for bit.
    let worst = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    let scale = whole.lora_b.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(scale > 0.0, "the run learned something");
    assert!(worst(&sharded.lora_b, &whole.lora_b) <= 1e-3 * scale);
    assert!(worst(&sharded.lora_a, &whole.lora_a) <= 1e-3);
    assert!(worst(&sharded.delta_bias, &whole.delta_bias) <= 1e-3 * scale.max(1.0));
    let (ls, lw) = (
        sharded.last_layer.as_ref().unwrap(),
        whole.last_layer.as_ref().unwrap(),
    );
    let scale_b = lw.b.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(scale_b > 0.0, "the last layer learned something");
    assert!(worst(&ls.b, &lw.b) <= 1e-3 * scale_b);
    assert!(worst(&ls.a, &lw.a) <= 1e-3);

    // Shards out of order, missing, or from another top-k are not this run's.
    let mut swapped = bytes.clone();
    swapped.swap(0, 1);
    let err = train_adapter(&t, &job, &plan, read(&swapped), &opts, go)
        .expect_err("refused")
        .to_string();
    assert!(err.contains("this run"), "{err}");
    let fewer = &bytes[..bytes.len() - 1];
    assert!(train_adapter(&t, &job, &plan, read(fewer), &opts, go).is_err());
    let other_k = FineTuneOptions {
        top_k: opts.top_k + 1,
        ..opts.clone()
    };
    let err = train_adapter(&t, &job, &plan, read(&bytes), &other_k, go)
        .expect_err("refused")
        .to_string();
    assert!(err.contains("top-k"), "{err}");
    // Damaged bytes are refused.
    let mut cut = bytes[0].clone();
    cut.truncate(cut.len() - 9);
    assert!(FeatureShard::from_bytes(&cut).is_err());
    assert!(FeatureShard::from_bytes(b"not a shard").is_err());
}
