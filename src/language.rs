//! Language detection: which language a text is in, as canonical BCP 47 tags.
//!
//! A thin wrapper around the [`whatlang`] crate (pure Rust, MIT; trigram and alphabet profiles of
//! 70 languages; builds for wasm32-unknown-unknown), which names languages by ISO 639-3 code
//! (`eng`, `fra`, `cmn`). This module maps them to the tags the rest of the product uses —
//! model catalogs and `canonicalLanguage` in www/catalog.js — in the form `Intl` canonicalizes
//! them to (`en`, `fr`, `zh`, `fa` for `pes`, `fil` for `tgl`), and answers in the shape of
//! Chrome's LanguageDetector: a list best first, ending with [`UNDETERMINED`].
//!
//! What `confidence` means: whatlang's own measure, in 0..=1, of how far the best language's score
//! is ahead of the second's, scaled by how much text there was (a short text needs a wider lead
//! for the same confidence; whatlang calls a result over 0.9 reliable). It is not a calibrated
//! probability. The rest, `1 - confidence`, goes to `und`, so the confidences of a list sum to 1.
//!
//! Text it cannot judge — no letters (numbers, punctuation, emoji), or letters whose profile gives
//! no language any lead (often one short word) — gives `[und 1.0]`.

use whatlang::{Detector, Lang};

/// The tag for "cannot tell" (BCP 47's undetermined language).
pub const UNDETERMINED: &str = "und";

/// Above this confidence whatlang calls a result reliable (its `Info::is_reliable`).
pub const RELIABLE: f64 = 0.9;

/// One candidate language of a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Detected {
    /// A canonical BCP 47 tag: a language subtag only (`en`, `fr`, `zh`, `nb`), or
    /// [`UNDETERMINED`].
    pub language: &'static str,
    /// 0..=1; see the module documentation for what it means.
    pub confidence: f64,
}

/// whatlang's ISO 639-3 codes → canonical BCP 47 language subtags (ISO 639-1 where there is one,
/// as BCP 47 prefers; the forms `Intl.getCanonicalLocales` gives). Exhaustive: a whatlang release
/// with a new language fails to compile here until it is added.
fn bcp47(lang: Lang) -> &'static str {
    match lang {
        Lang::Afr => "af",
        Lang::Aka => "ak",
        Lang::Amh => "am",
        Lang::Ara => "ar",
        Lang::Aze => "az",
        Lang::Bel => "be",
        Lang::Ben => "bn",
        Lang::Bul => "bg",
        Lang::Cat => "ca",
        Lang::Ces => "cs",
        // Mandarin: CLDR's alias of the individual language `cmn` is the macrolanguage `zh`.
        Lang::Cmn => "zh",
        Lang::Cym => "cy",
        Lang::Dan => "da",
        Lang::Deu => "de",
        Lang::Ell => "el",
        Lang::Eng => "en",
        Lang::Epo => "eo",
        Lang::Est => "et",
        Lang::Fin => "fi",
        Lang::Fra => "fr",
        Lang::Guj => "gu",
        Lang::Heb => "he",
        Lang::Hin => "hi",
        Lang::Hrv => "hr",
        Lang::Hun => "hu",
        Lang::Hye => "hy",
        Lang::Ind => "id",
        Lang::Ita => "it",
        Lang::Jav => "jv",
        Lang::Jpn => "ja",
        Lang::Kan => "kn",
        Lang::Kat => "ka",
        Lang::Khm => "km",
        Lang::Kor => "ko",
        Lang::Lat => "la",
        Lang::Lav => "lv",
        Lang::Lit => "lt",
        Lang::Mal => "ml",
        Lang::Mar => "mr",
        Lang::Mkd => "mk",
        Lang::Mya => "my",
        Lang::Nep => "ne",
        Lang::Nld => "nl",
        // Norwegian Bokmål (not the macrolanguage `no`).
        Lang::Nob => "nb",
        Lang::Ori => "or",
        Lang::Pan => "pa",
        // Iranian Persian: CLDR's alias of `pes` is `fa`.
        Lang::Pes => "fa",
        Lang::Pol => "pl",
        Lang::Por => "pt",
        Lang::Ron => "ro",
        Lang::Rus => "ru",
        Lang::Sin => "si",
        Lang::Slk => "sk",
        Lang::Slv => "sl",
        Lang::Sna => "sn",
        Lang::Spa => "es",
        Lang::Srp => "sr",
        Lang::Swe => "sv",
        Lang::Tam => "ta",
        Lang::Tel => "te",
        // Tagalog: `Intl` canonicalizes `tl` to `fil` (CLDR's alias).
        Lang::Tgl => "fil",
        Lang::Tha => "th",
        Lang::Tuk => "tk",
        Lang::Tur => "tr",
        Lang::Ukr => "uk",
        Lang::Urd => "ur",
        Lang::Uzb => "uz",
        Lang::Vie => "vi",
        Lang::Yid => "yi",
        Lang::Zul => "zu",
    }
}

/// The whatlang language of a BCP 47 tag, by its language subtag (case-insensitive; `fr-CA` →
/// French, `zh-Hant` → Mandarin, `no` and `nb` → Bokmål, `tl` and `fil` → Tagalog, and the
/// ISO 639-3 codes whatlang itself uses, `fra`), or None when whatlang has no such language.
pub fn whatlang_language(tag: &str) -> Option<Lang> {
    let primary = tag.split(['-', '_']).next()?.to_ascii_lowercase();
    let primary = match primary.as_str() {
        "no" => "nb",
        "tl" => "fil",
        "iw" => "he",
        "ji" => "yi",
        "in" => "id",
        other => other,
    };
    Lang::all()
        .iter()
        .copied()
        .find(|&l| bcp47(l) == primary || l.code() == primary)
}

/// The languages whatlang can tell apart, as canonical BCP 47 tags (70).
pub fn supported_languages() -> Vec<&'static str> {
    Lang::all().iter().map(|&l| bcp47(l)).collect()
}

/// The languages of `text`, best first: the detected language with its confidence, then
/// [`UNDETERMINED`] with the rest (left out when the confidence is 1); `[und 1.0]` for text it
/// cannot judge. Every language whatlang knows is a candidate.
pub fn detect(text: &str) -> Vec<Detected> {
    answer(Detector::new().detect(text))
}

/// Like [`detect`], with the candidates restricted to `expected` (BCP 47 tags; whatlang's
/// allowlist, which makes short texts far more accurate when the possible languages are known).
/// Tags whatlang does not know are left out; when none is left the answer is `[und 1.0]`.
pub fn detect_among(text: &str, expected: &[&str]) -> Vec<Detected> {
    let mut allowed: Vec<Lang> = expected
        .iter()
        .filter_map(|t| whatlang_language(t))
        .collect();
    allowed.dedup();
    if allowed.is_empty() {
        return answer(None);
    }
    answer(Detector::with_allowlist(allowed).detect(text))
}

fn answer(info: Option<whatlang::Info>) -> Vec<Detected> {
    let und = |confidence| Detected {
        language: UNDETERMINED,
        confidence,
    };
    let Some(info) = info else {
        return vec![und(1.0)];
    };
    let confidence = info.confidence().clamp(0.0, 1.0);
    if confidence <= 0.0 {
        return vec![und(1.0)];
    }
    let mut out = vec![Detected {
        language: bcp47(info.lang()),
        confidence,
    }];
    if confidence < 1.0 {
        out.push(und(1.0 - confidence));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn best(text: &str) -> &'static str {
        detect(text)[0].language
    }

    #[test]
    fn clear_sentences() {
        assert_eq!(
            best("A little girl is playing in the park with her dog."),
            "en"
        );
        assert_eq!(
            best("Une petite fille joue dans le parc avec son chien."),
            "fr"
        );
        assert_eq!(
            best("Ein kleines Mädchen spielt mit ihrem Hund im Park."),
            "de"
        );
        assert_eq!(
            best("Una niña pequeña juega en el parque con su perro."),
            "es"
        );
        assert_eq!(
            best("Маленькая девочка играет в парке со своей собакой."),
            "ru"
        );
        assert_eq!(best("小女孩和她的狗在公园里玩耍。"), "zh");
        assert_eq!(best("小さな女の子が公園で犬と遊んでいます。"), "ja");
        assert_eq!(best("ילדה קטנה משחקת בפארק עם הכלב שלה."), "he");
        let en = detect("A little girl is playing in the park with her dog.");
        assert!(en[0].confidence > RELIABLE, "{en:?}");
    }

    #[test]
    fn confidences_sum_to_one_and_und_is_last() {
        for text in ["The cat.", "Le chat noir dort.", "Bonjour", "Two dogs run."] {
            let d = detect(text);
            let sum: f64 = d.iter().map(|x| x.confidence).sum();
            assert!((sum - 1.0).abs() < 1e-9, "{text}: {d:?}");
            assert!(d.iter().all(|x| (0.0..=1.0).contains(&x.confidence)));
            if d.len() > 1 {
                assert_eq!(d.last().unwrap().language, UNDETERMINED);
            }
        }
    }

    #[test]
    fn letterless_input_is_undetermined() {
        for text in [
            "",
            "   ",
            "12 345,67",
            "!!! ??? ...",
            "🙂🎉",
            "2026-12-06 07:50",
        ] {
            assert_eq!(
                detect(text),
                vec![Detected {
                    language: UNDETERMINED,
                    confidence: 1.0
                }],
                "{text:?}"
            );
        }
    }

    #[test]
    fn restricted_to_expected_languages() {
        // Among English and French only, a short French phrase cannot become Spanish or Italian.
        let d = detect_among("Voir les images", &["en", "fr-CA"]);
        assert_eq!(d[0].language, "fr", "{d:?}");
        // Tags whatlang does not know are left out; none left: undetermined.
        assert_eq!(
            detect_among("Hello there, my friend", &["tlh"])[0].language,
            "und"
        );
        assert_eq!(
            detect_among("Hello there, my friend", &["tlh", "en"])[0].language,
            "en"
        );
    }

    #[test]
    fn tags_round_trip() {
        let all = supported_languages();
        assert_eq!(all.len(), 70);
        for tag in &all {
            let lang = whatlang_language(tag).unwrap_or_else(|| panic!("{tag}"));
            assert_eq!(bcp47(lang), *tag);
        }
        assert_eq!(whatlang_language("FR-ca"), Some(Lang::Fra));
        assert_eq!(whatlang_language("zh-Hant-TW"), Some(Lang::Cmn));
        assert_eq!(whatlang_language("no"), Some(Lang::Nob));
        assert_eq!(whatlang_language("tl"), Some(Lang::Tgl));
        assert_eq!(whatlang_language("fra"), Some(Lang::Fra));
        assert_eq!(whatlang_language("tlh"), None);
    }
}
