//! `marian-wasm catalog add`: write a package's entry into a model catalog (the JSON index a
//! page picks a package from by language pair; src/catalog.rs, www/catalog.js).

use anyhow::{bail, Result};
use marian_wasm::catalog::{entry_for_package, Catalog, EntryOptions};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum CatalogCommand {
    /// Add a package folder's entry to a catalog (created when missing; the entry with the same
    /// --url is replaced): its languages as BCP 47 tags (a multi-target model's codes mapped,
    /// `fra` -> `fr`), size, the sha256 of its manifest.json, quantization and a quality note.
    Add(AddArgs),
}

#[derive(clap::Args)]
pub struct AddArgs {
    /// The package folder (what `marian-wasm convert` wrote).
    pkg_dir: PathBuf,
    /// Where the page will fetch the package folder from: absolute, or relative to the
    /// catalog's own URL (e.g. `opus-mt-en-de-q8/` beside catalog.json).
    #[arg(long)]
    url: String,
    /// The catalog file to create or update.
    #[arg(long, default_value = "catalog.json")]
    catalog: PathBuf,
    /// The language(s) the model reads, comma-separated tags or ISO 639 codes (`en`, `eng`).
    /// Default: from an `opus-mt-SRC-TGT` folder name in the manifest's provenance.
    #[arg(long, value_delimiter = ',')]
    source: Vec<String>,
    /// The language a single-target model writes (default: from an `opus-mt-SRC-TGT` folder
    /// name). For a multi-target model: keep only these of its languages (default: all).
    #[arg(long, value_delimiter = ',')]
    target: Vec<String>,
    /// TAG=CODE: a multi-target model's code for a tag, where the derived mapping leaves a code
    /// out or two codes give one tag (`--map zh-Hans=zho_Hans`). Repeat or comma-separate.
    #[arg(long = "map", value_name = "TAG=CODE", value_delimiter = ',')]
    map: Vec<String>,
    /// A note for people choosing a model (BLEU on a test set, the training data).
    #[arg(long)]
    quality: Option<String>,
}

pub fn run(command: CatalogCommand) -> Result<()> {
    match command {
        CatalogCommand::Add(a) => add(a),
    }
}

fn add(a: AddArgs) -> Result<()> {
    if a.url.trim().is_empty() {
        bail!("--url is empty: give the URL the page will fetch the package folder from");
    }
    let mut map = Vec::new();
    for m in &a.map {
        match m.split_once('=') {
            Some((tag, code)) if !tag.is_empty() && !code.is_empty() => {
                map.push((tag.to_string(), code.to_string()))
            }
            _ => bail!("--map '{m}': expected TAG=CODE, e.g. --map zh-Hans=cmn_Hans"),
        }
    }
    // Read the catalog first: a damaged one is reported before any work on the package.
    let mut catalog = Catalog::read_or_new(&a.catalog)?;
    let new = entry_for_package(
        &a.pkg_dir,
        &EntryOptions {
            url: a.url.trim().to_string(),
            source: a.source,
            target: a.target,
            map,
            quality: a.quality,
        },
    )?;
    for note in &new.notes {
        eprintln!("marian-wasm: note: {note}");
    }
    let e = &new.entry;
    let targets: Vec<String> = e
        .target_languages
        .iter()
        .map(|t| match e.target_codes.get(t) {
            Some(code) => format!("{t} (>>{code}<<)"),
            None => t.clone(),
        })
        .collect();
    let replaced = catalog.upsert(new.entry.clone());
    catalog.write(&a.catalog)?;
    println!(
        "{} {} in {}: {} -> {}; {}, {:.2} MB, manifest sha256 {}",
        if replaced { "replaced" } else { "added" },
        e.url,
        a.catalog.display(),
        e.source_languages.join(", "),
        targets.join(", "),
        e.quant,
        e.size as f64 / 1e6,
        e.sha256
    );
    Ok(())
}
