//! `convert`'s GPTQ rounding: the calibration it runs, its options, and that it is
//! reproducible. (How close the result translates to transformers is tests/parity.rs's
//! held-out test, whose q4 bounds nearest rounding does not reach.)

use crate::common::*;
use marian_wasm::package::calibrate::{linear_input_grams, sampled_sentences};
use marian_wasm::package::convert::{convert_with, ConvertOptions, Rounding};
use marian_wasm::package::quant::Quant;
use marian_wasm::package::spm::SpmModel;
use marian_wasm::{Package, Translator};
use std::path::Path;
use std::process::Command;

fn weights(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("model.safetensors")).unwrap()
}

fn convert_to(fixture: &Path, opts: &ConvertOptions) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    convert_with(fixture, dir.path(), opts).unwrap();
    dir
}

fn source_spm(fixture: &Path) -> SpmModel {
    let path = fixture.join("source.spm");
    SpmModel::parse(&std::fs::read(&path).unwrap(), "source.spm").unwrap()
}

#[test]
fn sampled_calibration_text_is_reproducible_and_made_of_source_pieces() {
    for fx in fixtures() {
        let spm = source_spm(&fx);
        let a = sampled_sentences(&spm, 20).unwrap();
        assert_eq!(a, sampled_sentences(&spm, 20).unwrap(), "{}", name(&fx));
        assert_eq!(a.len(), 20);
        let t = translator(&fx, Quant::F32);
        for s in &a {
            let ids = t.tokenizer.encode(s).unwrap();
            // 6–30 pieces (re-segmenting may merge or split a few), and known ones.
            assert!((3..=40).contains(&ids.len()), "{s:?} -> {ids:?}");
        }
    }
}

#[test]
fn calibration_sees_every_linear_layer_with_its_input_width() {
    for fx in fixtures() {
        let t: Translator = translator(&fx, Quant::F32);
        let cfg = &t.model.config;
        let sentences = sampled_sentences(&source_spm(&fx), 8).unwrap();
        let grams = linear_input_grams(&t, &sentences).unwrap();
        let mut expected = Vec::new();
        for (side, layers, ffn, attns) in [
            (
                "encoder",
                cfg.encoder_layers,
                cfg.encoder_ffn_dim,
                &["self_attn"][..],
            ),
            (
                "decoder",
                cfg.decoder_layers,
                cfg.decoder_ffn_dim,
                &["self_attn", "encoder_attn"][..],
            ),
        ] {
            for i in 0..layers {
                for a in attns {
                    for p in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                        expected.push((format!("{side}.layers.{i}.{a}.{p}"), cfg.d_model));
                    }
                }
                expected.push((format!("{side}.layers.{i}.fc1"), cfg.d_model));
                expected.push((format!("{side}.layers.{i}.fc2"), ffn));
            }
        }
        assert_eq!(
            grams.len(),
            expected.len(),
            "{}: {:?}",
            name(&fx),
            grams.keys()
        );
        for (layer, dim) in expected {
            let g = grams
                .get(&layer)
                .unwrap_or_else(|| panic!("{}: {layer} not calibrated", name(&fx)));
            assert_eq!(g.dim, dim, "{layer}");
            assert!(g.rows >= 8, "{layer}: {} rows", g.rows);
            for a in 0..dim {
                assert!(g.gram[a * dim + a] >= 0.0);
                for b in 0..a {
                    let (x, y) = (g.gram[a * dim + b], g.gram[b * dim + a]);
                    assert!(
                        (x - y).abs() <= 1e-6 * (1.0 + x.abs()),
                        "{layer} not symmetric"
                    );
                }
            }
        }
    }
}

#[test]
fn gptq_conversion_is_reproducible_and_differs_from_nearest_rounding() {
    let fx = &fixtures()[0];
    for quant in [Quant::Q8, Quant::Q4] {
        let gptq = ConvertOptions::new(quant);
        let a = convert_to(fx, &gptq);
        let b = convert_to(fx, &gptq);
        assert_eq!(
            weights(a.path()),
            weights(b.path()),
            "{quant}: not reproducible"
        );
        let mut nearest = ConvertOptions::new(quant);
        nearest.rounding = Rounding::Nearest;
        let c = convert_to(fx, &nearest);
        assert_eq!(
            weights(a.path()).len(),
            weights(c.path()).len(),
            "{quant}: same layout"
        );
        assert_ne!(weights(a.path()), weights(c.path()), "{quant}");
        // The manifest says how the weights were rounded, and lists the weights last (a browser
        // downloads in that order: an interrupted download keeps the small files).
        let manifest = |dir: &Path| Package::read_dir(dir).unwrap().manifest;
        let p = manifest(a.path()).provenance;
        assert!(
            p.contains("GPTQ on 256 calibration sentences (sampled from source.spm)"),
            "{p}"
        );
        assert!(manifest(c.path()).provenance.contains("rounded to nearest"));
        let files = manifest(a.path()).files;
        assert_eq!(files.last().unwrap().name, "model.safetensors");
        // Own calibration text gives its own rounding.
        let mut own = ConvertOptions::new(quant);
        own.calibration = Some(vec![
            "A man is riding a bicycle down the street.".into(),
            "Two dogs are playing in the snow.".into(),
        ]);
        let d = convert_to(fx, &own);
        assert_ne!(weights(a.path()), weights(d.path()), "{quant}");
    }
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_marian-wasm"))
}

/// `marian-wasm convert FIXTURE DIR ARGS…` into a new temporary DIR: the folder and the run's
/// stderr; panics with that stderr when the conversion fails.
fn cli_convert(fx: &Path, args: &[&str]) -> (tempfile::TempDir, String) {
    let out = tempfile::tempdir().unwrap();
    let run = cli()
        .arg("convert")
        .arg(fx)
        .arg(out.path())
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    assert!(run.status.success(), "convert {args:?}: {stderr}");
    (out, stderr)
}

/// The stderr of `marian-wasm convert FIXTURE DIR ARGS…`, which must fail.
fn cli_convert_error(fx: &Path, args: &[&str]) -> String {
    let run = cli()
        .arg("convert")
        .arg(fx)
        .arg(tempfile::tempdir().unwrap().path())
        .args(args)
        .output()
        .unwrap();
    assert!(!run.status.success(), "convert {args:?} succeeded");
    String::from_utf8_lossy(&run.stderr).to_string()
}

fn tiny_opus() -> std::path::PathBuf {
    fixtures()
        .into_iter()
        .find(|f| name(f) == "tiny-opus")
        .expect("tiny-opus fixture")
}

#[test]
fn cli_convert_takes_rounding_and_calibration_text_and_names_a_missing_file() {
    let fx = &fixtures()[0];
    let text = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        text.path(),
        "A man is riding a bicycle.\n\nTwo dogs play in the snow.\n",
    )
    .unwrap();
    let calibration = text.path().to_str().unwrap();
    // `--fidelity none`: the package as named, as the library's `ConvertOptions::new` writes it.
    let (out, stderr) = cli_convert(
        fx,
        &[
            "--quant",
            "q4",
            "--calibration",
            calibration,
            "--fidelity",
            "none",
        ],
    );
    assert!(
        stderr.contains("GPTQ") && stderr.contains("2 sentences"),
        "{stderr}"
    );
    let mut own = ConvertOptions::new(Quant::Q4);
    own.calibration = Some(vec![
        "A man is riding a bicycle.".into(),
        "Two dogs play in the snow.".into(),
    ]);
    assert_eq!(weights(out.path()), weights(convert_to(fx, &own).path()));

    let (nearest, _) = cli_convert(
        fx,
        &[
            "--quant",
            "q4",
            "--rounding",
            "nearest",
            "--fidelity",
            "none",
        ],
    );
    let mut opts = ConvertOptions::new(Quant::Q4);
    opts.rounding = Rounding::Nearest;
    assert_eq!(
        weights(nearest.path()),
        weights(convert_to(fx, &opts).path())
    );

    let e = cli_convert_error(fx, &["--calibration", "/nonexistent/calibration.txt"]);
    assert!(e.contains("/nonexistent/calibration.txt"), "{e}");
}

/// `convert --residual`: the named q8 matrices (and only they) gain a Q4_0 residual under the
/// implied scale s / 16, every other tensor stays as in the plain package, the pair is within
/// s / 32 of every weight (12-bit levels), folded or kept apart it is the same matrix, and a
/// part that names nothing is a clear error.
#[test]
fn residual_conversion_adds_a_finer_rounding_of_the_named_q8_matrices() {
    use marian_wasm::package::quant::{Matrix, WeightFile};
    let fx = tiny_opus();
    let (out, _) = cli_convert(&fx, &["--quant", "q8", "--residual", "embeddings,decoder."]);
    let plain = convert_to(&fx, &ConvertOptions::new(Quant::Q8));
    let (with, without) = (weights(out.path()), weights(plain.path()));
    let st = safetensors::SafeTensors::deserialize(&with).unwrap();
    let base = safetensors::SafeTensors::deserialize(&without).unwrap();
    let mut residuals = 0;
    let names = st.names();
    for name in &names {
        if let Some(matrix) = name.strip_suffix(".residual.q4") {
            assert!(
                matrix == "shared.weight" || matrix.starts_with("decoder."),
                "{matrix} has a residual"
            );
            residuals += 1;
        } else if !name.contains(".residual.") {
            // A matrix with a residual is rounded to nearest: its q8 values and scales may
            // differ from the plain package's GPTQ ones (checked against the weights below).
            let matrix = name.trim_end_matches(".q8").trim_end_matches(".scales");
            if names.contains(&format!("{matrix}.residual.q4").as_str()) {
                continue;
            }
            assert_eq!(
                st.tensor(name).unwrap().data(),
                base.tensor(name).unwrap().data(),
                "{name}"
            );
        }
    }
    // The embedding and the decoder's 2 layers × (4 + 4 + 2) linear layers.
    assert_eq!(residuals, 1 + 2 * 10, "residual tensors");

    // The q8 + residual pair against the checkpoint's f32 weights (the embedding, and a
    // decoder layer GPTQ would round without one): within s / 32 (half a 12-bit step) of every
    // weight, where q8 alone is up to s / 2 off.
    let f32_bytes = std::fs::read(fx.join("model.safetensors")).unwrap();
    let f32_st = safetensors::SafeTensors::deserialize(&f32_bytes).unwrap();
    for name in ["shared.weight", "decoder.layers.1.fc1.weight"] {
        let truth = f32_st.tensor(&format!("model.{name}")).unwrap();
        let (rows, cols) = (truth.shape()[0], truth.shape()[1]);
        let truth: Vec<f32> = truth
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let scales: Vec<f32> = st
            .tensor(&format!("{name}.scales"))
            .unwrap()
            .data()
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        let dequantized = |bytes: &[u8], folded: bool| -> Vec<f32> {
            let file = WeightFile::parse("model.safetensors", bytes).unwrap();
            let m = if folded {
                file.matrix(name, rows, cols)
            } else {
                file.embedding_matrix(name, rows, cols)
            };
            let Matrix::Quantized(q) = m.unwrap() else {
                panic!("{name} is q8");
            };
            q.dequantize()
        };
        let (folded, apart) = (dequantized(&with, true), dequantized(&with, false));
        let alike = folded
            .iter()
            .zip(&apart)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(alike, "{name}: the folded and the kept-apart pair differ");
        let coarse = dequantized(&without, true);
        let mut coarse_worst = 0f32;
        for (i, ((&fine, &w), &q8)) in folded.iter().zip(&truth).zip(&coarse).enumerate() {
            let s = scales[i / 32];
            assert!(
                (fine - w).abs() <= s / 32.0 * 1.0001,
                "{name} weight {i}: {fine} vs {w} (scale {s})"
            );
            coarse_worst = coarse_worst.max((q8 - w).abs() / s);
        }
        assert!(
            coarse_worst > 0.25,
            "{name}: q8 alone is only {coarse_worst} steps off"
        );
    }
    Translator::new(&Package::read_dir(out.path()).unwrap()).unwrap();

    let e = cli_convert_error(&fx, &["--quant", "q8", "--residual", "nosuch"]);
    assert!(e.contains("--residual 'nosuch'"), "{e}");
}

/// `convert --quant q4 --keep-q8 PARTS`: the named matrices are stored q8 (with a residual when
/// `--residual` names them too), every other matrix stays q4, the package translates, and
/// `--keep-q8` outside a q4 package is a clear error.
#[test]
fn keep_q8_keeps_the_named_matrices_of_a_q4_package_at_q8() {
    let fx = tiny_opus();
    let (out, _) = cli_convert(
        &fx,
        &[
            "--quant",
            "q4",
            "--keep-q8",
            "decoder.",
            "--residual",
            "decoder.layers.0.fc1",
        ],
    );
    let bytes = weights(out.path());
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (mut q8, mut q4) = (Vec::new(), Vec::new());
    for name in st.names() {
        if let Some(m) = name.strip_suffix(".q8") {
            q8.push(m.to_string());
        } else if let Some(m) = name.strip_suffix(".q4") {
            q4.push(m.to_string());
        }
    }
    // The embedding is q8 in any q4 package; the decoder's 2 layers × 10 matrices by the option.
    assert_eq!(q8.len(), 1 + 2 * 10, "{q8:?}");
    assert!(q8
        .iter()
        .all(|m| m == "shared.weight" || m.starts_with("decoder.")));
    let residuals: Vec<_> = q4.iter().filter(|m| m.ends_with(".residual")).collect();
    assert_eq!(residuals, ["decoder.layers.0.fc1.weight.residual"]);
    assert!(q4.iter().any(|m| m.starts_with("encoder.")), "{q4:?}");
    let package = Package::read_dir(out.path()).unwrap();
    assert!(
        package.manifest.provenance.contains("decoder. kept at q8"),
        "{}",
        package.manifest.provenance
    );
    let t = Translator::new(&package).unwrap();
    let out = t
        .translate(
            &["Two dogs are playing in the snow."],
            &marian_wasm::GenerateOptions::default(),
            1,
        )
        .unwrap();
    assert!(!out[0].text.is_empty());

    let e = cli_convert_error(&fx, &["--quant", "q8", "--keep-q8", "decoder."]);
    assert!(e.contains("--keep-q8") && e.contains("q4 package"), "{e}");
}

/// The provenance `convert` recorded in a package's manifest.
fn provenance(dir: &Path) -> String {
    Package::read_dir(dir).unwrap().manifest.provenance
}

/// Whether a step costs speed is measured in the bytes a decoder step streams
/// (`fidelity::COSTLY_STEP_SHARE`), not assumed from the parts it names: tiny-switches (d_model
/// 48: only the FFN's output matrices, 96 wide, are q8) gets the decoder's residual for +5 % of
/// those bytes, although its step before misses the target on sampled text by less than the
/// measure's noise (before this rule it was kept plain: 95.5 % identical to transformers in beam
/// search, under issue 17's 97 %); on tiny-opus (every matrix q8) the same step adds 43 %.
#[test]
fn fidelity_auto_weighs_a_step_by_the_bytes_it_adds_to_a_decoder_step() {
    let fx = tiny_opus().parent().unwrap().join("tiny-switches");
    let (auto, stderr) = cli_convert(&fx, &["--quant", "q8"]);
    let (named, _) = cli_convert(&fx, &["--quant", "q8", "--residual", "embeddings,decoder."]);
    assert_eq!(weights(auto.path()), weights(named.path()), "{stderr}");
    let chosen = provenance(auto.path());
    let added: f64 = chosen
        .split_once("chosen by measure: q8 --residual embeddings,decoder. (+")
        .and_then(|(_, rest)| rest.split_once(' '))
        .and_then(|(share, _)| share.parse().ok())
        .unwrap_or_else(|| panic!("no share of a decoder step's bytes in: {chosen}"));
    assert!(added > 0.0 && added < 10.0, "{chosen}");
}

/// `--fidelity auto`, `convert`'s default (issue 17): the package's ladder is measured against
/// the f32 model on sampled sentences and the cheapest step that meets the target is written —
/// on the trained tiny-opus q8 (plain q8 agrees on 77 % of them, greedy) the embeddings' and the
/// decoder's residual, the very package `--residual embeddings,decoder.` writes; a low
/// `--fidelity-target` keeps plain q8, which is `--fidelity none`'s package; q4 gets the decoder
/// at q8, as `--keep-q8 decoder.` writes it; the choice is on stderr and in the provenance; a
/// bad target is an error, and named parts turn the measure off.
#[test]
fn fidelity_auto_writes_the_cheapest_step_that_meets_the_target() {
    let fx = tiny_opus();
    let (auto, stderr) = cli_convert(&fx, &["--quant", "q8"]);
    assert!(
        stderr.contains("q8 plain: greedy")
            && stderr.contains("q8 --residual embeddings: greedy")
            && stderr.contains("q8 --residual embeddings,decoder.: greedy")
            && stderr.contains("(kept)\n"),
        "{stderr}"
    );
    let (named, stderr) = cli_convert(&fx, &["--quant", "q8", "--residual", "embeddings,decoder."]);
    assert!(
        !stderr.contains("identical"),
        "named parts measure nothing: {stderr}"
    );
    assert_eq!(weights(auto.path()), weights(named.path()));
    let chosen = provenance(auto.path());
    assert!(
        chosen.contains("chosen by measure: q8 --residual embeddings,decoder. (+"),
        "{chosen}"
    );

    let (low, stderr) = cli_convert(&fx, &["--quant", "q8", "--fidelity-target", "60"]);
    assert!(
        stderr.contains("q8 plain: greedy") && stderr.contains("(kept)"),
        "{stderr}"
    );
    assert!(!stderr.contains("--residual embeddings:"), "{stderr}");
    let (none, stderr) = cli_convert(&fx, &["--quant", "q8", "--fidelity", "none"]);
    assert!(
        !stderr.contains("identical"),
        "none measures nothing: {stderr}"
    );
    assert_eq!(weights(low.path()), weights(none.path()));
    let st = weights(none.path());
    let st = safetensors::SafeTensors::deserialize(&st).unwrap();
    assert!(st.names().iter().all(|n| !n.contains(".residual.")));

    let (q4, stderr) = cli_convert(&fx, &["--quant", "q4"]);
    assert!(
        stderr.contains("q4 plain: greedy") && stderr.contains("q4 --keep-q8 decoder.: greedy"),
        "{stderr}"
    );
    let (q4_named, _) = cli_convert(&fx, &["--quant", "q4", "--keep-q8", "decoder."]);
    assert_eq!(weights(q4.path()), weights(q4_named.path()));
    let (_, stderr) = cli_convert(&fx, &["--quant", "f16"]);
    assert!(
        !stderr.contains("identical"),
        "f16 has nothing to choose: {stderr}"
    );
    let e = cli_convert_error(&fx, &["--quant", "q8", "--fidelity-target", "120"]);
    assert!(e.contains("fidelity target"), "{e}");
}

/// Untrained weights (a benchmark subject with random values) never finish a translation, and
/// their decisions are near ties that any rounding flips: `--fidelity auto` says so and keeps
/// plain q8 instead of measuring — a residual would only cost such a package speed.
#[test]
fn fidelity_auto_keeps_plain_q8_for_untrained_weights() {
    use candle_core::{DType, Device, Tensor};
    let fx = tiny_opus();
    let random = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&fx).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, random.path().join(path.file_name().unwrap())).unwrap();
    }
    let trained =
        candle_core::safetensors::load(fx.join("model.safetensors"), &Device::Cpu).unwrap();
    let untrained: std::collections::HashMap<String, Tensor> = trained
        .iter()
        .map(|(name, t)| {
            let r = (Tensor::randn(0f32, 0.05, t.dims(), &Device::Cpu).unwrap())
                .to_dtype(DType::F32)
                .unwrap();
            (name.clone(), r)
        })
        .collect();
    candle_core::safetensors::save(&untrained, random.path().join("model.safetensors")).unwrap();
    let (auto, stderr) = cli_convert(random.path(), &["--quant", "q8"]);
    assert!(stderr.contains("untrained weights?"), "{stderr}");
    assert!(!stderr.contains("(kept)"), "nothing measured: {stderr}");
    let (none, _) = cli_convert(random.path(), &["--quant", "q8", "--fidelity", "none"]);
    assert_eq!(weights(auto.path()), weights(none.path()));
}

/// transformers' `generate` takes the special ids from generation_config.json when the
/// checkpoint has one (config.json's only without it), and an eos_token_id list ends a
/// translation at any of its ids: tests/fixtures/generation-ids holds such a file (another
/// decoder start, a second eos, no forced eos) for tiny-opus and the ids transformers generated
/// with it (scripts/make_generation_ids_fixture.py). Ours are the same, greedy and beam.
#[test]
fn special_ids_come_from_generation_config_as_transformers_takes_them() {
    let fixtures = fixtures_dir();
    let hf = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixtures.join("tiny-opus")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !["expected.json", "heldout.json", "generation_config.json"].contains(&name.as_str()) {
            std::fs::copy(&path, hf.path().join(&name)).unwrap();
        }
    }
    let own = fixtures.join("generation-ids");
    std::fs::copy(
        own.join("generation_config.json"),
        hf.path().join("generation_config.json"),
    )
    .unwrap();
    let pkg = tempfile::tempdir().unwrap();
    marian_wasm::package::convert::convert(hf.path(), pkg.path(), Quant::F32).unwrap();
    let t = Translator::new(&Package::read_dir(pkg.path()).unwrap()).unwrap();
    assert_ne!(
        t.generation.decoder_start_token_id,
        t.model.config.decoder_start_token_id
    );
    assert_eq!(t.generation.more_eos_token_ids.len(), 1);
    assert_eq!(t.generation.forced_eos_token_id, None);
    let exp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(own.join("expected.json")).unwrap()).unwrap();
    let mut ended_by_second = 0;
    for (mode, beams) in [("greedy", 1), ("beam3", 3)] {
        for case in exp[mode].as_array().unwrap() {
            let src = case["src"].as_str().unwrap();
            let opts = marian_wasm::GenerateOptions {
                num_beams: Some(beams),
                ..Default::default()
            };
            let out = t.translate(&[src], &opts, 1).unwrap();
            let want = ids(&case["ids"]);
            assert_eq!(out[0].ids, vec![want.clone()], "{mode}: {src}");
            ended_by_second += usize::from(want.last() == t.generation.more_eos_token_ids.first());
        }
    }
    assert!(ended_by_second > 0);
}

/// A wrong checkpoint path gives only the error naming it: no notice about GPTQ or fidelity
/// first, as if a conversion had begun.
#[test]
fn convert_of_a_missing_folder_says_only_that() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_marian-wasm"))
        .args(["convert", "/nonexistent/checkpoint"])
        .arg(out_dir.path().join("pkg"))
        .args(["--quant", "q8"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/checkpoint"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("GPTQ") && !err.contains("measuring"), "{err}");
}
