//! Parity with Hugging Face transformers on the committed fixtures (expected.json made by
//! scripts/make_fixtures.py): tokenizer ids, decoded text, generated ids (greedy, beam,
//! batched, max_length, length_penalty) and logits.

use crate::common::*;
use marian_wasm::generate::{generate, top_k_of_row, GenerateOptions, Select};
use marian_wasm::package::convert::{convert_with, ConvertOptions};
use marian_wasm::package::fidelity::Target;
use marian_wasm::package::quant::Quant;
use marian_wasm::package::Package;
use marian_wasm::Translator;
use serde_json::Value;

fn sentences(exp: &Value) -> &Vec<Value> {
    exp["sentences"].as_array().unwrap()
}

fn run(t: &Translator, srcs: &[Vec<u32>], opts: GenerateOptions) -> Vec<Vec<u32>> {
    let g = t.generation_for(&opts).unwrap();
    generate(&t.model, srcs, &g).unwrap()
}

fn opts(beams: usize) -> GenerateOptions {
    GenerateOptions {
        num_beams: Some(beams),
        ..Default::default()
    }
}

#[test]
fn source_tokenization_is_id_exact() {
    for fx in fixtures() {
        let exp = expected(&fx);
        let t = translator(&fx, Quant::F32);
        let cases = exp["tokenize"].as_array().unwrap();
        assert!(cases.len() >= 20);
        for case in cases {
            let text = case["text"].as_str().unwrap();
            assert_eq!(
                t.tokenizer.encode(text).unwrap(),
                ids(&case["ids"]),
                "{}: tokenizing {text:?}",
                name(&fx)
            );
        }
    }
}

#[test]
fn target_decoding_is_text_exact() {
    for fx in fixtures() {
        let exp = expected(&fx);
        let t = translator(&fx, Quant::F32);
        for case in exp["decode"].as_array().unwrap() {
            // Deliberate difference: with separate vocabularies transformers 5 does not skip
            // the target `<pad>` (its special ids come from the source vocab) and prints
            // "<pad> " before every translation; we skip it (see README).
            let want = case
                .get("text_strip_target_pad")
                .unwrap_or(&case["text"])
                .as_str()
                .unwrap();
            assert_eq!(
                t.tokenizer.decode(&ids(&case["ids"])),
                want,
                "{}: decoding {}",
                name(&fx),
                case["ids"]
            );
        }
    }
}

/// Every fixture sentence, each decoding mode, against HF's generate() output.
#[test]
fn f32_generation_is_token_identical_to_transformers() {
    for fx in fixtures() {
        let exp = expected(&fx);
        let t = translator(&fx, Quant::F32);
        let sents = sentences(&exp);
        let srcs: Vec<Vec<u32>> = sents.iter().map(|s| ids(&s["src_ids"])).collect();
        for (s, src) in sents.iter().zip(&srcs) {
            assert_eq!(
                t.tokenizer.encode(s["src"].as_str().unwrap()).unwrap(),
                *src
            );
        }
        let modes: Vec<(&str, GenerateOptions)> = vec![
            ("greedy", opts(1)),
            ("beam4", opts(4)),
            (
                "greedy_max8",
                GenerateOptions {
                    num_beams: Some(1),
                    max_length: Some(8),
                    ..Default::default()
                },
            ),
            (
                "beam4_lp",
                GenerateOptions {
                    num_beams: Some(4),
                    max_length: Some(20),
                    length_penalty: Some(0.6),
                    ..Default::default()
                },
            ),
        ];
        for (key, o) in modes {
            // One sentence at a time, exactly as the fixture was recorded.
            for (s, src) in sents.iter().zip(&srcs) {
                let got = run(&t, std::slice::from_ref(src), o.clone());
                assert_eq!(got[0], ids(&s[key]), "{} {key}: {}", name(&fx), s["src"]);
            }
        }
        // The whole set as one padded batch.
        for (key, beams) in [("greedy_batched", 1), ("beam4_batched", 4)] {
            let got = run(&t, &srcs, opts(beams));
            for (i, s) in sents.iter().enumerate() {
                assert_eq!(
                    got[i],
                    ids(&s[key]),
                    "{} {key} #{i}: {}",
                    name(&fx),
                    s["src"]
                );
            }
        }
    }
}

/// 40 more sentences through beam search with other beam counts and length penalties.
#[test]
fn f32_beam_search_matches_on_extra_sentences() {
    for fx in fixtures() {
        let exp = expected(&fx);
        let t = translator(&fx, Quant::F32);
        let modes: Vec<(&str, GenerateOptions)> = vec![
            ("beam4", opts(4)),
            (
                "beam4_lp",
                GenerateOptions {
                    num_beams: Some(4),
                    max_length: Some(20),
                    length_penalty: Some(0.6),
                    ..Default::default()
                },
            ),
            (
                "beam5_lp2_max24",
                GenerateOptions {
                    num_beams: Some(5),
                    max_length: Some(24),
                    length_penalty: Some(2.0),
                    ..Default::default()
                },
            ),
        ];
        let extra = exp["beam_extra"].as_array().unwrap();
        assert!(extra.len() >= 40);
        for case in extra {
            let src = t.tokenizer.encode(case["src"].as_str().unwrap()).unwrap();
            for (key, o) in &modes {
                let got = run(&t, std::slice::from_ref(&src), o.clone());
                assert_eq!(
                    got[0],
                    ids(&case[*key]),
                    "{} {key}: {}",
                    name(&fx),
                    case["src"]
                );
            }
        }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Teacher-forced logits for the first steps: (max |diff|, min cosine) against HF.
fn logits_vs_hf(t: &Translator, exp: &Value) -> (f32, f64) {
    let sents = sentences(exp);
    let mut max_diff = 0f32;
    let mut min_cos = 1f64;
    for case in exp["logits"].as_array().unwrap() {
        let src = match &case["src"] {
            Value::Number(n) => ids(&sents[n.as_u64().unwrap() as usize]["src_ids"]),
            Value::String(s) => t.tokenizer.encode(s).unwrap(),
            other => panic!("unexpected src {other}"),
        };
        let (enc, mask) = t.model.encode(&[src]).unwrap();
        let mut state = t.model.start_decoding(&enc, &mask, 1).unwrap();
        let inputs = ids(&case["decoder_input_ids"]);
        for (step, want) in case["logits"].as_array().unwrap().iter().enumerate() {
            let want: Vec<f32> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            let got = t
                .model
                .decode_step(&mut state, &inputs[step..step + 1])
                .unwrap();
            let got = got.to_vec2::<f32>().unwrap().remove(0);
            assert_eq!(got.len(), want.len());
            for (a, b) in got.iter().zip(&want) {
                max_diff = max_diff.max((a - b).abs());
            }
            min_cos = min_cos.min(cosine(&got, &want));
        }
    }
    (max_diff, min_cos)
}

#[test]
fn f32_logits_match_within_1e4() {
    for fx in fixtures() {
        let exp = expected(&fx);
        let (diff, _) = logits_vs_hf(&translator(&fx, Quant::F32), &exp);
        assert!(diff < 1e-4, "{}: max |logit diff| {diff}", name(&fx));
    }
}

/// Quantized packages: logits stay close (measured bounds, with margin) and most
/// sentences still decode to the same tokens.
#[test]
fn quantized_packages_stay_within_measured_bounds() {
    // (quant, min logit cosine, min share of identical greedy outputs); measured with GPTQ
    // rounding (2026-12-01): q8 0.999986 / 75 %, q4 0.999140 / 33 % at worst.
    let bounds = [
        (Quant::F16, 0.99999, 1.0),
        (Quant::Q8, 0.99998, 0.7),
        (Quant::Q4, 0.999, 0.3),
    ];
    for fx in fixtures() {
        let exp = expected(&fx);
        let sents = sentences(&exp);
        let srcs: Vec<Vec<u32>> = sents.iter().map(|s| ids(&s["src_ids"])).collect();
        for (q, min_cos, min_same) in bounds {
            let t = translator(&fx, q);
            let (diff, cos) = logits_vs_hf(&t, &exp);
            let got = run(&t, &srcs, opts(1));
            let same = sents
                .iter()
                .zip(&got)
                .filter(|(s, g)| ids(&s["greedy"]) == **g)
                .count() as f64
                / sents.len() as f64;
            eprintln!(
                "{} {q}: min logit cosine {cos:.6}, max |diff| {diff:.4}, identical greedy {:.0}%",
                name(&fx),
                same * 100.0
            );
            assert!(
                cos >= min_cos,
                "{} {q}: logit cosine {cos} < {min_cos}",
                name(&fx)
            );
            assert!(same >= min_same, "{} {q}: only {same} identical", name(&fx));
        }
    }
}

/// Fine-tuning's one-pass teacher forcing (causal mask over whole targets, several lengths in
/// one padded batch) gives the hidden states step-by-step decoding gives, and the output
/// projection restricted to a few rows gives those columns of the full logits.
#[test]
fn teacher_forced_pass_matches_step_by_step_decoding() {
    for fx in fixtures() {
        let exp = expected(&fx);
        for quant in [Quant::F32, Quant::Q8] {
            let t = translator(&fx, quant);
            // The f32 math fine-tuning runs (a q8 package dequantized).
            let model = t.model.dequantized().unwrap();
            let sents = sentences(&exp);
            let srcs: Vec<Vec<u32>> = sents.iter().map(|s| ids(&s["src_ids"])).collect();
            let outs: Vec<Vec<u32>> = sents.iter().map(|s| ids(&s["greedy"])).collect();
            let start = t.generation.decoder_start_token_id;
            // Decoder inputs: the generated ids minus their last (they begin with the start id).
            let inputs: Vec<Vec<u32>> = outs
                .iter()
                .map(|o| {
                    assert_eq!(o[0], start);
                    o[..o.len() - 1].to_vec()
                })
                .collect();
            assert!(inputs.iter().map(|x| x.len()).min() < inputs.iter().map(|x| x.len()).max());
            let (enc, mask) = model.encode(&srcs).unwrap();
            let (whole, ffn_input) = model.decode_teacher_forced(&enc, &mask, &inputs).unwrap();
            // The last layer's FFN input through the frozen tail (what a last-layer adapter
            // trains through) gives the same hidden states.
            let tail = model.frozen_tail().unwrap();
            let d = ffn_input.dim(2).unwrap();
            let (_, pre) = tail.ffn(&ffn_input.reshape(((), d)).unwrap()).unwrap();
            let pre = pre.reshape(whole.shape()).unwrap();
            let again =
                candle_nn::ops::layer_norm(&pre, &tail.norm_weight, &tail.norm_bias, 1e-5).unwrap();
            let gap = (again - &whole)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                gap < 1e-4,
                "{} {quant:?}: frozen tail differs by {gap}",
                name(&fx)
            );
            let mut state = model.start_decoding(&enc, &mask, 1).unwrap();
            let steps = inputs.iter().map(|x| x.len()).max().unwrap();
            let mut worst = 0f32;
            for step in 0..steps {
                let tokens: Vec<u32> = inputs.iter().map(|x| *x.get(step).unwrap_or(&0)).collect();
                let h = model.decode_hidden(&mut state, &tokens).unwrap();
                for (r, inp) in inputs.iter().enumerate() {
                    if step >= inp.len() {
                        continue;
                    }
                    let a = h.get(r).unwrap().to_vec1::<f32>().unwrap();
                    let b = whole
                        .get(r)
                        .unwrap()
                        .get(step)
                        .unwrap()
                        .to_vec1::<f32>()
                        .unwrap();
                    for (x, y) in a.iter().zip(&b) {
                        worst = worst.max((x - y).abs());
                    }
                }
            }
            assert!(worst < 1e-4, "{} {quant:?}: max |diff| {worst}", name(&fx));

            // Head rows: the package's own (not dequantized) projection, q8 rows copied as stored.
            let h = whole.get(0).unwrap();
            let full = t.model.base_logits(&h).unwrap().to_vec2::<f32>().unwrap();
            let v = t.model.target_vocab_size() as u32;
            let pick = [v - 1, 0, 7, v / 2, 3];
            let rows = t.model.head_rows(&pick).unwrap().logits(&h).unwrap();
            let rows = rows.to_vec2::<f32>().unwrap();
            for (p, row) in full.iter().enumerate() {
                for (j, &id) in pick.iter().enumerate() {
                    let d = (row[id as usize] - rows[p][j]).abs();
                    assert!(
                        d <= 1e-5,
                        "{} {quant:?}: head row {id} differs by {d}",
                        name(&fx)
                    );
                }
            }
            assert!(t.model.head_rows(&[v]).is_err());
        }
    }
}

/// The quantized packages against transformers' own output on held-out sentences (heldout.json:
/// 1 000 Multi30k test_2016 sentences no fixture trained on, made by
/// scripts/make_heldout_references.py), greedy and beam 4: the share of sentences with identical
/// ids and the BLEU of our decoded output against transformers' decoded output. Trained models,
/// not random weights, where near-ties would hide drift.
#[test]
fn quantized_output_stays_close_to_transformers_on_held_out_sentences() {
    // (quant, min share identical, min BLEU against transformers' output). The quantized bounds
    // are what the packages reach today with GPTQ rounding (2026-12-01: q8 87.1 / 86.5 %
    // identical, BLEU 95.4 / 94.9 on tiny-opus, greedy / beam 4; 97.3 / 95.5 %, 99.4 / 98.9 on
    // tiny-switches; q4 52.6 / 60.9 %, BLEU 80.7 / 83.5 and 69.3 / 66.1 %, 93.9 / 90.5), a
    // little below, so that drift cannot grow unseen. Rounding each weight to nearest instead
    // gives q4 BLEU 75.5 on tiny-opus (and the GGML reference rounding of before 74.1): under
    // the q4 bound. Issue 17's q8 target (>= 97 % and BLEU >= 98) is met on tiny-switches
    // greedy only: on tiny-opus 8-bit weights stay the cause (every weight matrix in f16:
    // 99.3 %; the tied embedding alone in f16: 92.5 %), not the 16-bit activations.
    //
    // q8 with the embeddings (and so the tied output projection) kept at f16 (`convert
    // --keep-f16 embeddings`, multiplied through `screened_head`), 2026-12-04: 95.3 / 93.7 %,
    // BLEU 98.4 / 97.8 on tiny-opus (the model kept aside, d_model 128, through the CLI: 99.5 /
    // 99.0 %, BLEU 99.8 / 99.5, against 95.2 / 97.0 % in plain q8); tiny-switches' embeddings
    // (d_model 48, no whole blocks) are f16 in either package.
    let keep = |q: Quant| ConvertOptions {
        keep_f16: vec!["embeddings".into()],
        ..ConvertOptions::new(q)
    };
    // q8 with a Q4_0 residual (`convert --residual`, 2026-12-05): on the embeddings, what f16
    // embeddings give (tiny-opus 94.7 / 92.9 %, BLEU 98.03 / 97.49); on the embeddings and the
    // decoder's matrices, issue 17's targets (tiny-opus 97.6 / 97.8 %, BLEU 98.97 / 99.18;
    // tiny-switches, whose embeddings are f16 anyway, 98.1 / 97.7 %, 99.46 / 99.37).
    // q4 with the decoder's matrices at q8 (`convert --quant q4 --keep-q8 decoder.`,
    // 2026-12-05): issue 17's q4 target (BLEU >= 90) on tiny-opus, 81.8 / 79.7 %, BLEU 93.10 /
    // 92.48 (plain q4: 80.66 / 83.48); tiny-switches 97.6 / 95.1 %, 99.48 / 98.85.
    let keep_q8_decoder = ConvertOptions {
        keep_q8: vec!["decoder.".into()],
        ..ConvertOptions::new(Quant::Q4)
    };
    let auto = |q: Quant| ConvertOptions {
        fidelity: Target::default_for(q),
        ..ConvertOptions::new(q)
    };
    let residual = |parts: &str| ConvertOptions {
        residual: parts.split(',').map(String::from).collect(),
        ..ConvertOptions::new(Quant::Q8)
    };
    let bounds = [
        // f32: batches of 32 sentences, padded, against transformers one sentence at a time; a
        // padded batch rounds differently, and of these 2 000 runs one degenerate output (a word
        // repeated 15 times, beam 4) ends differently; alone, it is identical.
        ("f32", ConvertOptions::new(Quant::F32), 0.998, 99.9),
        ("q8", ConvertOptions::new(Quant::Q8), 0.855, 94.5),
        ("q8 + f16 embeddings", keep(Quant::Q8), 0.93, 97.3),
        (
            "q8 + residual embeddings",
            residual("embeddings"),
            0.93,
            97.3,
        ),
        (
            "q8 + residual embeddings, decoder",
            residual("embeddings,decoder."),
            0.97,
            98.0,
        ),
        // What `convert --quant q8` writes by default (`--fidelity auto`): the residual chosen
        // by measuring against the f32 model — the embeddings' and the decoder's on both
        // fixtures (2026-12-06 (night): tiny-opus 98.8 / 97.8 %, BLEU 99.63 / 99.35;
        // tiny-switches 99.4 / 99.1 %, 99.84 / 99.75, where the decoder's residual adds 5 % to
        // a decoder step's bytes: only its FFN output matrices are q8). Issue 17's q8 target.
        (
            "q8 as convert writes it (fidelity auto)",
            auto(Quant::Q8),
            0.97,
            98.0,
        ),
        ("q4", ConvertOptions::new(Quant::Q4), 0.50, 80.0),
        ("q4 + q8 decoder", keep_q8_decoder, 0.78, 92.0),
        // q4 by default: the decoder at q8 where plain q4 misses BLEU 90 against the f32 model
        // on sampled sentences (tiny-opus; tiny-switches' plain q4 measures 93.9 / 90.5 here).
        (
            "q4 as convert writes it (fidelity auto)",
            auto(Quant::Q4),
            0.65,
            90.0,
        ),
    ];
    let mut checked = 0;
    for fx in fixtures() {
        let Ok(text) = std::fs::read_to_string(fx.join("heldout.json")) else {
            continue;
        };
        let held: Value = serde_json::from_str(&text).unwrap();
        for (q, options, min_same, min_bleu) in &bounds {
            let dir = tempfile::tempdir().unwrap();
            convert_with(&fx, dir.path(), options).unwrap();
            let t = Translator::new(&Package::read_dir(dir.path()).unwrap()).unwrap();
            assert_close_to_heldout(
                &t,
                &held,
                &format!("{} {q}", name(&fx)),
                *min_same,
                *min_bleu,
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 2,
        "heldout.json missing: run scripts/make_heldout_references.py"
    );
}

/// Translates a held-out reference's sources (`src_ids`, in padded batches of 32) greedily and
/// with beam 4 and asserts that at least `min_same` (0..=1) of the outputs are token-identical
/// to transformers' (`greedy`, `beam4`) and that their BLEU against transformers' decoded
/// output is at least `min_bleu`.
fn assert_close_to_heldout(t: &Translator, held: &Value, what: &str, min_same: f64, min_bleu: f64) {
    let srcs: Vec<Vec<u32>> = held["src_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect();
    for (key, beams) in [("greedy", 1), ("beam4", 4)] {
        let hf: Vec<Vec<u32>> = held[key].as_array().unwrap().iter().map(ids).collect();
        let got: Vec<Vec<u32>> = srcs
            .chunks(32)
            .flat_map(|c| run(t, c, opts(beams)))
            .collect();
        let same = got.iter().zip(&hf).filter(|(g, h)| g == h).count() as f64 / hf.len() as f64;
        let decode =
            |v: &[Vec<u32>]| -> Vec<String> { v.iter().map(|x| t.tokenizer.decode(x)).collect() };
        let bleu = marian_wasm::metrics::corpus_bleu(&decode(&got), &decode(&hf))
            .unwrap()
            .score;
        eprintln!(
            "{what} {key}: {:.1} % identical to transformers, BLEU against it {bleu:.2} ({} sentences)",
            same * 100.0,
            hf.len()
        );
        assert!(
            same >= min_same,
            "{what} {key}: {:.1} % identical < {:.1} %",
            same * 100.0,
            min_same * 100.0
        );
        assert!(
            bleu >= min_bleu - 1e-9,
            "{what} {key}: BLEU {bleu:.2} < {min_bleu}"
        );
    }
}

/// The embedded default model (models/default, the q8 package `convert` writes by default)
/// against transformers on the f32 checkpoint it was converted from
/// (tests/fixtures/default-heldout.json: `scripts/make_heldout_references.py
/// target/default-train/hf`, the 1 000 held-out Multi30k sentences, ids only): issue 17's q8
/// target, ≥ 97 % token-identical and BLEU ≥ 98, greedy and beam 4.
#[test]
fn default_model_translates_like_transformers_on_its_f32_checkpoint() {
    let text = std::fs::read_to_string(fixtures_dir().join("default-heldout.json"))
        .expect("tests/fixtures/default-heldout.json");
    let held: Value = serde_json::from_str(&text).unwrap();
    let t = Translator::new(&Package::embedded().unwrap()).unwrap();
    assert_close_to_heldout(&t, &held, "default q8", 0.97, 98.0);
}

/// Greedy search's shortcut (`Marian::decode_step_greedy`: on AVX-512 VNNI an 8-bit proposal
/// pass over the output projection and exact products of the tokens it cannot rule out) chooses
/// what scanning the full logits chooses, with the same score bits, step after step, on trained
/// models, q8 and q4, batches of 16 held-out sentences. On a CPU without that kernel both sides
/// scan the full logits (the proposal's arithmetic is checked on every CPU by the unit tests in
/// src/model/qgemm/proposal.rs).
#[test]
fn greedy_shortcut_chooses_what_the_full_logits_choose() {
    let mut steps = 0;
    for fx in fixtures() {
        let Some(srcs) = held_out_sources(&fx, 64) else {
            continue;
        };
        for q in [Quant::Q8, Quant::Q4] {
            let t = translator(&fx, q);
            let banned = banned_ids(&t);
            let v = t.model.target_vocab_size();
            // What the generation loop asks of a greedy step.
            let select = Select {
                k: 1,
                log_softmax: false,
                banned: &banned,
                forced: None,
            };
            for batch in srcs.chunks(16) {
                let (enc, mask) = t.model.encode(batch).unwrap();
                let mut short = t.model.start_decoding(&enc, &mask, 1).unwrap();
                let mut full = t.model.start_decoding(&enc, &mask, 1).unwrap();
                let mut tokens = vec![t.generation.decoder_start_token_id; batch.len()];
                for _ in 0..12 {
                    let chosen = t
                        .model
                        .decode_step_greedy(&mut short, &tokens, &banned)
                        .unwrap();
                    let logits = t
                        .model
                        .decode_step_rows(&mut full, &tokens, 1, &banned)
                        .unwrap();
                    for (row, got) in logits.chunks_exact(v).zip(&chosen) {
                        let want = top_k_of_row(row, &select)[0];
                        assert_eq!(got.0, want.0, "{} {q}", name(&fx));
                        assert_eq!(got.1.to_bits(), want.1.to_bits(), "{} {q}", name(&fx));
                    }
                    tokens = chosen.iter().map(|c| c.0).collect();
                    steps += 1;
                }
            }
        }
    }
    assert!(steps >= 2 * 2 * 4 * 12, "held-out sentences missing");
}

/// A q8 output projection with a residual (`convert --residual embeddings`) is screened: each
/// step multiplies every token by the q8 values and adds the residual's product only for the
/// tokens that can be chosen (`screened_head::residual_logits_into`). Greedy and beam search must
/// choose what the full product (q8 plus residual for every token, `Marian::decode_step`)
/// makes them choose, with the same score bits, on trained models.
#[test]
fn residual_screen_chooses_what_the_full_product_chooses() {
    let mut steps = 0;
    for fx in fixtures() {
        let Some(srcs) = held_out_sources(&fx, 48) else {
            continue;
        };
        let dir = tempfile::tempdir().unwrap();
        let options = ConvertOptions {
            residual: vec!["embeddings".into()],
            ..ConvertOptions::new(Quant::Q8)
        };
        convert_with(&fx, dir.path(), &options).unwrap();
        let t = Translator::new(&Package::read_dir(dir.path()).unwrap()).unwrap();
        let banned = banned_ids(&t);
        let v = t.model.target_vocab_size();
        for (top_n, batch_size) in [(1, 16), (8, 4)] {
            let select = Select {
                k: top_n,
                log_softmax: false,
                banned: &banned,
                forced: None,
            };
            for batch in srcs.chunks(batch_size) {
                let (enc, mask) = t.model.encode(batch).unwrap();
                let mut screened = t.model.start_decoding(&enc, &mask, 1).unwrap();
                let mut full = t.model.start_decoding(&enc, &mask, 1).unwrap();
                let mut greedy = t.model.start_decoding(&enc, &mask, 1).unwrap();
                let mut tokens = vec![t.generation.decoder_start_token_id; batch.len()];
                for _ in 0..10 {
                    let logits = t
                        .model
                        .decode_step_rows(&mut screened, &tokens, top_n, &banned)
                        .unwrap()
                        .to_vec();
                    let want: Vec<f32> = t
                        .model
                        .decode_step(&mut full, &tokens)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1()
                        .unwrap();
                    for (got, want) in logits.chunks_exact(v).zip(want.chunks_exact(v)) {
                        let (got, want) = (top_k_of_row(got, &select), top_k_of_row(want, &select));
                        let bits = |c: &[(u32, f32)]| -> Vec<(u32, u32)> {
                            c.iter().map(|(i, s)| (*i, s.to_bits())).collect()
                        };
                        assert_eq!(bits(&got), bits(&want), "{} top {top_n}", name(&fx));
                    }
                    if top_n == 1 {
                        // Greedy's own step (no proposal pass for a residual: the screen).
                        let chosen = t
                            .model
                            .decode_step_greedy(&mut greedy, &tokens, &banned)
                            .unwrap();
                        for (got, want) in chosen.iter().zip(want.chunks_exact(v)) {
                            let want = top_k_of_row(want, &select)[0];
                            assert_eq!((got.0, got.1.to_bits()), (want.0, want.1.to_bits()));
                        }
                    }
                    let next: Vec<u32> = logits
                        .chunks_exact(v)
                        .map(|row| top_k_of_row(row, &select)[0].0)
                        .collect();
                    tokens = next;
                    steps += 1;
                }
            }
        }
    }
    assert!(steps >= 2 * 10 * (3 + 12), "held-out sentences missing");
}

/// The first `n` held-out source sentences' ids of a fixture (`None` without heldout.json).
fn held_out_sources(fx: &std::path::Path, n: usize) -> Option<Vec<Vec<u32>>> {
    let text = std::fs::read_to_string(fx.join("heldout.json")).ok()?;
    let held: Value = serde_json::from_str(&text).unwrap();
    Some(
        held["src_ids"].as_array().unwrap()[..n]
            .iter()
            .map(ids)
            .collect(),
    )
}

/// The ids generation never chooses (`bad_words_ids`), as the generation loop passes them.
fn banned_ids(t: &Translator) -> Vec<u32> {
    t.generation
        .bad_words_ids
        .iter()
        .flatten()
        .copied()
        .collect()
}
