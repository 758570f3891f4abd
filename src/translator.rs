//! The front door: text in, text out, over a loaded package.

use crate::adapter::Adapter;
use crate::config::GenerationConfig;
use crate::error::{Error, Result};
use crate::generate::{generate_async, ready, GenerateOptions, Observer};
use crate::gpu::{GpuContext, GpuMarian};
use crate::model::Marian;
use crate::package::Package;
use crate::protect::{protect, restore, Span};
use crate::tokenizer::MarianTokenizer;

/// Whether the synchronous methods may use the GPU: natively yes (the backend waits on its
/// device); in a browser a GPU answers only through the event loop, so they use the CPU.
const SYNC_GPU: bool = cfg!(not(target_arch = "wasm32"));

/// Longest input accepted at once (bytes); longer text is refused, not truncated.
pub const MAX_INPUT_BYTES: usize = 1 << 20;

/// Most tokens (with `</s>`) of one piece of a sentence longer than the model's positions (at
/// most the positions). A model trained on sentences drops most of a 512-token chunk (a
/// 2 255-word line came back as 947 characters), and its output (French runs ~1.2× the English
/// tokens) must fit `max_length`; Bergamot, the browser MT engine, cuts at 128 tokens too.
pub const LONG_SENTENCE_BUDGET: usize = 128;

/// A piece of a text with the source text between it and the piece before (whitespace or
/// nothing; "" for the first): what `join_pieces` joins the translations with.
type GappedPiece = (String, Piece);

pub struct Translator {
    /// The CPU model: always loaded (it serves when there is no GPU or the GPU fails, and
    /// fine-tuning runs on it).
    pub model: Marian,
    /// The GPU model, when a GPU was asked for (or found, with `auto`) and could take it.
    pub gpu: Option<GpuMarian>,
    /// Why `auto` is not using a GPU (no adapter, limits too small, …), for the caller to show.
    pub gpu_unavailable: Option<String>,
    pub tokenizer: MarianTokenizer,
    pub generation: GenerationConfig,
    pub model_sha256: String,
    /// Numbers, URLs, e-mail addresses and emoji come out exactly as they went in
    /// (`crate::protect`); on by default.
    pub protect_spans: bool,
    /// A multi-target model's output language for requests that name none
    /// (`GenerateOptions::target_language`; `fra` or `>>fra<<`).
    pub target_language: Option<String>,
}

/// Which backend computes translations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Gpu,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
        }
    }
}

/// What the caller asks for: a device, or the GPU when one works and the CPU otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Gpu,
    Auto,
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" | "wasm" => Ok(DeviceChoice::Cpu),
            "gpu" | "webgpu" => Ok(DeviceChoice::Gpu),
            "auto" => Ok(DeviceChoice::Auto),
            other => Err(Error::Input(format!(
                "unknown device '{other}' (expected cpu, gpu or auto)"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Translation {
    pub text: String,
    /// Generated ids per chunk (a long input is split into several), HF's layout:
    /// decoder start token first.
    pub ids: Vec<Vec<u32>>,
    /// The backend that produced the last chunk (the CPU after a GPU failure mid-way).
    pub device: Device,
    /// What was passed through untranslated and why (a word longer than the model's positions,
    /// a text over `MAX_INPUT_BYTES`); empty when every piece went through the model. Texts
    /// without letters pass through by rule, with no entry.
    pub issues: Vec<String>,
}

/// One piece of a source text: ids for the model (ending in `</s>`), or text that passes
/// through unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Model(Vec<u32>),
    /// The text, and why it is not translated (None: nothing to translate, no letters).
    Verbatim(String, Option<String>),
}

impl Translator {
    /// A CPU translator.
    pub fn new(pkg: &Package) -> Result<Self> {
        Ok(Translator {
            model: Marian::from_package(pkg)?,
            gpu: None,
            gpu_unavailable: None,
            tokenizer: MarianTokenizer::from_package(pkg)?,
            generation: pkg.manifest.generation.clone(),
            model_sha256: pkg.manifest.model_sha256().to_string(),
            protect_spans: true,
            target_language: None,
        })
    }

    /// A translator on the chosen device. `Gpu` fails with the reason when no usable GPU
    /// exists; `Auto` then serves from the CPU and says why in `gpu_unavailable`. Software
    /// GPUs (lavapipe, SwiftShader) are used only when asked for by name (`Gpu`), natively.
    pub async fn with_device(pkg: &Package, choice: DeviceChoice) -> Result<Self> {
        let mut t = Self::new(pkg)?;
        if choice == DeviceChoice::Cpu {
            return Ok(t);
        }
        let gpu = async {
            let ctx = GpuContext::open(choice == DeviceChoice::Gpu).await?;
            GpuMarian::from_package(pkg, ctx)
        }
        .await;
        match (gpu, choice) {
            (Ok(g), _) => t.gpu = Some(g),
            (Err(e), DeviceChoice::Gpu) => return Err(e),
            (Err(e), _) => t.gpu_unavailable = Some(e.to_string()),
        }
        Ok(t)
    }

    /// The device the next translation will run on.
    pub fn device(&self) -> Device {
        match &self.gpu {
            Some(g) if g.context().check().is_ok() => Device::Gpu,
            _ => Device::Cpu,
        }
    }

    /// Generate on the GPU when it is there, healthy and `use_gpu`; when it fails mid-way
    /// (device lost), the same batch is generated again on the CPU and the CPU serves from
    /// then on.
    async fn run(
        &self,
        batch: &[Vec<u32>],
        g: &GenerationConfig,
        observe: &mut Observer<'_>,
        use_gpu: bool,
    ) -> Result<(Vec<Vec<u32>>, Device)> {
        if let (Some(gpu), Device::Gpu, true) = (&self.gpu, self.device(), use_gpu) {
            match generate_async(gpu, batch, g, observe).await {
                Ok(out) => return Ok((out, Device::Gpu)),
                Err(Error::DeviceLost(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((
            generate_async(&self.model, batch, g, observe).await?,
            Device::Cpu,
        ))
    }

    /// Put a fine-tuning adapter on (or, with `None`, take it off). An adapter made for
    /// another base model is refused.
    pub fn set_adapter(&mut self, adapter: Option<&Adapter>) -> Result<()> {
        let (delta, last) = match adapter {
            None => (None, None),
            Some(a) => {
                a.check_base(
                    &self.model_sha256,
                    self.model.config.d_model,
                    self.model.target_vocab_size(),
                    self.model.config.decoder_ffn_dim,
                )?;
                (Some(a.head_delta()?), a.last_layer_delta()?)
            }
        };
        // On a copy: a failure half-way leaves the translator as it was.
        let mut model = self.model.clone();
        model.set_adapter(delta.clone(), last.as_ref())?;
        if let Some(gpu) = &self.gpu {
            gpu.set_adapter(delta.as_ref(), model.last_fc2_weight()?.as_ref())?;
        }
        self.model = model;
        Ok(())
    }

    /// Source pieces the model can take: a text of one sentence whole when it fits in
    /// `max_position_embeddings` tokens (as HF would translate it), else one piece per sentence
    /// (Marian models are trained on sentences; one without letters passes through as it is),
    /// a sentence that alone is longer than the positions being cut into even pieces of at
    /// most `LONG_SENTENCE_BUDGET` tokens, at clause ends (`,` `;` `:` dashes, `，` `、` `،`
    /// …) where it can and else between words (`crate::text::balanced_cuts`). Never truncates.
    /// What the model cannot or need not take passes through unchanged: a text without letters
    /// (punctuation, digits, emoji, symbols: a model invents sentences for them), and a single
    /// word longer than the model's positions (a hash, a base64 blob, a long URL), kept in its
    /// place between the translated runs around it.
    /// `language`: a multi-target model's language token (`language_prefix`), put before every
    /// piece.
    pub fn split_for_model(&self, text: &str, language: Option<&str>) -> Result<Vec<Piece>> {
        Ok(self
            .split_with_gaps(text, language)?
            .into_iter()
            .map(|(_, piece)| piece)
            .collect())
    }

    /// `split_for_model`, each piece with the source text between it and the piece before
    /// (whitespace, or nothing; "" for the first), for `join_pieces` to keep the text's layout.
    fn split_with_gaps(&self, text: &str, language: Option<&str>) -> Result<Vec<GappedPiece>> {
        if !text.chars().any(char::is_alphabetic) {
            return Ok(vec![(
                String::new(),
                Piece::Verbatim(text.to_string(), None),
            )]);
        }
        let limit = self.model.config.max_position_embeddings;
        let encode = |text: &str| self.tokenizer.encode_after(language, text);
        // Several sentences go to the model one by one: models trained on sentence pairs
        // translate the first sentences of a paragraph and drop the rest (the default model
        // kept 66 characters of a 1 213-character paragraph of 20 captions). Only a text of
        // one sentence is encoded whole.
        let sentences = crate::text::sentences(text);
        if sentences.len() <= 1 {
            let ids = encode(text)?;
            if ids.len() <= limit {
                return Ok(vec![(String::new(), Piece::Model(ids))]);
            }
        }
        let mut pieces = Vec::new();
        // Byte offset in `text` where the previous piece ended.
        let mut done = None;
        let at = |s: &str| s.as_ptr() as usize - text.as_ptr() as usize;
        for sentence in sentences {
            let start = at(sentence);
            let gap = |from: Option<usize>, to: usize| {
                from.map_or(String::new(), |f| text[f..to].to_string())
            };
            if !sentence.chars().any(char::is_alphabetic) {
                pieces.push((
                    gap(done, start),
                    Piece::Verbatim(sentence.to_string(), None),
                ));
                done = Some(start + sentence.len());
                continue;
            }
            let ids = encode(sentence)?;
            if ids.len() <= limit {
                pieces.push((gap(done, start), Piece::Model(ids)));
                done = Some(start + sentence.len());
                continue;
            }
            for (from, to, piece) in self.cut_long_sentence(sentence, language)? {
                pieces.push((gap(done, start + from), piece));
                done = Some(start + to);
            }
        }
        Ok(pieces)
    }

    /// A sentence longer than the model's positions in pieces of at most
    /// `LONG_SENTENCE_BUDGET` tokens (`split_for_model`): each piece with its byte range in
    /// `sentence`. Each unit (word) is encoded once, so the cost is linear in the sentence.
    fn cut_long_sentence(
        &self,
        sentence: &str,
        language: Option<&str>,
    ) -> Result<Vec<(usize, usize, Piece)>> {
        let limit = self.model.config.max_position_embeddings;
        let budget = limit.min(LONG_SENTENCE_BUDGET);
        // `</s>`, and the language token when there is one.
        let overhead = 1 + usize::from(language.is_some());
        let units = crate::text::cut_units(sentence);
        let mut cache: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut costs = Vec::with_capacity(units.len());
        for &(s, e, _) in &units {
            let word = &sentence[s..e];
            let cost = match cache.get(word) {
                Some(&c) => c,
                None => {
                    let c = self.tokenizer.encode(word)?.len().saturating_sub(1);
                    cache.insert(word, c);
                    c
                }
            };
            costs.push(cost);
        }
        let mut out = Vec::new();
        // Runs of units between words too long for the model, each cut on its own.
        let mut run_start = 0;
        for i in 0..=units.len() {
            let too_long = i < units.len() && costs[i] + overhead > limit;
            if i < units.len() && !too_long {
                continue;
            }
            let run = run_start..i;
            let clause: Vec<bool> = units[run.clone()].iter().map(|u| u.2).collect();
            for cut in crate::text::balanced_cuts(
                &costs[run.clone()],
                &clause,
                budget.saturating_sub(overhead).max(1),
            ) {
                let (s, e) = (
                    units[run.start + cut.start].0,
                    units[run.start + cut.end - 1].1,
                );
                let piece = &sentence[s..e];
                let ids = self.tokenizer.encode_after(language, piece)?;
                if ids.len() <= limit || cut.len() == 1 {
                    out.push((s, e, Piece::Model(ids)));
                } else {
                    // Word costs summed wrongly (cannot happen with whitespace-split
                    // SentencePiece, but never send the model more than it takes): halve.
                    let half = cut.start + cut.len() / 2;
                    let mid = units[run.start + half].0;
                    for (a, b) in [(s, mid), (mid, e)] {
                        let part = sentence[a..b].trim_end();
                        for (ps, pe, p) in self.cut_long_sentence(part, language)? {
                            out.push((a + ps, a + pe, p));
                        }
                    }
                }
            }
            if too_long {
                let (s, e, _) = units[i];
                let word = &sentence[s..e];
                let tokens = costs[i] + 1;
                out.push((
                    s,
                    e,
                    Piece::Verbatim(
                        word.to_string(),
                        Some(format!(
                            "a word of {} characters ({tokens} tokens, more than the model's \
                             {limit} positions) was kept as is",
                            word.chars().count()
                        )),
                    ),
                ));
            }
            run_start = i + 1;
        }
        Ok(out)
    }

    /// The language token to put before every text of a request (`None`: none), from the
    /// request's `requested` code or else `target_language`: `fra` and `>>fra<<` both name the
    /// token `>>fra<<`.
    /// Errors (`Error::Input`): a code that is not among the model's `language_tokens` (the
    /// message lists them), a code for a model with none, and no code for a model with several
    /// while a text of `texts` does not start with its own (as transformers users write
    /// `>>fra<< text`).
    pub fn language_prefix(
        &self,
        requested: Option<&str>,
        texts: &[&str],
    ) -> Result<Option<String>> {
        let tokens = self.tokenizer.language_tokens();
        let codes = || {
            tokens
                .iter()
                .map(|t| crate::tokenizer::language_code(t))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(code) = requested.or(self.target_language.as_deref()) else {
            let uncoded = texts
                .iter()
                .any(|t| !t.trim().is_empty() && !crate::tokenizer::starts_with_language_code(t));
            if tokens.len() > 1 && uncoded {
                return Err(Error::Input(format!(
                    "this model translates into {} languages: name one as the target language \
                     (--target-language, targetLanguage) from {}",
                    tokens.len(),
                    codes()
                )));
            }
            return Ok(None);
        };
        let token = if crate::tokenizer::is_language_token(code) {
            code.to_string()
        } else {
            format!(">>{code}<<")
        };
        if tokens.contains(&token) {
            return Ok(Some(token));
        }
        Err(Error::Input(if tokens.is_empty() {
            format!(
                "target language '{code}': this model has no target-language tokens (it \
                 translates into one language); leave the target language out"
            )
        } else {
            format!(
                "target language '{code}' is not one of this model's {}: {}",
                tokens.len(),
                codes()
            )
        }))
    }

    pub fn generation_for(&self, opts: &GenerateOptions) -> Result<GenerationConfig> {
        let mut g = opts.resolve(&self.generation)?;
        // The decoder cannot look past its last position.
        g.max_length = g
            .max_length
            .min(self.model.config.max_position_embeddings + 1);
        Ok(g)
    }

    /// Translate one text, calling `on_partial` with the translation so far whenever it grows
    /// (only what the final output is certain to start with; chunks of a long text in order).
    pub fn translate_streaming(
        &self,
        text: &str,
        opts: &GenerateOptions,
        on_partial: &mut dyn FnMut(&str),
    ) -> Result<Translation> {
        ready(self.streaming(text, opts, on_partial, SYNC_GPU))
    }

    /// `translate_streaming` for callers that can await (the only way to a browser's GPU).
    pub async fn translate_streaming_async(
        &self,
        text: &str,
        opts: &GenerateOptions,
        on_partial: &mut dyn FnMut(&str),
    ) -> Result<Translation> {
        self.streaming(text, opts, on_partial, true).await
    }

    async fn streaming(
        &self,
        text: &str,
        opts: &GenerateOptions,
        on_partial: &mut dyn FnMut(&str),
        use_gpu: bool,
    ) -> Result<Translation> {
        let g = self.generation_for(opts)?;
        let mut result = Translation {
            text: String::new(),
            ids: Vec::new(),
            device: self.device(),
            issues: Vec::new(),
        };
        if text.trim().is_empty() {
            return Ok(result);
        }
        let language = self.language_prefix(opts.target_language.as_deref(), &[text])?;
        let (pieces, spans) = self.pieces(0, text, language.as_deref())?;
        for (gap, piece) in pieces {
            let chunk = match piece {
                Piece::Model(ids) => ids,
                Piece::Verbatim(kept, why) => {
                    result.text = join_pieces(&result.text, &gap, &kept);
                    result.issues.extend(why);
                    on_partial(&result.text);
                    continue;
                }
            };
            let done = result.text.clone();
            let mut shown = 0usize;
            let mut observe = |_: usize, ids: &[u32]| {
                if ids.len() <= shown {
                    return;
                }
                shown = ids.len();
                let piece = self.tokenizer.decode(ids);
                on_partial(&join_pieces(&done, &gap, &piece));
            };
            let (mut out, device) = self.run(&[chunk], &g, &mut observe, use_gpu).await?;
            let ids = out.pop().unwrap_or_default();
            result.device = device;
            result.text = join_pieces(&done, &gap, &self.tokenizer.decode(&ids));
            result.ids.push(ids);
        }
        if !spans.is_empty() {
            result.text = restore(&result.text, &spans);
        }
        on_partial(&result.text);
        Ok(result)
    }

    /// Translate many texts; `batch_size` sentences (chunks) go through the model at once.
    pub fn translate(
        &self,
        texts: &[&str],
        opts: &GenerateOptions,
        batch_size: usize,
    ) -> Result<Vec<Translation>> {
        ready(self.translate_all(texts, opts, batch_size, SYNC_GPU))
    }

    /// `translate` for callers that can await (the only way to a browser's GPU).
    pub async fn translate_async(
        &self,
        texts: &[&str],
        opts: &GenerateOptions,
        batch_size: usize,
    ) -> Result<Vec<Translation>> {
        self.translate_all(texts, opts, batch_size, true).await
    }

    async fn translate_all(
        &self,
        texts: &[&str],
        opts: &GenerateOptions,
        batch_size: usize,
        use_gpu: bool,
    ) -> Result<Vec<Translation>> {
        let g = self.generation_for(opts)?;
        let language = self.language_prefix(opts.target_language.as_deref(), texts)?;
        let batch_size = batch_size.max(1);
        // (text index, piece) for every non-empty text; model pieces are translated below.
        let mut work: Vec<(usize, String, Piece)> = Vec::new();
        let mut spans: Vec<Vec<Span>> = vec![Vec::new(); texts.len()];
        for (i, t) in texts.iter().enumerate() {
            if t.trim().is_empty() {
                continue;
            }
            let (pieces, kept) = self.pieces(i, t, language.as_deref())?;
            spans[i] = kept;
            for (gap, piece) in pieces {
                work.push((i, gap, piece));
            }
        }
        let model_ids = |w: usize| match &work[w].2 {
            Piece::Model(ids) => Some(ids),
            Piece::Verbatim(..) => None,
        };
        // Similar lengths together: less padding. The output order is restored below.
        let mut order: Vec<usize> = (0..work.len())
            .filter(|&w| model_ids(w).is_some())
            .collect();
        order.sort_by_key(|&w| std::cmp::Reverse(model_ids(w).map_or(0, |ids| ids.len())));
        let mut outputs: Vec<(Vec<u32>, Device)> = vec![(Vec::new(), self.device()); work.len()];
        for group in order.chunks(batch_size) {
            let batch: Vec<Vec<u32>> = group
                .iter()
                .filter_map(|&w| model_ids(w).cloned())
                .collect();
            let (out, device) = self.run(&batch, &g, &mut |_, _| {}, use_gpu).await?;
            for (&w, ids) in group.iter().zip(out) {
                outputs[w] = (ids, device);
            }
        }
        let mut result: Vec<Translation> = texts
            .iter()
            .map(|_| Translation {
                text: String::new(),
                ids: Vec::new(),
                device: self.device(),
                issues: Vec::new(),
            })
            .collect();
        for ((i, gap, piece), (ids, device)) in work.into_iter().zip(outputs) {
            let r = &mut result[i];
            match piece {
                Piece::Model(_) => {
                    r.device = device;
                    r.text = join_pieces(&r.text, &gap, &self.tokenizer.decode(&ids));
                    r.ids.push(ids);
                }
                Piece::Verbatim(kept, why) => {
                    r.text = join_pieces(&r.text, &gap, &kept);
                    r.issues.extend(why);
                }
            }
        }
        for (r, spans) in result.iter_mut().zip(&spans) {
            if !spans.is_empty() {
                r.text = restore(&r.text, spans);
            }
        }
        Ok(result)
    }

    /// `split_for_model` for text `index` of a request (each piece after `language`, a
    /// multi-target model's language token), after the spans to keep exactly were
    /// found (and those the model cannot spell taken out: `crate::protect`); returns the pieces
    /// (each after its source gap: `split_with_gaps`) and the spans to restore in the
    /// translation. A text over `MAX_INPUT_BYTES` passes
    /// through unchanged, with the reason, so that it does not cost the request's other texts.
    fn pieces(
        &self,
        index: usize,
        text: &str,
        language: Option<&str>,
    ) -> Result<(Vec<GappedPiece>, Vec<Span>)> {
        // A text that names its own language (`>>eng<< …`, as transformers users write it)
        // keeps it, for every piece of it, in place of the request's.
        let (text, language) = match crate::tokenizer::split_language_code(text) {
            Some((own, rest)) => (rest, Some(own)),
            None => (text, language),
        };
        if text.len() > MAX_INPUT_BYTES {
            let why = format!(
                "text {} is {} bytes; at most {MAX_INPUT_BYTES} are translated at once: kept as is",
                index + 1,
                text.len()
            );
            return Ok((
                vec![(String::new(), Piece::Verbatim(text.to_string(), Some(why)))],
                Vec::new(),
            ));
        }
        if !self.protect_spans {
            return Ok((self.split_with_gaps(text, language)?, Vec::new()));
        }
        let unk = self.tokenizer.unk_id();
        let protected = protect(text, |span| {
            self.tokenizer
                .encode(span)
                .map_or(true, |ids| ids.contains(&unk))
        });
        if !protected.model_text.chars().any(char::is_alphabetic) {
            // No letters, or only inside spans (a lone URL the model cannot spell): nothing to
            // translate, the text passes through as `split_for_model` passes letterless text.
            return Ok((
                vec![(String::new(), Piece::Verbatim(text.to_string(), None))],
                Vec::new(),
            ));
        }
        Ok((
            self.split_with_gaps(&protected.model_text, language)?,
            protected.spans,
        ))
    }
}

/// `done` (the translation so far) and the translation of the next piece, joined as the source
/// joined them (`gap`: the source between the two pieces). A gap holding a line break keeps it:
/// the gap from its first line break on (line breaks and the next line's indentation; the
/// spaces before the break are dropped), so paragraphs and lines stay as they were. Any other
/// gap (spaces, tabs, or none, as between Chinese sentences) becomes one space, or nothing
/// where the target writes without spaces: the character before or after the join is of a
/// script written without spaces between words (`unspaced`).
fn join_pieces(done: &str, gap: &str, piece: &str) -> String {
    if done.is_empty() {
        return piece.to_string();
    }
    if piece.is_empty() {
        return done.to_string();
    }
    let sep = match gap.find(['\n', '\r']) {
        Some(at) => &gap[at..],
        None if done.chars().next_back().is_some_and(unspaced)
            || piece.chars().next().is_some_and(unspaced) =>
        {
            ""
        }
        None => " ",
    };
    format!("{done}{sep}{piece}")
}

/// A character of a script written without spaces between words or sentences (Han, kana,
/// Thai, Lao, Khmer, Myanmar, Tibetan), or CJK punctuation and full-width forms (`。` `，`
/// `！` `「`): no space is put next to it when pieces are joined.
fn unspaced(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF // Thai, Lao
        | 0x0F00..=0x0FFF // Tibetan
        | 0x1000..=0x109F // Myanmar
        | 0x1780..=0x17FF // Khmer
        | 0x2E80..=0x2FDF // CJK radicals
        | 0x3000..=0x30FF // CJK punctuation, hiragana, katakana
        | 0x3100..=0x312F // bopomofo
        | 0x31F0..=0x31FF // katakana extensions
        | 0x3400..=0x4DBF // CJK extension A
        | 0x4E00..=0x9FFF // CJK unified ideographs
        | 0xF900..=0xFAFF // CJK compatibility ideographs
        | 0xFE30..=0xFE4F // CJK compatibility forms
        | 0xFF00..=0xFF60 // full-width forms
        | 0xFF61..=0xFF9F // half-width CJK punctuation, katakana
        | 0x20000..=0x3134F // CJK extensions B-G
    )
}

/// What one fixed-length benchmark run measured (`Translator::bench_fixed_length`).
#[derive(Debug, Clone, Copy)]
pub struct BenchRun {
    /// Target tokens generated (sentences × tokens).
    pub tokens: usize,
    /// Wall time of the timed batches, encoding included (seconds).
    pub seconds: f64,
    /// Where they ran (the CPU after a GPU loss).
    pub device: Device,
    /// CPU time of the timed batches, where the platform tells it (`crate::thread_times`).
    pub cpu_time: Option<crate::thread_times::ThreadTimes>,
}

impl Translator {
    /// Generation of exactly `tokens` target tokens per sentence (EOS banned, no forced EOS),
    /// greedy (`num_beams` 1) or beam search, over `ids` in batches of `batch` sentences, timed
    /// after one untimed warm-up batch: the work
    /// every engine of the peer benchmark (scripts/bench_peers.sh) does, natively
    /// (`marian-wasm bench`) and in the browser (`Translator.benchmark`).
    /// Errors: `tokens` beyond the model's positions, no sentences, a generation failure.
    pub async fn bench_fixed_length(
        &self,
        ids: &[Vec<u32>],
        batch: usize,
        tokens: usize,
        num_beams: usize,
    ) -> Result<BenchRun> {
        let mut g = self.generation.clone();
        g.num_beams = num_beams.max(1);
        g.max_length = tokens + 1;
        g.forced_eos_token_id = None;
        g.bad_words_ids.push(vec![g.eos_token_id]);
        g.bad_words_ids
            .extend(g.more_eos_token_ids.iter().map(|&id| vec![id]));
        if g.max_length > self.model.config.max_position_embeddings + 1 {
            return Err(Error::Input(format!(
                "{tokens} tokens exceed the model's {} positions",
                self.model.config.max_position_embeddings
            )));
        }
        if ids.is_empty() {
            return Err(Error::Input("no sentences to benchmark".into()));
        }
        let batch = batch.max(1);
        let mut quiet = |_: usize, _: &[u32]| {};
        self.run(&ids[..batch.min(ids.len())], &g, &mut quiet, true)
            .await?;
        if let Some(p) = self
            .gpu
            .as_ref()
            .and_then(|g| g.context().profiler.as_ref())
        {
            p.reset(); // the profile is of the timed batches only
        }
        let times0 = crate::thread_times::now();
        let t0 = web_time::Instant::now();
        let mut produced = 0;
        let mut device = Device::Gpu;
        for chunk in ids.chunks(batch) {
            let (out, on) = self.run(chunk, &g, &mut quiet, true).await?;
            produced += out.iter().map(|o| o.len() - 1).sum::<usize>();
            if on == Device::Cpu {
                device = Device::Cpu;
            }
        }
        let seconds = t0.elapsed().as_secs_f64();
        if produced != ids.len() * tokens {
            return Err(Error::Input(format!(
                "generated {produced} tokens, expected {}",
                ids.len() * tokens
            )));
        }
        let cpu_time = crate::thread_times::now()
            .zip(times0)
            .map(|(t, t0)| t.since(t0));
        Ok(BenchRun {
            tokens: produced,
            seconds,
            device,
            cpu_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::join_pieces;

    #[test]
    fn pieces_join_as_the_source_joined_them() {
        // Spaces (or none) between pieces: one space in a spaced script.
        assert_eq!(
            join_pieces("Un chien.", " ", "Un chat."),
            "Un chien. Un chat."
        );
        assert_eq!(join_pieces("A dog.", "", "A cat."), "A dog. A cat.");
        assert_eq!(
            join_pieces("Un chien.", " \t ", "Un chat."),
            "Un chien. Un chat."
        );
        // Line breaks stay, with the next line's indentation; spaces before them go.
        assert_eq!(join_pieces("Un.", "  \n\n", "Deux."), "Un.\n\nDeux.");
        assert_eq!(join_pieces("Un.", "\r\n  ", "Deux."), "Un.\r\n  Deux.");
        // No space where the target writes without: Chinese, Japanese, Thai.
        assert_eq!(
            join_pieces("我有一只狗。", " ", "它很小。"),
            "我有一只狗。它很小。"
        );
        assert_eq!(
            join_pieces("犬です。", " ", "Apple社の"),
            "犬です。Apple社の"
        );
        assert_eq!(join_pieces("ฉันมีสุนัข", " ", "มันตัวเล็ก"), "ฉันมีสุนัขมันตัวเล็ก");
        assert_eq!(
            join_pieces("我有一只狗。", "\n\n", "它很小。"),
            "我有一只狗。\n\n它很小。"
        );
        // Korean writes spaces.
        assert_eq!(join_pieces("개가 있다.", " ", "작다."), "개가 있다. 작다.");
        // An empty piece or an empty start adds nothing.
        assert_eq!(join_pieces("", "\n\n", "Deux."), "Deux.");
        assert_eq!(join_pieces("Un.", "\n\n", ""), "Un.");
    }
}
