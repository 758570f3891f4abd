//! Bad input gets a clear error naming the file and the problem, never a panic.

use crate::common::*;
use marian_wasm::package::convert::convert;
use marian_wasm::package::quant::Quant;
use marian_wasm::translator::Piece;
use marian_wasm::{Error, Package, Translator};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn tiny() -> std::path::PathBuf {
    fixtures_dir().join("tiny-opus")
}

/// A copy of the tiny-opus checkpoint that a test may damage.
fn hf_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(tiny()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

fn converted() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    convert(&tiny(), dir.path(), Quant::Q8).unwrap();
    dir
}

fn err_text<T>(r: marian_wasm::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// Rewrite one manifest entry so that it vouches for the file as it now is.
fn reseal(pkg: &Path, name: &str) {
    let mpath = pkg.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    let bytes = std::fs::read(pkg.join(name)).unwrap();
    for f in m["files"].as_array_mut().unwrap() {
        if f["name"] == name {
            f["size"] = bytes.len().into();
            f["sha256"] = marian_wasm::package::sha256_hex(&bytes).into();
        }
    }
    std::fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
}

#[test]
fn missing_checkpoint_file_is_named() {
    let hf = hf_copy();
    std::fs::remove_file(hf.path().join("target.spm")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let e = err_text(convert(hf.path(), out.path(), Quant::Q8));
    assert!(e.contains("target.spm"), "{e}");
}

#[test]
fn a_vocabulary_without_unk_is_refused_by_convert() {
    let hf = hf_copy();
    let p = hf.path().join("vocab.json");
    let mut vocab: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    vocab.remove("<unk>");
    std::fs::write(&p, serde_json::to_vec(&vocab).unwrap()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let e = err_text(convert(hf.path(), out.path(), Quant::F32));
    assert!(e.contains("vocab.json") && e.contains("<unk>"), "{e}");
    assert!(!out.path().join("manifest.json").exists());
}

#[test]
fn truncated_checkpoint_weights_are_reported() {
    let hf = hf_copy();
    let p = hf.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let out = tempfile::tempdir().unwrap();
    let e = err_text(convert(hf.path(), out.path(), Quant::Q8));
    assert!(
        e.contains("model.safetensors") && e.contains("safetensors"),
        "{e}"
    );
}

#[test]
fn absurd_config_is_refused_before_allocation() {
    let hf = hf_copy();
    let p = hf.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    cfg["d_model"] = 1_000_000_000u64.into();
    std::fs::write(&p, cfg.to_string()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let e = err_text(convert(hf.path(), out.path(), Quant::Q8));
    assert!(e.contains("d_model"), "{e}");
    cfg["d_model"] = 64.into();
    cfg["encoder_attention_heads"] = 7.into();
    std::fs::write(&p, cfg.to_string()).unwrap();
    let e = err_text(convert(hf.path(), out.path(), Quant::Q8));
    assert!(e.contains("not divisible"), "{e}");
}

#[test]
fn garbage_spm_is_reported() {
    let hf = hf_copy();
    std::fs::write(
        hf.path().join("source.spm"),
        b"definitely not protobuf \xff\xff\xff",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let e = err_text(convert(hf.path(), out.path(), Quant::Q8));
    assert!(e.contains("source.spm"), "{e}");
}

#[test]
fn truncated_package_file_is_detected_by_size() {
    let pkg = converted();
    let p = pkg.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    let e = err_text(Package::read_dir(pkg.path()));
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );
}

#[test]
fn modified_package_file_fails_its_sha256() {
    let pkg = converted();
    let p = pkg.path().join("vocab.json");
    let mut bytes = std::fs::read(&p).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x20;
    std::fs::write(&p, &bytes).unwrap();
    match Package::read_dir(pkg.path()) {
        Err(Error::Hash { file, .. }) => assert_eq!(file, "vocab.json"),
        Err(other) => panic!("expected a hash error, got {other}"),
        Ok(_) => panic!("a modified file was accepted"),
    }
}

#[test]
fn safetensors_header_that_lies_about_sizes_is_reported() {
    let pkg = converted();
    let p = pkg.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    // Claim the first tensor ends far beyond the file.
    let lying = header.replacen("\"data_offsets\":[0,", "\"data_offsets\":[0,999999999", 1);
    assert_ne!(lying, header);
    let mut out = Vec::new();
    out.extend_from_slice(&(lying.len() as u64).to_le_bytes());
    out.extend_from_slice(lying.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(&p, &out).unwrap();
    reseal(pkg.path(), "model.safetensors");
    let pkg = Package::read_dir(pkg.path()).unwrap();
    let e = err_text(Translator::new(&pkg));
    assert!(e.contains("model.safetensors"), "{e}");
}

#[test]
fn manifest_with_path_in_file_name_is_refused() {
    let pkg = converted();
    let mpath = pkg.path().join("manifest.json");
    let text = std::fs::read_to_string(&mpath).unwrap();
    std::fs::write(&mpath, text.replace("\"vocab.json\"", "\"../vocab.json\"")).unwrap();
    let e = err_text(Package::read_dir(pkg.path()));
    assert!(e.contains("../vocab.json"), "{e}");
}

#[test]
fn manifest_with_absurd_config_is_refused() {
    let pkg = converted();
    let mpath = pkg.path().join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    m["model"]["vocab_size"] = 1_000_000_000_000u64.into();
    std::fs::write(&mpath, m.to_string()).unwrap();
    let e = err_text(Package::read_dir(pkg.path()));
    assert!(e.contains("vocab_size"), "{e}");
}

#[test]
fn not_a_package_folder_says_what_to_do() {
    let e = err_text(Package::read_dir(Path::new("/nonexistent/package")));
    assert!(e.contains("convert"), "{e}");
}

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_marian-wasm"))
}

fn translate_cli(pkg: &Path, input: &[u8]) -> std::process::Output {
    let mut child = cli()
        .args(["translate", "--model"])
        .arg(pkg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The process may exit before reading (e.g. a bad --model): a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

#[test]
fn cli_keeps_one_line_per_input_line_and_empty_lines() {
    let pkg = converted();
    let out = translate_cli(
        pkg.path(),
        b"A dog runs.\n\nTwo men are talking.\n   \nA girl.\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.len(), 6, "{text:?}"); // five lines + the final newline
    assert!(!lines[0].is_empty() && !lines[2].is_empty() && !lines[4].is_empty());
    assert_eq!(lines[1], "");
    assert_eq!(lines[3], "");
}

#[test]
fn cli_translates_every_line_around_one_that_is_not_utf8() {
    let pkg = converted();
    let out = translate_cli(
        pkg.path(),
        b"A dog runs.\nA bad \xff\xfe byte.\nA cat.\n\xc3\n",
    );
    // The bad lines are reported and the run fails, but no line is lost.
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("UTF-8"), "{err}");
    assert!(err.contains("line(s) 2, 4"), "{err}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text:?}");
    assert!(lines.iter().take(3).all(|l| !l.is_empty()), "{text:?}");
    let alone = translate_cli(pkg.path(), b"A cat.\n");
    assert_eq!(
        lines[2],
        String::from_utf8(alone.stdout).unwrap().trim_end()
    );
}

#[test]
fn cli_reports_a_missing_model_folder() {
    let out = translate_cli(Path::new("/nonexistent/pkg"), b"hello\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/pkg"), "{err}");
}

#[test]
fn huge_and_long_inputs_are_split_not_truncated() {
    let t = translator(&tiny(), Quant::Q8);
    let sentence = "A man in a blue shirt is standing on a ladder. ";
    let long = sentence.repeat(40);
    assert!(t.tokenizer.encode(&long).unwrap().len() > t.model.config.max_position_embeddings);
    let chunks: Vec<Vec<u32>> = t
        .split_for_model(&long, None)
        .unwrap()
        .into_iter()
        .map(|p| match p {
            Piece::Model(ids) => ids,
            Piece::Verbatim(..) => panic!("nothing here is kept as is"),
        })
        .collect();
    assert!(chunks.len() > 1);
    assert!(chunks
        .iter()
        .all(|c| c.len() <= t.model.config.max_position_embeddings));
    // Every source token is kept: the chunks hold all sentences.
    let per = t.tokenizer.encode(sentence.trim()).unwrap().len() - 1;
    let total: usize = chunks.iter().map(|c| c.len() - 1).sum();
    assert_eq!(total, per * 40);
    let opts = marian_wasm::GenerateOptions {
        num_beams: Some(1),
        max_length: Some(12),
        ..Default::default()
    };
    let out = t.translate(&[&long], &opts, 4).unwrap();
    assert_eq!(out[0].ids.len(), chunks.len());
    assert!(out[0].issues.is_empty());
    // A text over the size limit comes back as it was, with the reason, and costs no other text.
    let too_big = "a".repeat(marian_wasm::translator::MAX_INPUT_BYTES + 1);
    let out = t.translate(&[&too_big, sentence], &opts, 1).unwrap();
    assert_eq!(out[0].text, too_big);
    assert!(out[0].issues[0].contains("bytes"), "{:?}", out[0].issues);
    assert!(!out[1].text.is_empty() && out[1].issues.is_empty());
}

/// A paragraph goes to the model sentence by sentence, as models trained on sentence pairs
/// need (given whole, the default model kept 66 characters of a 20-sentence paragraph); an
/// abbreviation or an initial does not end a sentence.
#[test]
fn a_paragraph_is_translated_sentence_by_sentence() {
    let t = translator(&tiny(), Quant::Q8);
    let opts = marian_wasm::GenerateOptions {
        num_beams: Some(2),
        max_length: Some(24),
        ..Default::default()
    };
    let sentences = [
        "A dog runs in the park.",
        "Two men are talking!",
        "Is Mr. Smith sitting on a bench?",
    ];
    let paragraph = sentences.join(" ");
    let out = t.translate(&[paragraph.as_str()], &opts, 1).unwrap();
    let alone = t.translate(&sentences, &opts, 1).unwrap();
    let joined: Vec<&str> = alone.iter().map(|a| a.text.as_str()).collect();
    assert_eq!(out[0].text, joined.join(" "));
    assert_eq!(out[0].ids.len(), 3);
}

/// A run of characters longer than the model's positions (a hash, base64) in one text of a
/// batch: that run is kept as is in its place, with a warning, the words around it and every
/// other text translated exactly as they are without it.
#[test]
fn a_word_longer_than_the_model_costs_nothing_else() {
    let t = translator(&tiny(), Quant::Q8);
    let limit = t.model.config.max_position_embeddings;
    let blob: String = (0..3000)
        .map(|i| char::from(b"0123456789abcdef"[(i * 7 + i / 5) % 16]))
        .collect();
    assert!(t.tokenizer.encode(&blob).unwrap().len() > limit);
    let with_blob = format!("A dog runs. Here is {blob} in the text.");
    let texts = ["A man is walking.", with_blob.as_str(), "Two dogs play."];
    let opts = marian_wasm::GenerateOptions {
        num_beams: Some(2),
        max_length: Some(16),
        ..Default::default()
    };
    // One piece a batch, so that no result depends on what it was padded with.
    let out = t.translate(&texts, &opts, 1).unwrap();
    let alone = t.translate(&[texts[0], texts[2]], &opts, 1).unwrap();
    assert_eq!(out[0].text, alone[0].text);
    assert_eq!(out[2].text, alone[1].text);
    assert!(out[0].issues.is_empty() && out[2].issues.is_empty());
    // The words before and after the blob are translated as pieces of their own, in order.
    let around = t
        .translate(&["A dog runs.", "Here is", "in the text."], &opts, 1)
        .unwrap();
    let expected = format!(
        "{} {} {blob} {}",
        around[0].text, around[1].text, around[2].text
    );
    assert_eq!(out[1].text, expected);
    assert_eq!(out[1].issues.len(), 1);
    assert!(
        out[1].issues[0].contains("3000 characters"),
        "{:?}",
        out[1].issues
    );
    // Streaming gives the same.
    let mut partials = 0;
    let streamed = t
        .translate_streaming(&with_blob, &opts, &mut |_| partials += 1)
        .unwrap();
    assert_eq!(streamed.text, out[1].text);
    assert_eq!(streamed.issues, out[1].issues);
    assert!(partials > 0);
}

/// Texts without letters (punctuation, digits, emoji, symbols) pass through unchanged: a model
/// given them invents a sentence.
#[test]
fn texts_without_letters_pass_through_unchanged() {
    let t = translator(&tiny(), Quant::Q8);
    let texts = [
        "-",
        "\u{1F600}\u{1F600}\u{1F600}",
        "6-3",
        " 12:45 · | ",
        "A dog runs.",
    ];
    let out = t
        .translate(&texts, &marian_wasm::GenerateOptions::default(), 4)
        .unwrap();
    for (text, tr) in texts.iter().zip(&out).take(4) {
        assert_eq!(&tr.text, text);
        assert!(tr.ids.is_empty() && tr.issues.is_empty());
    }
    assert_eq!(out[4].ids.len(), 1);
}

#[test]
fn cli_keeps_every_line_when_one_holds_a_word_longer_than_the_model() {
    let pkg = converted();
    let blob = "f".repeat(4000);
    let input = format!("A man is walking.\nHere is {blob} in the text.\n-\nTwo dogs play.\n");
    let out = translate_cli(pkg.path(), input.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[1].contains(&blob));
    assert_eq!(lines[2], "-");
    assert!(!lines[0].is_empty() && !lines[3].is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stdin line 2") && err.contains("kept as is"),
        "{err}"
    );
}

/// A sentence longer than the model's positions is cut into even pieces at its clause ends
/// (commas here), not into the longest runs of words that fit: a piece of a sentence that
/// ends mid-clause, or one far longer than the rest, is translated worse.
#[test]
fn an_overlong_sentence_is_cut_evenly_at_clause_ends() {
    let t = translator(&tiny(), Quant::Q8);
    let limit = t.model.config.max_position_embeddings;
    let clauses: Vec<String> = [
        "a man in a blue shirt is standing on a ladder",
        "two dogs play in the snow",
        "a little girl climbs into a wooden playhouse",
        "people are walking down a busy city street",
    ]
    .iter()
    .cycle()
    .take(26)
    .map(|s| s.to_string())
    .collect();
    let long = clauses.join(", ");
    assert!(t.tokenizer.encode(&long).unwrap().len() > limit);
    let pieces = t.split_for_model(&long, None).unwrap();
    // Each piece is a run of whole clauses, with its comma unless it ends the sentence.
    let mut sizes = Vec::new();
    let mut at = 0;
    for (k, piece) in pieces.iter().enumerate() {
        let Piece::Model(ids) = piece else {
            panic!("nothing here is kept as is")
        };
        assert!(ids.len() <= limit.min(marian_wasm::translator::LONG_SENTENCE_BUDGET));
        let comma = if k + 1 < pieces.len() { "," } else { "" };
        let end = (at + 1..=clauses.len())
            .find(|&e| {
                let text = format!("{}{comma}", clauses[at..e].join(", "));
                t.tokenizer.encode(&text).unwrap() == *ids
            })
            .unwrap_or_else(|| panic!("piece {k} is not a run of whole clauses"));
        sizes.push(ids.len());
        at = end;
    }
    assert_eq!(at, clauses.len());
    let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
    assert!(max - min <= 16, "uneven pieces {sizes:?}");
}

/// A sentence of 20 000 words is cut with every token in exactly one piece
/// and no piece over the budget. Its cost is linear in the words (each word encoded once) —
/// measured as a benchmark, not timed here (BENCHMARKS.md 2026-12-07 (later): 41.7 s → 3.9 s).
#[test]
fn a_sentence_of_twenty_thousand_words_loses_no_token() {
    let t = translator(&tiny(), Quant::Q8);
    let words = [
        "man", "dog", "street", "blue", "shirt", "snow", "ladder", "grass",
    ];
    let long: Vec<&str> = (0..20_000)
        .map(|i| words[(i * 7 + i / 3) % words.len()])
        .collect();
    let long = long.join(" ");
    let pieces = t.split_for_model(&long, None).unwrap();
    let budget = t
        .model
        .config
        .max_position_embeddings
        .min(marian_wasm::translator::LONG_SENTENCE_BUDGET);
    let tokens: usize = pieces
        .iter()
        .map(|p| match p {
            Piece::Model(ids) => {
                assert!(ids.len() <= budget, "a piece of {} tokens", ids.len());
                ids.len() - 1
            }
            Piece::Verbatim(..) => panic!("nothing here is kept as is"),
        })
        .sum();
    assert_eq!(tokens, t.tokenizer.encode(&long).unwrap().len() - 1);
}

/// A text's own layout survives translation: pieces separated by line breaks in the source
/// are joined by the same line breaks (a paragraph break stays one), through `translate`
/// (alone and batched) and `translate_streaming`, whose partial outputs grow by prefixes.
#[test]
fn line_breaks_between_sentences_are_kept() {
    let t = translator(&tiny(), Quant::Q8);
    let opts = marian_wasm::GenerateOptions {
        num_beams: Some(2),
        max_length: Some(24),
        ..Default::default()
    };
    let sentences = [
        "A dog runs in the park.",
        "Two men are talking!",
        "Is Mr. Smith sitting on a bench?",
        "A girl smiles.",
    ];
    let text = format!(
        "{}  \n\n{}\n{} {}",
        sentences[0], sentences[1], sentences[2], sentences[3]
    );
    let alone = t.translate(&sentences, &opts, 1).unwrap();
    let a: Vec<&str> = alone.iter().map(|a| a.text.as_str()).collect();
    let expected = format!("{}\n\n{}\n{} {}", a[0], a[1], a[2], a[3]);
    // One piece a batch, so that no result depends on what it was padded with.
    let out = t
        .translate(&[text.as_str(), "A cat.", &text], &opts, 1)
        .unwrap();
    assert_eq!(out[0].text, expected);
    assert_eq!(out[2].text, expected);
    let mut partials: Vec<String> = Vec::new();
    let streamed = t
        .translate_streaming(&text, &opts, &mut |p| partials.push(p.to_string()))
        .unwrap();
    assert_eq!(streamed.text, expected);
    assert!(partials.iter().all(|p| expected.starts_with(p.as_str())));
    assert_eq!(partials.last().unwrap(), &expected);
    // A letterless piece between paragraphs keeps its lines too (no digits: the tiny
    // vocabulary cannot spell them, so `protect` would move them).
    let marked = format!("{}\n?!\n\n{}", sentences[0], sentences[1]);
    let out = t.translate(&[marked.as_str()], &opts, 1).unwrap();
    assert_eq!(out[0].text, format!("{}\n?!\n\n{}", a[0], a[1]));
}
