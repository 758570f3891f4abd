//! Streaming translation: the partial outputs only ever grow, each is a prefix of the final
//! text, and the final text and ids are exactly what `translate` gives (greedy and beam).

use crate::common;

use marian_wasm::generate::GenerateOptions;
use marian_wasm::package::quant::Quant;

#[test]
fn streamed_output_grows_by_prefixes_and_ends_as_translate() {
    for fixture in common::fixtures() {
        let t = common::translator(&fixture, Quant::F32);
        let sentences: Vec<String> = common::expected(&fixture)["sentences"]
            .as_array()
            .unwrap()
            .iter()
            .take(6)
            .map(|s| s["src"].as_str().unwrap().to_string())
            .collect();
        for beams in [1usize, 4] {
            let opts = GenerateOptions {
                num_beams: Some(beams),
                ..Default::default()
            };
            for src in &sentences {
                let mut partials: Vec<String> = Vec::new();
                let streamed = t
                    .translate_streaming(src, &opts, &mut |p| partials.push(p.to_string()))
                    .unwrap();
                let whole = t.translate(&[src.as_str()], &opts, 1).unwrap().remove(0);
                let name = common::name(&fixture);
                assert_eq!(streamed, whole, "{name} beams {beams}: {src:?}");
                assert!(
                    !partials.is_empty(),
                    "{name}: no partial output for {src:?}"
                );
                assert_eq!(partials.last().unwrap(), &whole.text);
                for w in partials.windows(2) {
                    assert!(
                        w[1].starts_with(&w[0]),
                        "{name} beams {beams}: {:?} does not continue {:?}",
                        w[1],
                        w[0]
                    );
                }
                if beams == 1 && whole.ids[0].len() > 3 {
                    // Greedy output is final token by token: many partial steps, not one.
                    assert!(
                        partials.len() >= 3,
                        "{name}: only {} partials",
                        partials.len()
                    );
                }
            }
        }
    }
}

#[test]
fn streaming_empty_text_gives_empty_output() {
    let fixture = &common::fixtures()[0];
    let t = common::translator(fixture, Quant::F32);
    let mut calls = 0;
    let out = t
        .translate_streaming("  \n ", &GenerateOptions::default(), &mut |_| calls += 1)
        .unwrap();
    assert_eq!(out.text, "");
    assert!(out.ids.is_empty());
    assert_eq!(calls, 0);
}
