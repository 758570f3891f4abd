//! The model catalog: a JSON index that lets a front end pick a package by language pair
//! (`MarianTranslator.create({sourceLanguage, targetLanguage, catalog})` in www/catalog.js),
//! written by `marian-wasm catalog add`.
//!
//! ```json
//! { "format": "marian-wasm-catalog", "format_version": 1,
//!   "models": [
//!     { "url": "opus-mt-en-fr-q8/", "source_languages": ["en"], "target_languages": ["fr"],
//!       "size": 81923456, "sha256": "…", "quant": "q8", "quality": "BLEU 58.6 on Multi30k" },
//!     { "url": "https://cdn.example/opus-mt-en-ROMANCE-q8/", "source_languages": ["en"],
//!       "target_languages": ["es", "fr", "pt-BR"],
//!       "target_codes": { "es": "spa", "fr": "fra", "pt-BR": "pt_br" },
//!       "size": 83000000, "sha256": "…", "quant": "q8" } ] }
//! ```
//! Languages are canonical BCP 47 tags; `target_codes` (multi-target models only) maps each to
//! the model's own `>>code<<` token. `url` is the package folder, relative URLs resolving against
//! the catalog's own URL. `size` is the package's bytes, manifest included; `sha256` is the hex
//! sha256 of the package's `manifest.json`, which itself lists every file's size and sha256, so
//! it pins the whole package (the browser's model store checks it before trusting a download).
//!
//! The mapping from a model's codes (ISO 639-1 or 639-3, with a script or region: `fra`, `nob`,
//! `cmn_Hans`, `pt_br`) to BCP 47 is done here, once, when an entry is written; the browser only
//! canonicalizes and matches tags.

use crate::error::{Error, Result};
use crate::package::{sha256_hex, Manifest, MANIFEST};
use std::collections::BTreeMap;
use std::path::Path;

/// The `format` every catalog file carries.
pub const FORMAT: &str = "marian-wasm-catalog";
/// The `format_version` this build reads and writes (www/catalog.js reads the same).
pub const FORMAT_VERSION: u32 = 1;

/// A catalog file: its format tag and version, and its entries in the order written.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Catalog {
    pub format: String,
    pub format_version: u32,
    pub models: Vec<CatalogEntry>,
}

/// One package: where it is, which languages it translates, and what pins it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CatalogEntry {
    /// The package folder, ending in `/`; relative URLs resolve against the catalog's URL.
    pub url: String,
    /// Canonical BCP 47 tags of the languages the model reads (`["en"]`).
    pub source_languages: Vec<String>,
    /// Canonical BCP 47 tags of the languages it writes, in the model's code order.
    pub target_languages: Vec<String>,
    /// Multi-target models only: each target tag to the model's own code (`"fr": "fra"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub target_codes: BTreeMap<String, String>,
    /// Bytes to download: every file of the package, `manifest.json` included.
    pub size: u64,
    /// Lower-case hex sha256 of the package's `manifest.json`.
    pub sha256: String,
    /// The package's quantization (`q8`, `q4`, `f16`, `f32`).
    pub quant: String,
    /// Free text for people choosing a model (a BLEU figure, the training data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            models: Vec::new(),
        }
    }
}

impl Catalog {
    /// Parse and check a catalog; `where_` names it in errors. An entry that breaks a rule is
    /// named by its index and URL.
    pub fn parse(text: &str, where_: &str) -> Result<Self> {
        let c: Catalog = serde_json::from_str(text)
            .map_err(|e| Error::corrupt(where_, format!("not a valid marian-wasm catalog: {e}")))?;
        if c.format != FORMAT {
            return Err(Error::corrupt(
                where_,
                format!("format is '{}', expected '{FORMAT}'", c.format),
            ));
        }
        if c.format_version != FORMAT_VERSION {
            return Err(Error::corrupt(
                where_,
                format!(
                    "format version {} is not supported (this build reads version {FORMAT_VERSION})",
                    c.format_version
                ),
            ));
        }
        for (i, e) in c.models.iter().enumerate() {
            e.check()
                .map_err(|msg| Error::corrupt(where_, format!("models[{i}] ({}): {msg}", e.url)))?;
        }
        Ok(c)
    }

    /// The catalog in `path`, or an empty one when the file does not exist yet.
    pub fn read_or_new(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Add `entry`, replacing the entry with the same URL in place; returns whether one was
    /// replaced.
    pub fn upsert(&mut self, entry: CatalogEntry) -> bool {
        match self.models.iter_mut().find(|e| e.url == entry.url) {
            Some(old) => {
                *old = entry;
                true
            }
            None => {
                self.models.push(entry);
                false
            }
        }
    }

    /// Pretty JSON with a final newline (files are reviewed and diffed by people).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a catalog serializes");
        s.push('\n');
        s
    }

    /// Write through a temporary file in the same folder, so a reader never sees half a file.
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, self.to_json()).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }
}

impl CatalogEntry {
    /// The rules the browser enforces too (www/catalog.js), as a message naming the problem.
    fn check(&self) -> std::result::Result<(), String> {
        if self.url.is_empty() {
            return Err("url is empty".into());
        }
        if self.source_languages.is_empty() || self.target_languages.is_empty() {
            return Err("needs at least one source and one target language".into());
        }
        for tag in self.source_languages.iter().chain(&self.target_languages) {
            match canonical_tag(tag) {
                Some(c) if &c == tag => {}
                Some(c) => return Err(format!("language '{tag}' is not canonical (write '{c}')")),
                None => return Err(format!("'{tag}' is not a BCP 47 language tag")),
            }
        }
        if !self.target_codes.is_empty() {
            let keys: Vec<&String> = self.target_codes.keys().collect();
            let mut targets: Vec<&String> = self.target_languages.iter().collect();
            targets.sort();
            if keys != targets {
                return Err(
                    "target_codes must give one code for each of target_languages, and no other"
                        .into(),
                );
            }
        }
        if self.sha256.len() != 64
            || !self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err("sha256 must be 64 lower-case hex digits".into());
        }
        Ok(())
    }
}

/// Individual languages that CLDR (and so `Intl.getCanonicalLocales`) replaces by their
/// macrolanguage (supplementalMetadata's languageAlias, reason "macrolanguage"): isolang knows
/// the ISO 639-3 codes but not these relations, so this is written by hand — the entries OPUS-MT
/// and Tatoeba (tc) models use, not the whole list.
const MACROLANGUAGE_ALIASES: &[(&str, &str)] = &[
    ("arb", "ar"),
    ("ayr", "ay"),
    ("azj", "az"),
    ("cmn", "zh"),
    ("ekk", "et"),
    ("gaz", "om"),
    ("gug", "gn"),
    ("ike", "iu"),
    ("khk", "mn"),
    ("kmr", "ku"),
    ("kng", "kg"),
    ("kpv", "kv"),
    ("lvs", "lv"),
    ("npi", "ne"),
    ("ojg", "oj"),
    ("ory", "or"),
    ("pbu", "ps"),
    ("pes", "fa"),
    ("plt", "mg"),
    ("quz", "qu"),
    ("swh", "sw"),
    ("uzn", "uz"),
    ("ydd", "yi"),
    ("zsm", "ms"),
];

/// Withdrawn ISO 639-1 codes and their replacements (as Intl does: `iw` → `he`); isolang knows
/// only current codes. Hand-written, complete for 639-1.
const DEPRECATED_639_1: &[(&str, &str)] = &[
    ("in", "id"),
    ("iw", "he"),
    ("ji", "yi"),
    ("jw", "jv"),
    ("mo", "ro"),
];

/// The BCP 47 language subtag for an ISO 639-1 or 639-3 code: the two-letter code where ISO
/// 639-1 has one (`fra` → `fr`, `nob` → `nb`, `zho` → `zh`, `cmn` → `zh`), else the 639-3 code
/// itself (`yue`, `ast`). None for a code ISO 639-1/-3 does not define (`xx`, `roa`) and for
/// `mul`, `und`, `zxx`, `mis`.
pub fn language_subtag(code: &str) -> Option<String> {
    let code = code.to_ascii_lowercase();
    if NOT_A_LANGUAGE.contains(&code.as_str()) {
        return None;
    }
    let lookup = |table: &[(&str, &str)]| {
        table
            .iter()
            .find(|(from, _)| *from == code)
            .map(|(_, to)| to.to_string())
    };
    match code.len() {
        2 => lookup(DEPRECATED_639_1)
            .or_else(|| isolang::Language::from_639_1(&code).map(|_| code.clone())),
        3 => lookup(MACROLANGUAGE_ALIASES).or_else(|| {
            isolang::Language::from_639_3(&code)
                .map(|l| l.to_639_1().map_or_else(|| code.clone(), str::to_string))
        }),
        _ => None,
    }
}

/// ISO 639's special codes: valid, but no language a catalog can offer or be asked for.
const NOT_A_LANGUAGE: &[&str] = &["mis", "mul", "und", "zxx"];

/// A language tag or a model's code in canonical BCP 47 form, or None when it is not one.
/// Subtags may be separated by `-` or `_` (OPUS-MT writes `pt_br`, `zho_Hans`); the language
/// subtag goes through [`language_subtag`], a script is title-cased (`Hans`), a region
/// upper-cased (`BR`, or three digits: `419`), variants lower-cased. So `fra` → `fr`,
/// `zho_Hans` → `zh-Hans`, `pt_br` → `pt-BR`, `EN-us` → `en-US`. Extensions and private use
/// (`-u-`, `-x-`) are not accepted: no catalog needs them.
pub fn canonical_tag(tag: &str) -> Option<String> {
    let mut parts = tag.split(['-', '_']);
    let mut out = language_subtag(parts.next()?)?;
    let mut stage = 0; // 0: script next, 1: region next, 2: variants only
    for p in parts {
        let alpha = p.bytes().all(|b| b.is_ascii_alphabetic());
        let digits = p.bytes().all(|b| b.is_ascii_digit());
        out.push('-');
        if stage == 0 && p.len() == 4 && alpha {
            out.push_str(&p[..1].to_ascii_uppercase());
            out.push_str(&p[1..].to_ascii_lowercase());
            stage = 1;
        } else if stage <= 1 && ((p.len() == 2 && alpha) || (p.len() == 3 && digits)) {
            out.push_str(&p.to_ascii_uppercase());
            stage = 2;
        } else if is_variant(p) {
            out.push_str(&p.to_ascii_lowercase());
            stage = 2;
        } else {
            return None;
        }
    }
    Some(out)
}

/// A BCP 47 variant subtag: 5–8 letters or digits, or 4 starting with a digit (`1901`).
fn is_variant(p: &str) -> bool {
    let alnum = p.bytes().all(|b| b.is_ascii_alphanumeric());
    alnum && ((5..=8).contains(&p.len()) || (p.len() == 4 && p.as_bytes()[0].is_ascii_digit()))
}

/// What `catalog add` needs besides the package.
#[derive(Debug, Clone, Default)]
pub struct EntryOptions {
    /// The package folder's URL as the catalog will hold it (a `/` is added when missing).
    pub url: String,
    /// Source languages (tags or codes; canonicalized). Empty: taken from an `opus-mt-SRC-TGT`
    /// folder name in the manifest's provenance, else an error.
    pub source: Vec<String>,
    /// Target languages. A model with one target language needs exactly one (or an
    /// `opus-mt-SRC-TGT` provenance); for a multi-target model they choose among its codes
    /// (default: every code that maps to a tag).
    pub target: Vec<String>,
    /// `(tag, code)`: use this model code for this tag, instead of the derived mapping (codes
    /// ISO 639 lacks, or two codes that map to one tag).
    pub map: Vec<(String, String)>,
    /// The entry's `quality` note (blank: none).
    pub quality: Option<String>,
}

/// An entry and what a person should know about it (codes left out, choices made).
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub entry: CatalogEntry,
    /// One sentence each: a language guessed from the provenance, codes left out and why.
    pub notes: Vec<String>,
}

fn input(msg: String) -> Error {
    Error::Input(msg)
}

/// The canonical tag of a `--source`/`--target`/`--map` value, or an error naming it.
fn tag_arg(what: &str, tag: &str) -> Result<String> {
    canonical_tag(tag).ok_or_else(|| {
        input(format!(
            "{what} '{tag}' is not a language tag or an ISO 639 code (e.g. 'en', 'pt-BR', 'fra')"
        ))
    })
}

/// `SRC`, `TGT` from a provenance naming an `opus-mt-SRC-TGT` (or `opus-mt-tc-big-SRC-TGT`)
/// folder, when both are language codes (`en-ROMANCE` is not).
fn languages_from_provenance(provenance: &str) -> Option<(String, String)> {
    let at = provenance.find("opus-mt-")? + "opus-mt-".len();
    let rest = &provenance[at..];
    let rest = rest
        .strip_prefix("tc-big-")
        .or_else(|| rest.strip_prefix("tc-base-"))
        .unwrap_or(rest);
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let (src, tgt) = name.split_once('-')?;
    Some((canonical_tag(src)?, canonical_tag(tgt)?))
}

/// Build the catalog entry for the package folder `dir`: reads and checks its manifest, sums
/// the sizes, hashes `manifest.json`, and maps a multi-target model's codes to BCP 47.
/// Errors: no readable manifest, a size on disk that differs from the manifest's, languages
/// that cannot be determined or are not tags, a `--target` the model cannot write.
pub fn entry_for_package(dir: &Path, opts: &EntryOptions) -> Result<NewEntry> {
    let mpath = dir.join(MANIFEST);
    let bytes = std::fs::read(&mpath).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            input(format!(
                "{}: no manifest.json: not a model package folder (make one with `marian-wasm convert`)",
                dir.display()
            ))
        } else {
            Error::io(&mpath, e)
        }
    })?;
    let manifest = Manifest::parse(&bytes)?;
    let mut size = bytes.len() as u64;
    for f in &manifest.files {
        let p = dir.join(&f.name);
        let on_disk = std::fs::metadata(&p).map_err(|e| Error::io(&p, e))?.len();
        if on_disk != f.size {
            return Err(Error::corrupt(
                p.display().to_string(),
                format!(
                    "size is {on_disk} bytes, manifest says {} (the package is damaged)",
                    f.size
                ),
            ));
        }
        size += f.size;
    }
    let mut notes = Vec::new();
    let guessed = languages_from_provenance(&manifest.provenance);
    let source = if opts.source.is_empty() {
        let (src, _) = guessed.clone().ok_or_else(|| {
            input(format!(
                "{}: give --source (the language(s) the model reads, e.g. --source en); the manifest does not say",
                dir.display()
            ))
        })?;
        notes.push(format!(
            "source language '{src}' taken from the manifest's provenance"
        ));
        vec![src]
    } else {
        dedup(
            opts.source
                .iter()
                .map(|s| tag_arg("--source", s))
                .collect::<Result<_>>()?,
        )
    };
    let wanted: Vec<String> = dedup(
        opts.target
            .iter()
            .map(|s| tag_arg("--target", s))
            .collect::<Result<_>>()?,
    );
    let mut map = BTreeMap::new();
    for (tag, code) in &opts.map {
        map.insert(
            tag_arg("--map", tag)?,
            code.trim_start_matches(">>")
                .trim_end_matches("<<")
                .to_string(),
        );
    }

    let (target_languages, target_codes) = if manifest.target_languages.is_empty() {
        if !map.is_empty() {
            return Err(input(format!(
                "{}: --map is for multi-target models; this one writes one language and has no language tokens",
                dir.display()
            )));
        }
        let target = match wanted.as_slice() {
            [one] => one.clone(),
            [] => {
                let (_, tgt) = guessed.ok_or_else(|| {
                    input(format!(
                        "{}: a model with one target language: give it with --target (e.g. --target fr)",
                        dir.display()
                    ))
                })?;
                notes.push(format!("target language '{tgt}' taken from the manifest's provenance"));
                tgt
            }
            _ => {
                return Err(input(format!(
                    "{}: this model writes one language (it has no >>xx<< tokens), but --target gave {}",
                    dir.display(),
                    wanted.join(", ")
                )))
            }
        };
        (vec![target], BTreeMap::new())
    } else {
        multi_target_codes(dir, &manifest.target_languages, &wanted, &map, &mut notes)?
    };
    let entry = CatalogEntry {
        url: if opts.url.ends_with('/') {
            opts.url.clone()
        } else {
            format!("{}/", opts.url)
        },
        source_languages: source,
        target_languages,
        target_codes,
        size,
        sha256: sha256_hex(&bytes),
        quant: manifest.quant.to_string(),
        quality: opts.quality.clone().filter(|q| !q.trim().is_empty()),
    };
    entry
        .check()
        .map_err(|msg| input(format!("{}: {msg}", dir.display())))?;
    Ok(NewEntry { entry, notes })
}

fn dedup(tags: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// A multi-target model's tags and tag → code map: each code mapped with [`canonical_tag`]
/// unless `map` says otherwise; codes that map to no tag, or to a tag an earlier code (in the
/// manifest's sorted order) already took, are left out with a note. `wanted` (non-empty)
/// keeps only those tags, each of which must be there.
fn multi_target_codes(
    dir: &Path,
    codes: &[String],
    wanted: &[String],
    map: &BTreeMap<String, String>,
    notes: &mut Vec<String>,
) -> Result<(Vec<String>, BTreeMap<String, String>)> {
    for (tag, code) in map {
        if !codes.contains(code) {
            return Err(input(format!(
                "{}: --map {tag}={code}: the model has no >>{code}<< token (its codes: {})",
                dir.display(),
                codes.join(", ")
            )));
        }
    }
    let mut tags: Vec<String> = Vec::new();
    let mut by_tag: BTreeMap<String, String> = map.clone();
    let mut unmapped = Vec::new();
    for code in codes {
        if let Some((tag, _)) = map.iter().find(|(_, c)| *c == code) {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
            continue;
        }
        match canonical_tag(code) {
            None => unmapped.push(code.clone()),
            Some(tag) => match by_tag.get(&tag) {
                Some(first) => notes.push(format!(
                    ">>{code}<< left out: '{tag}' is already >>{first}<< (--map {tag}={code} to choose it)"
                )),
                None => {
                    by_tag.insert(tag.clone(), code.clone());
                    tags.push(tag);
                }
            },
        }
    }
    if !unmapped.is_empty() {
        notes.push(format!(
            "left out (not ISO 639 codes; --map TAG=CODE adds one): {}",
            unmapped.join(", ")
        ));
    }
    if !wanted.is_empty() {
        let missing: Vec<&String> = wanted.iter().filter(|t| !by_tag.contains_key(*t)).collect();
        if !missing.is_empty() {
            return Err(input(format!(
                "{}: the model writes no {} (its languages: {})",
                dir.display(),
                missing
                    .iter()
                    .map(|s| format!("'{s}'"))
                    .collect::<Vec<_>>()
                    .join(", "),
                tags.join(", ")
            )));
        }
        tags.retain(|t| wanted.contains(t));
        by_tag.retain(|t, _| wanted.contains(t));
    }
    if tags.is_empty() {
        return Err(input(format!(
            "{}: none of the model's codes ({}) is an ISO 639 code; name them with --map TAG=CODE",
            dir.display(),
            codes.join(", ")
        )));
    }
    Ok((tags, by_tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_codes_map_to_canonical_bcp47() {
        for (code, want) in [
            ("fra", "fr"),
            ("fr", "fr"),
            ("nob", "nb"),
            ("por", "pt"),
            ("pt_br", "pt-BR"),
            ("cmn_Hans", "zh-Hans"),
            ("zho_Hant", "zh-Hant"),
            ("zho", "zh"),
            ("yue_Hant", "yue-Hant"),
            ("srp_Cyrl", "sr-Cyrl"),
            ("arb", "ar"),
            ("iw", "he"),
            ("ast", "ast"),
            ("EN-us", "en-US"),
            ("es_419", "es-419"),
            ("de-CH-1901", "de-CH-1901"),
            ("eng", "en"),
        ] {
            assert_eq!(canonical_tag(code).as_deref(), Some(want), "{code}");
        }
        for bad in [
            "",
            "xx",
            "roa",
            "mul",
            "und",
            "english",
            "fr-",
            "fr-Latn-Latn",
            "zz_Hans",
            "fr-x-priv",
        ] {
            assert_eq!(canonical_tag(bad), None, "{bad}");
        }
    }

    #[test]
    fn provenance_names_give_the_pair() {
        let p = "converted by marian-wasm 0.1.0 from opus-mt-en-de (pytorch_model.bin)";
        assert_eq!(
            languages_from_provenance(p),
            Some(("en".into(), "de".into()))
        );
        let p = "converted by marian-wasm 0.1.0 from opus-mt-tc-big-fra-eng (model.safetensors)";
        assert_eq!(
            languages_from_provenance(p),
            Some(("fr".into(), "en".into()))
        );
        assert_eq!(
            languages_from_provenance("from opus-mt-en-ROMANCE (x)"),
            None
        );
        assert_eq!(languages_from_provenance("from tiny-multi (x)"), None);
    }

    fn codes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn multi_target_codes_map_choose_and_report() {
        let dir = Path::new("pkg");
        let mut notes = Vec::new();
        let all = codes(&["cmn_Hans", "eng", "fra", "pt_br", "roa", "zho_Hans"]);
        let (tags, map) = multi_target_codes(dir, &all, &[], &BTreeMap::new(), &mut notes).unwrap();
        assert_eq!(tags, codes(&["zh-Hans", "en", "fr", "pt-BR"]));
        assert_eq!(map["zh-Hans"], "cmn_Hans");
        assert_eq!(map["pt-BR"], "pt_br");
        assert!(
            notes.iter().any(|n| n.contains(">>zho_Hans<< left out")),
            "{notes:?}"
        );
        assert!(notes.iter().any(|n| n.contains("roa")), "{notes:?}");

        // --map picks the other code for zh-Hans; --target keeps a subset.
        let mut notes = Vec::new();
        let pick = BTreeMap::from([("zh-Hans".to_string(), "zho_Hans".to_string())]);
        let (tags, map) =
            multi_target_codes(dir, &all, &codes(&["zh-Hans", "fr"]), &pick, &mut notes).unwrap();
        assert_eq!(tags, codes(&["fr", "zh-Hans"]));
        assert_eq!(map.len(), 2);
        assert_eq!(map["zh-Hans"], "zho_Hans");

        let err = multi_target_codes(dir, &all, &codes(&["de"]), &BTreeMap::new(), &mut notes)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'de'") && err.contains("fr"), "{err}");
        let bad = BTreeMap::from([("de".to_string(), "deu".to_string())]);
        let err = multi_target_codes(dir, &all, &[], &bad, &mut notes)
            .unwrap_err()
            .to_string();
        assert!(err.contains(">>deu<<"), "{err}");
    }

    fn entry(url: &str) -> CatalogEntry {
        CatalogEntry {
            url: url.into(),
            source_languages: codes(&["en"]),
            target_languages: codes(&["fr"]),
            target_codes: BTreeMap::new(),
            size: 10,
            sha256: "a".repeat(64),
            quant: "q8".into(),
            quality: None,
        }
    }

    #[test]
    fn upsert_replaces_the_same_url_and_parse_checks_entries() {
        let mut c = Catalog::default();
        assert!(!c.upsert(entry("a/")));
        assert!(!c.upsert(entry("b/")));
        let mut again = entry("a/");
        again.size = 20;
        assert!(c.upsert(again));
        assert_eq!(c.models.len(), 2);
        assert_eq!(c.models[0].size, 20);
        let back = Catalog::parse(&c.to_json(), "c.json").unwrap();
        assert_eq!(back, c);
        // An entry that breaks a rule is named by index and URL.
        let mut bad = c.clone();
        bad.models[1].target_languages = codes(&["FR"]);
        let err = Catalog::parse(&bad.to_json(), "c.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("models[1] (b/)") && err.contains("write 'fr'"),
            "{err}"
        );
        let mut bad = c.clone();
        bad.models[0].target_codes.insert("de".into(), "deu".into());
        let err = Catalog::parse(&bad.to_json(), "c.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("models[0] (a/)") && err.contains("target_codes"),
            "{err}"
        );
        let err = Catalog::parse(r#"{"format":"x","format_version":1,"models":[]}"#, "c.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 'marian-wasm-catalog'"), "{err}");
    }
}
