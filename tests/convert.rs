//! `convert`'s GPTQ rounding: the calibration it runs, its options, and that it is
//! reproducible. (How close the result translates to transformers is tests/parity.rs's
//! held-out test, whose q4 bounds nearest rounding does not reach.)

mod common;

use common::*;
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

#[test]
fn cli_convert_takes_rounding_and_calibration_text_and_names_a_missing_file() {
    let fx = &fixtures()[0];
    let text = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        text.path(),
        "A man is riding a bicycle.\n\nTwo dogs play in the snow.\n",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = cli()
        .arg("convert")
        .arg(fx)
        .arg(out.path())
        .args(["--quant", "q4", "--calibration"])
        .arg(text.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
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

    let nearest = tempfile::tempdir().unwrap();
    let run = cli()
        .arg("convert")
        .arg(fx)
        .arg(nearest.path())
        .args(["--quant", "q4", "--rounding", "nearest"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut opts = ConvertOptions::new(Quant::Q4);
    opts.rounding = Rounding::Nearest;
    assert_eq!(
        weights(nearest.path()),
        weights(convert_to(fx, &opts).path())
    );

    let missing = cli()
        .arg("convert")
        .arg(fx)
        .arg(tempfile::tempdir().unwrap().path())
        .args(["--calibration", "/nonexistent/calibration.txt"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let e = String::from_utf8_lossy(&missing.stderr);
    assert!(e.contains("/nonexistent/calibration.txt"), "{e}");
}
