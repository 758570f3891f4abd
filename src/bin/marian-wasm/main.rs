//! The `marian-wasm` command line: convert, translate, eval, finetune, bench, catalog (see
//! DESIGN.md's contract).

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    cli::main()
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use anyhow::{bail, Context, Result};
    use clap::{Parser, Subcommand, ValueEnum};
    use marian_wasm::translator::DeviceChoice;
    use marian_wasm::{GenerateOptions, Package, Translator};
    use std::io::{BufRead, Write};
    use std::path::{Path, PathBuf};

    #[derive(Parser)]
    #[command(
        name = "marian-wasm",
        version,
        about = "Marian (OPUS-MT) translation: convert, translate, eval, finetune, bench, catalog"
    )]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
    pub enum RoundingArg {
        Gptq,
        Nearest,
    }

    #[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
    pub enum DeviceArg {
        Cpu,
        /// The GPU through wgpu (Vulkan/Metal/DX12); software Vulkan (lavapipe) included.
        Gpu,
        /// A hardware GPU when there is one, else the CPU.
        Auto,
    }

    impl DeviceArg {
        pub fn choice(self) -> DeviceChoice {
            match self {
                DeviceArg::Cpu => DeviceChoice::Cpu,
                DeviceArg::Gpu => DeviceChoice::Gpu,
                DeviceArg::Auto => DeviceChoice::Auto,
            }
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
    enum FidelityArg {
        Auto,
        None,
    }

    // Parsed once per process: the size difference between subcommands costs nothing.
    #[allow(clippy::large_enum_variant)]
    #[derive(Subcommand)]
    enum Command {
        /// Convert a Hugging Face Marian checkpoint folder into a model package.
        Convert {
            hf_dir: PathBuf,
            out_dir: PathBuf,
            #[arg(long, default_value = "q8")]
            quant: String,
            /// How q8/q4 weights are rounded: `gptq` moves each rounding error where the
            /// layer's inputs (on calibration text) make it matter least; `nearest` rounds each
            /// weight on its own.
            #[arg(long, value_enum, default_value = "gptq")]
            rounding: RoundingArg,
            /// Source-language sentences, one per line, to calibrate GPTQ on (default: text
            /// sampled from the model's source SentencePiece vocabulary).
            #[arg(long)]
            calibration: Option<PathBuf>,
            /// Keep at f16 the q8/q4 package's matrices whose names contain any of these
            /// comma-separated parts (`embeddings`: the embeddings and the output projection,
            /// where most of q8's drift from transformers comes from, +29 MB on opus-mt-en-fr;
            /// `decoder.`, `fc2` …): fidelity bought with size, or finding where drift comes from.
            #[arg(long, value_delimiter = ',')]
            keep_f16: Vec<String>,
            /// Keep at q8 the q4 package's matrices named by these parts (as --keep-f16):
            /// `decoder.` is where most of q4's drift from transformers comes from.
            #[arg(long, value_delimiter = ',')]
            keep_q8: Vec<String>,
            /// Store beside the q8 matrices named by these parts (as --keep-f16) their rounding
            /// error rounded to 4 bits: 12-bit weights, closer to transformers (such matrices are
            /// rounded to nearest, not by GPTQ). `embeddings` costs +15 MB on opus-mt-en-fr and
            /// no speed (the output projection adds the residual only for the tokens that can be
            /// chosen); `embeddings,decoder.` +28 MB and 22 % at batch 1 natively (the decoder's
            /// matrices are multiplied as 12-bit levels).
            #[arg(long, value_delimiter = ',')]
            residual: Vec<String>,
            /// `auto` (the default, for q8 and q4 when no --keep-f16/--keep-q8/--residual is
            /// given): measure the package against the f32 model on sampled sentences (or the
            /// --calibration text), greedy and with the model's beam count, and add only as much
            /// as it needs to meet --fidelity-target — q8: the residual on `embeddings`, then
            /// also on `decoder.` (only when the step before misses clearly, where it adds more
            /// than 10 % to the bytes a decoder step reads); q4: `--keep-q8 decoder.`. `none`:
            /// the package as named.
            #[arg(long, value_enum, default_value = "auto")]
            fidelity: FidelityArg,
            /// What `--fidelity auto` asks against the f32 model: for q8 the percent of
            /// sentences token-identical (default 97), for q4 the BLEU (default 90).
            #[arg(long)]
            fidelity_target: Option<f64>,
        },
        /// Translate UTF-8 lines from stdin, one output line per input line.
        Translate {
            #[arg(long)]
            model: Option<PathBuf>,
            #[arg(long)]
            beams: Option<usize>,
            #[arg(long)]
            max_length: Option<usize>,
            #[arg(long, value_enum, default_value = "cpu")]
            device: DeviceArg,
            #[arg(long)]
            adapter: Option<PathBuf>,
            #[arg(long, default_value_t = 8)]
            batch_size: usize,
            /// Print the generated token ids (space separated) instead of text.
            #[arg(long)]
            ids: bool,
            /// Translate numbers, URLs, e-mail addresses and emoji like any other text instead
            /// of keeping them exactly as written.
            #[arg(long)]
            no_protect: bool,
            /// A multi-target model's output language (`fra` or `>>fra<<`: one of the package
            /// manifest's `target_languages`), put before every line as `>>fra<< ` is in
            /// transformers. Needed by models with several, refused by models with none.
            #[arg(long)]
            target_language: Option<String>,
        },
        /// Tokens per second of encoding + greedy decoding at a fixed output length.
        Bench(crate::bench::BenchArgs),
        /// BLEU and chrF (sacreBLEU 2.x defaults) of --src translated with the model, or of an
        /// existing --hyp file, against --ref (UTF-8, one sentence per line, paired by line).
        Eval(EvalArgs),
        /// Fine-tune the decoder head on sentence pairs (TSV `source<TAB>target` or JSON lines
        /// `{"source","target"}`); writes an adapter for `translate --adapter`.
        Finetune(crate::finetune_cmd::FinetuneArgs),
        /// Model catalogs: the JSON index a web page picks a package from by language pair.
        Catalog {
            #[command(subcommand)]
            command: crate::catalog_cmd::CatalogCommand,
        },
    }

    /// The package (or the embedded default) with an adapter on top when one is given.
    pub fn load_translator(model: Option<&Path>, adapter: Option<&Path>) -> Result<Translator> {
        load_translator_on(model, adapter, DeviceArg::Cpu)
    }

    /// `load_translator` on a device; says on stderr when `auto` falls back to the CPU.
    pub fn load_translator_on(
        model: Option<&Path>,
        adapter: Option<&Path>,
        device: DeviceArg,
    ) -> Result<Translator> {
        let pkg = load_package(model)?;
        let mut translator =
            marian_wasm::generate::ready(Translator::with_device(&pkg, device.choice()))?;
        if let Some(why) = &translator.gpu_unavailable {
            eprintln!("marian-wasm: using the CPU ({why})");
        }
        if let Some(path) = adapter {
            let a = marian_wasm::adapter::Adapter::read(path)?;
            translator
                .set_adapter(Some(&a))
                .with_context(|| format!("{}", path.display()))?;
        }
        Ok(translator)
    }

    pub fn load_package(model: Option<&Path>) -> Result<Package> {
        Ok(match model {
            Some(dir) => Package::read_dir(dir)?,
            None => Package::embedded()?,
        })
    }

    pub fn main() {
        // candle's elementwise ops split even tiny tensors over a pool that spin-waits for
        // work (its BarrierPool); here they are a few thousand floats a call, and the spinning
        // thread takes a core from the matrix products. Our products and candle's GEMM use
        // rayon's pool (RAYON_NUM_THREADS), which yields and sleeps when idle.
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", "1");
        }
        let cli = Cli::parse();
        if let Err(e) = run(cli) {
            eprintln!("marian-wasm: error: {e:#}");
            std::process::exit(1);
        }
    }

    fn run(cli: Cli) -> Result<()> {
        match cli.command {
            Command::Convert {
                hf_dir,
                out_dir,
                quant,
                rounding,
                calibration,
                keep_f16,
                keep_q8,
                residual,
                fidelity,
                fidelity_target,
            } => {
                use marian_wasm::package::convert::{
                    check_checkpoint_folder, convert_with, ConvertOptions, Rounding,
                };
                use marian_wasm::package::quant::Quant;
                // A wrong path gets its error alone, before any notice of work begun.
                check_checkpoint_folder(&hf_dir)?;
                let mut opts = ConvertOptions::new(quant.parse()?);
                opts.rounding = match rounding {
                    RoundingArg::Gptq => Rounding::Gptq,
                    RoundingArg::Nearest => Rounding::Nearest,
                };
                opts.keep_f16 = keep_f16;
                opts.keep_q8 = keep_q8;
                opts.residual = residual;
                if fidelity == FidelityArg::Auto {
                    use marian_wasm::package::fidelity::Target;
                    opts.fidelity = match (Target::default_for(opts.quant), fidelity_target) {
                        (Some(t), Some(v)) => Some(t.with_value(v).map_err(anyhow::Error::msg)?),
                        (t, _) => t,
                    };
                }
                if let Some(path) = calibration {
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        anyhow::anyhow!("cannot read calibration text {}: {e}", path.display())
                    })?;
                    opts.calibration = Some(
                        text.lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(String::from)
                            .collect(),
                    );
                }
                let quant = opts.quant;
                if matches!(quant, Quant::Q8 | Quant::Q4) && opts.rounding == Rounding::Gptq {
                    let text = match &opts.calibration {
                        Some(lines) => format!("{} sentences of calibration text", lines.len()),
                        None => "text sampled from source.spm".into(),
                    };
                    eprintln!(
                        "converting to {quant} with GPTQ rounding, calibrated on {text} (about a minute for an opus-mt-sized model; --rounding nearest takes seconds)"
                    );
                }
                if opts.fidelity.is_some() && matches!(quant, Quant::Q8 | Quant::Q4) {
                    eprintln!(
                        "measuring {quant} against the f32 model to choose what it needs (--fidelity auto; --fidelity none skips it)"
                    );
                }
                let done = convert_with(&hf_dir, &out_dir, &opts)?;
                if let Some(choice) = &done.fidelity {
                    for (step, agreement) in &choice.tried {
                        let mark = if *step == choice.kept { " (kept)" } else { "" };
                        eprintln!("  {quant} {step}: {agreement}{mark}");
                    }
                    eprintln!(
                        "  (the f32 model finished {:.0} % of the {} sentences' translations)",
                        choice.finished * 100.0,
                        choice.sentences
                    );
                    eprintln!("fidelity: {}", choice.reason);
                }
                eprintln!(
                    "wrote {} ({quant}, {} files, {:.2} MB)",
                    out_dir.display(),
                    done.manifest.files.len() + 1,
                    done.total_bytes as f64 / 1e6
                );
                let languages = &done.manifest.target_languages;
                if !languages.is_empty() {
                    eprintln!(
                        "a multi-target model: translate with --target-language, one of {}",
                        languages.join(", ")
                    );
                }
                Ok(())
            }
            Command::Translate {
                model,
                beams,
                max_length,
                device,
                adapter,
                batch_size,
                ids,
                no_protect,
                target_language,
            } => {
                let mut translator =
                    load_translator_on(model.as_deref(), adapter.as_deref(), device)?;
                translator.protect_spans = !no_protect;
                let opts = GenerateOptions {
                    num_beams: beams,
                    max_length,
                    length_penalty: None,
                    target_language,
                };
                // Checked before reading stdin: a missing or unknown code is the request's error.
                translator.language_prefix(opts.target_language.as_deref(), &["x"])?;
                translate_stdin(&translator, &opts, batch_size, ids)
            }
            Command::Bench(args) => crate::bench::run(args, load_package),
            Command::Eval(args) => eval(args),
            Command::Finetune(args) => crate::finetune_cmd::run(args),
            Command::Catalog { command } => crate::catalog_cmd::run(command),
        }
    }

    #[derive(clap::Args)]
    struct EvalArgs {
        /// Package folder; without it, the embedded default model.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Source sentences to translate (not needed with --hyp).
        #[arg(long, required_unless_present = "hyp")]
        src: Option<PathBuf>,
        /// Reference translations.
        #[arg(long = "ref", value_name = "REF")]
        reference: PathBuf,
        /// Score this hypothesis file instead of translating.
        #[arg(long, conflicts_with_all = ["src", "model", "beams", "adapter"])]
        hyp: Option<PathBuf>,
        #[arg(long)]
        beams: Option<usize>,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        #[arg(long)]
        adapter: Option<PathBuf>,
        /// Translate numbers, URLs, e-mail addresses and emoji like any other text (as
        /// `translate --no-protect`).
        #[arg(long)]
        no_protect: bool,
        /// A multi-target model's output language (as `translate --target-language`).
        #[arg(long)]
        target_language: Option<String>,
        /// Print one JSON object {"bleu","chrf","sentences","beams","seconds"}; beams and
        /// seconds (translation time, model loading excluded) are null with --hyp.
        #[arg(long)]
        json: bool,
    }

    fn eval(a: EvalArgs) -> Result<()> {
        use marian_wasm::metrics::{self, BLEU_SIGNATURE, CHRF_SIGNATURE};
        let refs = metrics::read_lines(&a.reference)?;
        if refs.is_empty() {
            bail!("{}: no lines to score against", a.reference.display());
        }
        let same_count = |other: &Path, n: usize| -> Result<()> {
            if n != refs.len() {
                bail!(
                    "{} has {n} lines but {} has {}; they must pair up line by line",
                    other.display(),
                    a.reference.display(),
                    refs.len()
                );
            }
            Ok(())
        };
        let (hyps, beams, seconds) = match (&a.hyp, &a.src) {
            (Some(hyp), _) => {
                let hyps = metrics::read_lines(hyp)?;
                same_count(hyp, hyps.len())?;
                (hyps, None, None)
            }
            (None, Some(src)) => {
                let srcs = metrics::read_lines(src)?;
                same_count(src, srcs.len())?;
                let mut translator = load_translator(a.model.as_deref(), a.adapter.as_deref())?;
                translator.protect_spans = !a.no_protect;
                let opts = GenerateOptions {
                    num_beams: a.beams,
                    max_length: None,
                    length_penalty: None,
                    target_language: a.target_language.clone(),
                };
                let beams = translator.generation_for(&opts)?.num_beams;
                let texts: Vec<&str> = srcs.iter().map(|s| s.as_str()).collect();
                let start = std::time::Instant::now();
                let out = translator.translate(&texts, &opts, a.batch_size)?;
                let seconds = start.elapsed().as_secs_f64();
                (
                    out.into_iter().map(|t| t.text).collect(),
                    Some(beams),
                    Some(seconds),
                )
            }
            (None, None) => bail!("eval needs --src (to translate) or --hyp (to score a file)"),
        };
        let bleu = metrics::corpus_bleu(&hyps, &refs)?;
        let chrf = metrics::corpus_chrf(&hyps, &refs)?;
        if a.json {
            let v = serde_json::json!({
                "bleu": bleu.score,
                "chrf": chrf.score,
                "sentences": hyps.len(),
                "beams": beams,
                "seconds": seconds,
            });
            println!("{v}");
        } else {
            println!(
                "BLEU = {:.2} ({BLEU_SIGNATURE}) chrF = {:.2} ({CHRF_SIGNATURE})",
                bleu.score, chrf.score
            );
            eprintln!("{bleu}");
            match (beams, seconds) {
                (Some(b), Some(s)) => eprintln!(
                    "{} sentences translated in {s:.2} s ({:.1} sentences/s), beams {b}",
                    hyps.len(),
                    hyps.len() as f64 / s.max(1e-9)
                ),
                _ => eprintln!("{} sentences", hyps.len()),
            }
        }
        Ok(())
    }

    fn translate_stdin(
        t: &Translator,
        opts: &GenerateOptions,
        batch_size: usize,
        ids: bool,
    ) -> Result<()> {
        let stdin = std::io::stdin();
        let mut reader = stdin.lock();
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut pending: Vec<String> = Vec::new();
        let mut line_no = 0usize;
        let mut bad_lines: Vec<usize> = Vec::new();
        let warned = std::cell::Cell::new(false);
        // Lines already written (for the line numbers of warnings).
        let written = std::cell::Cell::new(0usize);
        let flush = |pending: &mut Vec<String>,
                     out: &mut std::io::BufWriter<std::io::StdoutLock>|
         -> Result<()> {
            let refs: Vec<&str> = pending.iter().map(|s| s.as_str()).collect();
            let done = t.translate(&refs, opts, batch_size)?;
            if let (Some(gpu), false) = (&t.gpu, warned.get()) {
                if let Err(e) = gpu.context().check() {
                    eprintln!("marian-wasm: {e}; continuing on the CPU");
                    warned.set(true);
                }
            }
            for (k, tr) in done.iter().enumerate() {
                for issue in &tr.issues {
                    eprintln!("marian-wasm: stdin line {}: {issue}", written.get() + k + 1);
                }
            }
            written.set(written.get() + done.len());
            for tr in done {
                if ids {
                    let joined: Vec<String> = tr
                        .ids
                        .iter()
                        .map(|c| {
                            c.iter()
                                .map(|i| i.to_string())
                                .collect::<Vec<_>>()
                                .join(" ")
                        })
                        .collect();
                    writeln!(out, "{}", joined.join(" | "))?;
                } else {
                    writeln!(out, "{}", tr.text)?;
                }
            }
            out.flush()?;
            pending.clear();
            Ok(())
        };
        loop {
            let mut buf = Vec::new();
            let n = reader
                .read_until(b'\n', &mut buf)
                .context("reading stdin")?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if buf.ends_with(b"\n") {
                buf.pop();
                if buf.ends_with(b"\r") {
                    buf.pop();
                }
            }
            let line = match String::from_utf8(buf) {
                Ok(line) => line,
                Err(e) => {
                    // One bad line must not cost the others: it is translated with U+FFFD for
                    // its bad bytes, said on stderr, and the exit status says so at the end.
                    eprintln!(
                        "marian-wasm: stdin line {line_no} is not valid UTF-8 (invalid byte at offset {}): translated with U+FFFD in place of the bad bytes",
                        e.utf8_error().valid_up_to()
                    );
                    bad_lines.push(line_no);
                    String::from_utf8_lossy(e.as_bytes()).into_owned()
                }
            };
            pending.push(line);
            if pending.len() >= batch_size.max(1) * 4 {
                flush(&mut pending, &mut out)?;
            }
        }
        flush(&mut pending, &mut out)?;
        if !bad_lines.is_empty() {
            let lines: Vec<String> = bad_lines.iter().map(|n| n.to_string()).collect();
            bail!(
                "stdin line(s) {} not valid UTF-8; every line was translated, those with U+FFFD in place of their bad bytes",
                lines.join(", ")
            );
        }
        Ok(())
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod bench;
#[cfg(not(target_arch = "wasm32"))]
mod catalog_cmd;
#[cfg(not(target_arch = "wasm32"))]
mod finetune_cmd;
