//! Local sentence embeddings: all-MiniLM-L6-v2 (int8 ONNX) through fastembed, on its own pool.
//!
//! The model and the ONNX Runtime library come from `scripts/fetch-models.sh` (PyPI wheels,
//! checked by sha256); nothing here touches the network. Inference never runs on an async
//! worker: [`Embedder::embed`] hands the text to `spawn_blocking`, gated by a semaphore with one
//! permit per core. Under load each text runs on a single-threaded session, so `threads`
//! sessions use `threads` cores at most; a text that finds every permit free takes them all and
//! runs on one session spread over every core, which cuts latency when traffic is light.
//! Vectors of recently embedded texts are kept (the memo) and reused when the same text comes
//! again: a repeated prompt then costs a hash lookup instead of a model run.
//! This module owns the model and the vectors; it knows nothing of cache entries or the index.
//!
//! Layout of `model_dir` (see models/README.md): `model_quantized.onnx` (default, see
//! [`EmbeddingModel`]), `model.onnx`, `tokenizer.json`, `config.json`, `special_tokens_map.json`,
//! `tokenizer_config.json`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use fastembed::{
    InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

/// Width of an all-MiniLM-L6-v2 vector.
pub const DIMENSION: usize = 384;

/// Word pieces kept per text; all-MiniLM-L6-v2 was trained on 256 and truncates there.
const MAX_TOKENS: usize = 256;

/// Folder of the model under the models root, as laid out by scripts/fetch-models.sh.
pub const MODEL_SUBDIR: &str = "all-minilm-l6-v2";
/// ONNX Runtime library under the models root, as laid out by scripts/fetch-models.sh.
pub const ORT_LIBRARY: &str = "onnxruntime/libonnxruntime.so.1.32.0";

/// Which ONNX file of all-MiniLM-L6-v2 embeds prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingModel {
    /// `model_quantized.onnx`: MatMuls in int8 (dynamic quantization); ~3x faster on short
    /// prompts, calibrated to the same precision (BENCHMARKS.md).
    #[default]
    Quantized,
    /// `model.onnx` as published: fp32 MatMuls over dequantized int8 weights.
    Reference,
}

impl EmbeddingModel {
    /// Every variant, for messages.
    pub const ALL: [Self; 2] = [Self::Quantized, Self::Reference];

    /// File name under the model folder.
    pub fn file(self) -> &'static str {
        match self {
            Self::Quantized => "model_quantized.onnx",
            Self::Reference => "model.onnx",
        }
    }

    /// Config and CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quantized => "quantized",
            Self::Reference => "reference",
        }
    }
}

impl std::str::FromStr for EmbeddingModel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!("unknown embedding model \"{s}\" (expected quantized or reference)")
            })
    }
}

impl std::fmt::Display for EmbeddingModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
];

/// Where the model lives and how much CPU it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedConfig {
    /// Folder holding the ONNX files and the four tokenizer files.
    pub model_dir: PathBuf,
    /// Which ONNX file to load.
    pub model: EmbeddingModel,
    /// Path of libonnxruntime.so (loaded at run time, never linked).
    pub ort_library: PathBuf,
    /// ONNX sessions, each single-threaded: the most inferences running at once (with more than
    /// one, an extra session uses all of them for a text embedded while nothing else is).
    pub threads: usize,
    /// Texts whose vectors are kept for reuse (0 keeps none).
    pub memo_entries: usize,
}

/// Default size of the memo: ~1.6 KB a text, so ~6.5 MB.
pub const DEFAULT_MEMO_ENTRIES: usize = 4096;

impl EmbedConfig {
    /// The layout scripts/fetch-models.sh writes under `root` (normally `models/`).
    pub fn from_models_root(root: &Path) -> Self {
        Self {
            model_dir: root.join(MODEL_SUBDIR),
            model: EmbeddingModel::default(),
            ort_library: root.join(ORT_LIBRARY),
            threads: default_threads(),
            memo_entries: DEFAULT_MEMO_ENTRIES,
        }
    }
}

impl Default for EmbedConfig {
    /// `./models` if it holds the model, else the crate's own `models/` (tests, benches, `cargo run`).
    fn default() -> Self {
        let cwd_models = PathBuf::from("models");
        let root = if cwd_models
            .join(MODEL_SUBDIR)
            .join(EmbeddingModel::default().file())
            .is_file()
        {
            cwd_models
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
        };
        Self::from_models_root(&root)
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Why an embedding could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("missing {what} at {}: run scripts/fetch-models.sh", path.display())]
    MissingFile { what: &'static str, path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ONNX Runtime library {} cannot be used: {reason}", path.display())]
    Runtime { path: PathBuf, reason: String },
    #[error("embedding model failed: {0}")]
    Model(#[from] fastembed::Error),
    #[error("model returned {got} vectors of width {width} for {expected} texts (expected width {DIMENSION})")]
    BadOutput {
        expected: usize,
        got: usize,
        width: usize,
    },
    #[error("embedding worker stopped: {0}")]
    Worker(String),
    #[error("embed config invalid: {0}")]
    Config(String),
}

/// A loaded model: `threads` independent ONNX sessions behind one semaphore.
#[derive(Clone)]
pub struct Embedder {
    model: EmbeddingModel,
    inner: Arc<Inner>,
    permits: Arc<Semaphore>,
    /// blake3 of a text -> its vector; `None` when the memo is off.
    memo: Option<Arc<Memo>>,
}

type Memo = quick_cache::sync::Cache<[u8; 32], Arc<[f32]>>;

/// Where [`Embedder::embed`] got a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedSource {
    /// An ONNX run.
    Model,
    /// The memo of recently embedded texts.
    Memo,
}

impl EmbedSource {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Memo => "memo",
        }
    }
}

/// A vector and where it came from.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// Unit-norm vector of [`DIMENSION`] floats.
    pub vector: Vec<f32>,
    /// Model run or memo.
    pub source: EmbedSource,
}

struct Inner {
    /// Single-threaded sessions, one per permit.
    sessions: Vec<Mutex<TextEmbedding>>,
    /// One session over every core, for a text embedded while no other is (`None` with one core).
    wide: Option<Mutex<TextEmbedding>>,
    /// How many texts one ONNX run may take.
    batch: Batching,
    /// Round-robin start for picking a free session.
    next: AtomicUsize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("sessions", &self.inner.sessions.len())
            .finish()
    }
}

impl Embedder {
    /// Check every file, load the ONNX Runtime library and build the sessions (blocking, ~0.3 s
    /// per session on one core: call it at startup or inside `spawn_blocking`).
    pub fn load(config: &EmbedConfig) -> Result<Self, EmbedError> {
        let started = Instant::now();
        if config.threads == 0 {
            return Err(EmbedError::Config("threads must be at least 1".into()));
        }
        let onnx = read_required(
            &config.model_dir.join(config.model.file()),
            "embedding model",
        )?;
        let [tokenizer, model_config, special_tokens, tokenizer_config] = TOKENIZER_FILES
            .map(|name| read_required(&config.model_dir.join(name), "tokenizer file"));
        let tokenizer_files = TokenizerFiles {
            tokenizer_file: tokenizer?,
            config_file: model_config?,
            special_tokens_map_file: special_tokens?,
            tokenizer_config_file: tokenizer_config?,
        };
        init_runtime(&config.ort_library)?;

        let model =
            UserDefinedEmbeddingModel::new(onnx, tokenizer_files).with_pooling(Pooling::Mean);
        let session = |threads: usize| -> Result<Mutex<TextEmbedding>, EmbedError> {
            let mut options = InitOptionsUserDefined::new()
                .with_max_length(MAX_TOKENS)
                .with_intra_threads(threads);
            if threads > 1 {
                // Pool threads spin between the steps of a run (fast hand-offs) but not after
                // it, where they would take CPU from the HTTP work around the next run: with
                // spinning left on, a hit's p99 at c=1 was ~8 ms instead of ~4.5 ms.
                options = options.with_session_config("session.force_spinning_stop", "1");
            }
            let model = model.clone();
            // ort panics (rather than erroring) on a library it cannot use; keep that a typed error.
            let session = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                TextEmbedding::try_new_from_user_defined(model, options)
            }))
            .map_err(|panic| EmbedError::Runtime {
                path: config.ort_library.clone(),
                reason: panic_message(&panic),
            })??;
            Ok(Mutex::new(session))
        };
        let sessions = (0..config.threads)
            .map(|_| session(1))
            .collect::<Result<Vec<_>, _>>()?;
        let wide = (config.threads > 1)
            .then(|| session(config.threads))
            .transpose()?;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            sessions = config.threads,
            model_dir = %config.model_dir.display(),
            model = %config.model,
            "embedding model loaded"
        );
        Ok(Self {
            model: config.model,
            inner: Arc::new(Inner {
                batch: Batching::of(config.model),
                sessions,
                wide,
                next: AtomicUsize::new(0),
            }),
            permits: Arc::new(Semaphore::new(config.threads)),
            memo: (config.memo_entries > 0).then(|| Arc::new(Memo::new(config.memo_entries))),
        })
    }

    /// Which model file this embedder runs (vectors of different models do not mix).
    pub fn model(&self) -> EmbeddingModel {
        self.model
    }

    /// Vector width (384).
    pub fn dimension(&self) -> usize {
        DIMENSION
    }

    /// Embed one text (from the memo, else on the blocking pool); the vector has unit L2 norm.
    pub async fn embed(&self, text: &str) -> Result<Embedded, EmbedError> {
        let key = self
            .memo
            .as_ref()
            .map(|_| *blake3::hash(text.as_bytes()).as_bytes());
        if let (Some(memo), Some(key)) = (&self.memo, &key) {
            if let Some(v) = memo.get(key) {
                return Ok(Embedded {
                    vector: v.to_vec(),
                    source: EmbedSource::Memo,
                });
            }
        }
        // Every permit free: nothing else is embedding, so this text may use every core.
        let all = self.inner.wide.as_ref().and_then(|_| {
            let n = u32::try_from(self.inner.sessions.len()).ok()?;
            Arc::clone(&self.permits).try_acquire_many_owned(n).ok()
        });
        let (permit, wide) = match all {
            Some(all) => (all, true),
            None => (
                Arc::clone(&self.permits)
                    .acquire_owned()
                    .await
                    .map_err(|e| EmbedError::Worker(e.to_string()))?,
                false,
            ),
        };
        let inner = Arc::clone(&self.inner);
        let owned = text.to_owned();
        let vector = tokio::task::spawn_blocking(move || {
            let result = inner.embed_chunk(&[owned.as_str()], wide);
            drop(permit);
            result
        })
        .await
        .map_err(|e| EmbedError::Worker(e.to_string()))?
        .and_then(|mut vectors| {
            vectors.pop().ok_or(EmbedError::BadOutput {
                expected: 1,
                got: 0,
                width: 0,
            })
        })?;
        if let (Some(memo), Some(key)) = (&self.memo, key) {
            memo.insert(key, Arc::from(vector.as_slice()));
        }
        Ok(Embedded {
            vector,
            source: EmbedSource::Model,
        })
    }

    /// Embed many texts on the calling thread (benches, calibration), spread over the sessions.
    /// Blocking: never call it from an async worker.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let sessions = self.inner.sessions.len();
        // Below a few texts per session the thread hand-off costs more than it saves.
        if sessions == 1 || texts.len() < 2 * sessions {
            return self.inner.embed_chunk(texts, false);
        }
        let chunk = texts.len().div_ceil(sessions);
        let results: Vec<Result<Vec<Vec<f32>>, EmbedError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = texts
                .chunks(chunk)
                .map(|part| scope.spawn(|| self.inner.embed_chunk(part, false)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|p| Err(EmbedError::Worker(panic_message(&p))))
                })
                .collect()
        });
        let mut out = Vec::with_capacity(texts.len());
        for part in results {
            out.extend(part?);
        }
        Ok(out)
    }
}

/// How texts may share one ONNX run.
#[derive(Debug, Clone, Copy)]
enum Batching {
    /// Up to 64 texts per run: the fp32 model gives the same vector for a text in any batch.
    Padded,
    /// One text per run: dynamic quantization scales activations per run, so a text batched with
    /// longer ones (padding) would get a slightly different vector (cosine ~0.99) than when it
    /// is embedded alone at serving time, and calibration would not measure what is served.
    Single,
}

impl Batching {
    fn of(model: EmbeddingModel) -> Self {
        match model {
            EmbeddingModel::Quantized => Self::Single,
            EmbeddingModel::Reference => Self::Padded,
        }
    }

    fn max_size(self, texts: usize) -> usize {
        match self {
            Self::Padded => texts.clamp(1, 64),
            Self::Single => 1,
        }
    }
}

impl Inner {
    /// Embed on the wide session if asked (and there is one), else on whichever single-threaded
    /// session is free (the semaphore normally guarantees one is).
    fn embed_chunk(&self, texts: &[&str], wide: bool) -> Result<Vec<Vec<f32>>, EmbedError> {
        let started = Instant::now();
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut guard = match (&self.wide, wide) {
            (Some(session), true) => session.lock(),
            _ => (0..n)
                .find_map(|i| self.sessions[(start + i) % n].try_lock())
                .unwrap_or_else(|| self.sessions[start].lock()),
        };
        let mut vectors = guard.embed(texts, Some(self.batch.max_size(texts.len())))?;
        drop(guard);
        let width = vectors.first().map_or(0, Vec::len);
        if vectors.len() != texts.len() || vectors.iter().any(|v| v.len() != DIMENSION) {
            return Err(EmbedError::BadOutput {
                expected: texts.len(),
                got: vectors.len(),
                width,
            });
        }
        // fastembed L2-normalises after pooling; renormalise anyway so cosine == dot product
        // holds even if a future version stops doing it.
        vectors.iter_mut().for_each(|v| normalize(v));
        tracing::debug!(
            elapsed_us = started.elapsed().as_micros() as u64,
            texts = texts.len(),
            "embedded"
        );
        Ok(vectors)
    }
}

/// Scale `v` to unit L2 norm (a zero vector is left alone).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > f32::EPSILON {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Cosine of two vectors (plain dot product divided by both norms).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na <= f32::EPSILON || nb <= f32::EPSILON {
        0.0
    } else {
        dot / (na * nb)
    }
}

fn read_required(path: &Path, what: &'static str) -> Result<Vec<u8>, EmbedError> {
    if !path.is_file() {
        return Err(EmbedError::MissingFile {
            what,
            path: path.to_path_buf(),
        });
    }
    std::fs::read(path).map_err(|source| EmbedError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Point ort at the library, once per process.
///
/// ort (load-dynamic) loads the library named by `ORT_DYLIB_PATH` the first time any of its
/// APIs is used; fastembed does not re-export `ort::init_from`, so the variable is set here,
/// before the first session, unless the operator already set it. A later call with another
/// path is an error: one process can hold one ONNX Runtime.
fn init_runtime(library: &Path) -> Result<(), EmbedError> {
    static LOADED: OnceLock<PathBuf> = OnceLock::new();
    if !library.is_file() {
        return Err(EmbedError::MissingFile {
            what: "ONNX Runtime library",
            path: library.to_path_buf(),
        });
    }
    let chosen = LOADED.get_or_init(|| match std::env::var_os("ORT_DYLIB_PATH") {
        Some(set) if !set.is_empty() => PathBuf::from(set),
        _ => {
            std::env::set_var("ORT_DYLIB_PATH", library);
            library.to_path_buf()
        }
    });
    let same = chosen == library
        || matches!(
            (chosen.canonicalize(), library.canonicalize()),
            (Ok(a), Ok(b)) if a == b
        );
    if same {
        Ok(())
    } else {
        Err(EmbedError::Runtime {
            path: library.to_path_buf(),
            reason: format!(
                "this process already uses {} (ORT_DYLIB_PATH or an earlier load)",
                chosen.display()
            ),
        })
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panic without message".to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// One embedder per test process: loading is the slow part.
    pub(crate) fn shared() -> &'static Embedder {
        static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
        EMBEDDER.get_or_init(|| {
            Embedder::load(&EmbedConfig::from_models_root(
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
            ))
            .unwrap()
        })
    }

    #[tokio::test]
    async fn vectors_have_384_dims_and_unit_norm() {
        let v = shared()
            .embed("How do I rotate my API key?")
            .await
            .unwrap()
            .vector;
        assert_eq!(v.len(), DIMENSION);
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }

    #[test]
    fn paraphrase_is_closer_than_unrelated() {
        let v = shared()
            .embed_batch(&[
                "How do I rotate my API key?",
                "What are the steps to regenerate an API key?",
                "Which wine goes well with grilled salmon?",
            ])
            .unwrap();
        let para = cosine(&v[0], &v[1]);
        let unrelated = cosine(&v[0], &v[2]);
        assert!(
            para > unrelated + 0.2,
            "paraphrase {para} unrelated {unrelated}"
        );
    }

    #[tokio::test]
    async fn batch_matches_single_calls() {
        let texts = ["a b c", "first text", "second text", "third", "fourth one"];
        let batch = shared().embed_batch(&texts).unwrap();
        assert_eq!(batch.len(), texts.len());
        let single = shared().embed("second text").await.unwrap().vector;
        let c = cosine(&batch[2], &single);
        assert!(c > 0.999, "cosine {c}");
    }

    #[tokio::test]
    async fn a_repeated_text_comes_from_the_memo_with_the_same_vector() {
        let text = "memo test: which port does the admin API listen on?";
        let first = shared().embed(text).await.unwrap();
        assert_eq!(first.source, EmbedSource::Model);
        let again = shared().embed(text).await.unwrap();
        assert_eq!(again.source, EmbedSource::Memo);
        assert_eq!(again.vector, first.vector);
        let other = shared().embed("memo test: another text").await.unwrap();
        assert_eq!(other.source, EmbedSource::Model);
    }

    #[tokio::test]
    async fn memo_off_runs_the_model_every_time() {
        let off = Embedder::load(&EmbedConfig {
            threads: 1,
            memo_entries: 0,
            ..EmbedConfig::from_models_root(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
        })
        .unwrap();
        for _ in 0..2 {
            assert_eq!(
                off.embed("same text twice").await.unwrap().source,
                EmbedSource::Model
            );
        }
    }

    #[test]
    fn the_wide_session_gives_the_single_session_vector() {
        let texts = ["How do I reset my router password?"];
        let wide = shared().inner.embed_chunk(&texts, true).unwrap();
        let single = shared().inner.embed_chunk(&texts, false).unwrap();
        let c = cosine(&wide[0], &single[0]);
        assert!(c > 0.9999, "cosine {c}");
    }

    #[test]
    fn missing_model_names_file_and_script() {
        let dir = tempfile::tempdir().unwrap();
        let err = Embedder::load(&EmbedConfig::from_models_root(dir.path())).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(EmbeddingModel::default().file()), "{msg}");
        assert!(msg.contains("scripts/fetch-models.sh"), "{msg}");
    }

    /// Latency figures for BENCHMARKS.md:
    /// `cargo test --release --lib embed::tests::latency -- --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark: run in release with --ignored --nocapture"]
    fn latency() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let started = Instant::now();
        let one = Embedder::load(&EmbedConfig {
            threads: 1,
            ..EmbedConfig::from_models_root(&root)
        })
        .unwrap();
        eprintln!(
            "load, 1 session: {:.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        let short = "How do I reset my router password?";
        let long =
            "Our team runs a small self-hosted service that talks to several model providers. "
                .repeat(16);
        let time = |text: &str, n: usize| {
            one.embed_batch(&[text]).unwrap();
            let started = Instant::now();
            for _ in 0..n {
                one.embed_batch(&[text]).unwrap();
            }
            started.elapsed().as_secs_f64() * 1e3 / n as f64
        };
        eprintln!("short ({short:?}): {:.2} ms/call, 1 core", time(short, 200));
        let all = Embedder::load(&EmbedConfig::from_models_root(&root)).unwrap();
        if all.inner.wide.is_some() {
            all.inner.embed_chunk(&[short], true).unwrap();
            let started = Instant::now();
            for _ in 0..200 {
                all.inner.embed_chunk(&[short], true).unwrap();
            }
            eprintln!(
                "short, one session over {} cores: {:.2} ms/call",
                all.inner.sessions.len(),
                started.elapsed().as_secs_f64() * 1e3 / 200.0
            );
        }
        eprintln!("long (~240 tokens): {:.2} ms/call, 1 core", time(&long, 30));
        let texts: Vec<String> = (0..256)
            .map(|i| format!("question number {i} about cache {}", i * 7))
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        all.embed_batch(&refs[..8]).unwrap();
        let started = Instant::now();
        all.embed_batch(&refs).unwrap();
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "batch of 256 short texts, {} sessions: {:.0} texts/s",
            all.inner.sessions.len(),
            256.0 / secs
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let started = Instant::now();
        rt.block_on(async {
            let tasks: Vec<_> = refs
                .iter()
                .map(|t| {
                    let e = all.clone();
                    let t = t.to_string();
                    tokio::spawn(async move { e.embed(&t).await })
                })
                .collect();
            for t in tasks {
                t.await.unwrap().unwrap();
            }
        });
        eprintln!(
            "256 concurrent async embed() calls: {:.0} texts/s",
            256.0 / started.elapsed().as_secs_f64()
        );
    }
}
