//! Building an index: what it will be ([`plan`]), its lists (k-means over a sample, then the
//! quantizer), and every table row filed under its list ([`Builder`]).
//!
//! The table is read by the caller, which hands rows over one by one; they are assigned to their
//! nearest centroid in parallel batches on a rayon pool (plain slices only: no worker thread ever
//! calls into PostgreSQL), encoded, and kept in memory until the memory budget is reached, then
//! written chain after chain. Interrupts are checked and progress reported between batches and
//! between k-means chunks, on the caller's thread.

use rayon::prelude::*;
use thiserror::Error;

use crate::filter::Summary;
use crate::kmeans::{self, KMeansError, KMeansParams, KMeansStage};
use crate::metric::Metric;
use crate::page::{EntryFormat, FormatError, Meta, Origin, Tid, DATA_CAPACITY};
use crate::quant::{Quantizer, QuantizerKind, Rerank, Training};
use crate::store::PageStore;
use crate::{distance, VECTOR_MAX_DIM};

use super::chain::ChainWriter;
use super::layout::{self, Shape};

/// Rows per parallel assignment batch: enough to keep every core busy, few enough that a cancel
/// is noticed within a fraction of a second.
const ASSIGN_BATCH_ROWS: usize = 8192;
/// Memory for the quantizer's per-list contexts at build (250 lists of 384-d take 0.5 MB).
const LIST_CONTEXT_BYTES: usize = 64 << 20;
/// k-means's seed: fixed, so that a build of the same rows gives the same index every time.
pub const KMEANS_SEED: u64 = 0x5EED_1F1F;
/// The quantizer's seed (RaBitQ's rotation), fixed for the same reason.
pub const QUANTIZER_SEED: u64 = 0x0BAD_5EED_2024;
/// pgvector's limit on an index's dimensions: an entry of full vectors must fit a page.
pub const MAX_DIMENSIONS: usize = 2000;

/// The `spill` option: whether a quantized index files each row under a second list too
/// (`kmeans::Spiller`). `auto` spills where the extra codes cost little: quantized lists that
/// re-rank from the index (about 5% more index for RaBitQ); with `rerank = 'heap'` the codes are
/// most of the index, and spilling would nearly double it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spill {
    Auto = 0,
    On = 1,
    Off = 2,
}

/// Why an index cannot be built as asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    #[error("column does not have dimensions")]
    NoDimensions,
    #[error("column cannot have more than {MAX_DIMENSIONS} dimensions for ivfflat index")]
    TooManyDimensions,
    /// Past `MAX_DIMENSIONS` with a quantizer that keeps the vectors in the index as well.
    #[error("column cannot have more than {MAX_DIMENSIONS} dimensions for ivfflat index with rerank = 'index'")]
    TooManyDimensionsForVectorsInIndex,
    #[error("dimensions must be greater than one for this opclass")]
    OneDimension,
    #[error("rerank = 'heap' needs a quantizer")]
    HeapWithoutQuantizer,
    #[error("rerank = 'heap' needs the vector to be a table column, not an expression")]
    HeapOfExpression,
    #[error("spill = 'on' needs a quantizer")]
    SpillWithoutQuantizer,
    #[error("ivfflat index entries of {dimensions} dimensions and {filters} filter columns take {stride} bytes, more than a page's {DATA_CAPACITY}")]
    EntryTooLarge {
        dimensions: usize,
        filters: usize,
        stride: usize,
    },
    #[error("memory required is {required_mb} MB, maintenance_work_mem is {allowed_mb} MB")]
    NotEnoughMemory {
        required_mb: usize,
        allowed_mb: usize,
    },
    #[error("ivfflat k-means failed: {0}")]
    KMeans(KMeansError),
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// What a `CREATE INDEX` asks for, as the catalogs and options say it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    /// The vector column's dimensions (its typmod), None without one.
    pub dimensions: Option<usize>,
    pub metric: Metric,
    /// The `lists` option, None when not given (then [`plan`] asks for a number).
    pub lists: Option<usize>,
    pub filter_columns: usize,
    pub quantizer: QuantizerKind,
    pub rerank: Rerank,
    pub spill: Spill,
    /// Whether the vector is a table column (rather than an expression), which `rerank = 'heap'`
    /// reads.
    pub vector_is_column: bool,
}

/// Checks a request with pgvector's errors (and ours for our options) and decides the index's
/// shape, in pgvector's order: dimensions, then lists (`size_lists` when the option was not given,
/// which may tell the user what it chose), then our options. `build_id` tells this build from any
/// other of the same index.
pub fn plan(
    request: &Request,
    size_lists: impl FnOnce() -> usize,
    build_id: u64,
) -> Result<Shape, BuildError> {
    let dimensions = request.dimensions.ok_or(BuildError::NoDimensions)?;
    let quantized = !request.quantizer.is_none();
    // Lists of codes alone (the vectors stay in the table) take any vector: a RaBitQ code of
    // 16,000 dimensions is 2 kB. Vectors in the index are limited as in pgvector.
    let codes_only = quantized && request.rerank == Rerank::Heap;
    if dimensions > VECTOR_MAX_DIM || (dimensions > MAX_DIMENSIONS && !codes_only) {
        return Err(if quantized && dimensions <= VECTOR_MAX_DIM {
            BuildError::TooManyDimensionsForVectorsInIndex
        } else {
            BuildError::TooManyDimensions
        });
    }
    if request.metric.needs_two_dimensions() && dimensions == 1 {
        return Err(BuildError::OneDimension);
    }
    let lists = request.lists.unwrap_or_else(size_lists);
    if !quantized && request.rerank == Rerank::Heap {
        return Err(BuildError::HeapWithoutQuantizer);
    }
    if request.rerank == Rerank::Heap && !request.vector_is_column {
        return Err(BuildError::HeapOfExpression);
    }
    let spill = match request.spill {
        Spill::Auto => quantized && request.rerank == Rerank::Index,
        Spill::On if !quantized => return Err(BuildError::SpillWithoutQuantizer),
        Spill::On => true,
        Spill::Off => false,
    };
    // The list format lets an entry span two pages, not more.
    let stride = EntryFormat {
        dim: dimensions,
        filters: request.filter_columns,
        code_bytes: request.quantizer.code_bytes(dimensions),
        located: quantized && request.rerank == Rerank::Index,
    }
    .stride();
    if stride > DATA_CAPACITY {
        return Err(BuildError::EntryTooLarge {
            dimensions,
            filters: request.filter_columns,
            stride,
        });
    }
    Ok(Shape {
        dimensions,
        lists,
        metric: request.metric,
        filter_columns: request.filter_columns,
        quantizer: request.quantizer,
        rerank: request.rerank,
        spill,
        build_id,
        quantizer_seed: QUANTIZER_SEED,
    })
}

/// pgvector's sample size: 50 rows per list, at least 10,000, never more than the table can hold.
pub fn sample_target(lists: usize, table_capacity: usize) -> usize {
    (lists * 50).max(10_000).min(table_capacity).max(1)
}

/// Fewest samples per list that k-means is given when `maintenance_work_mem` cannot hold the
/// full sample: with less, the build fails and says how much memory it needs.
pub const MIN_SAMPLES_PER_LIST: usize = 10;

/// Bytes k-means needs for `samples` samples of `shape`, the samples themselves included.
pub fn training_memory(shape: &Shape, samples: usize) -> usize {
    let dim = shape.dimensions;
    samples * dim * size_of::<f32>()
        + if samples > 0 {
            kmeans::memory_required(samples, dim, shape.lists)
        } else {
            0
        }
}

/// How many of the `wanted` samples to take within `memory_limit`: all of them when they fit,
/// else as many as fit, but at least [`MIN_SAMPLES_PER_LIST`] per list (the caller says in a
/// NOTICE that it sampled less). When even those do not fit, [`train`] refuses them with the
/// memory they need once the sample shows how many rows there are (an empty table, whose size
/// the caller can only bound, needs none).
pub fn samples_within(shape: &Shape, wanted: usize, memory_limit: usize) -> usize {
    if training_memory(shape, wanted) <= memory_limit {
        return wanted;
    }
    let least = wanted.min(shape.lists.saturating_mul(MIN_SAMPLES_PER_LIST));
    if training_memory(shape, least) > memory_limit {
        return least;
    }
    // The memory grows with the samples: the most that fit lie between `least` and `wanted`.
    let (mut fits, mut too_many) = (least, wanted);
    while too_many - fits > 1 {
        let middle = fits + (too_many - fits) / 2;
        if training_memory(shape, middle) <= memory_limit {
            fits = middle;
        } else {
            too_many = middle;
        }
    }
    fits
}

/// What [`train`] learns: the centroids (lists × dimensions) and the quantizer, if any.
pub type Trained = (Vec<f32>, Option<Box<dyn Quantizer>>);

/// The centroids of `samples` (`shape.dimensions` wide, as stored), and the quantizer trained on
/// them: k-means on `pool`, refused up front when it would need more than `memory_limit` bytes.
/// `progress` runs on the caller's thread between chunks of work (to check for cancel).
pub fn train(
    shape: &Shape,
    samples: &[f32],
    pool: &rayon::ThreadPool,
    memory_limit: usize,
    progress: &mut dyn FnMut(KMeansStage),
) -> Result<Trained, BuildError> {
    let dim = shape.dimensions;
    let n = samples.len() / dim;
    let required = training_memory(shape, n);
    if required > memory_limit {
        return Err(BuildError::NotEnoughMemory {
            required_mb: required.div_ceil(1024 * 1024),
            allowed_mb: memory_limit / (1024 * 1024),
        });
    }
    let params = KMeansParams {
        seed: KMEANS_SEED,
        ..KMeansParams::new(shape.lists, shape.metric.kmeans())
    };
    let mut checkpoint = |stage: KMeansStage| -> Result<(), KMeansError> {
        progress(stage);
        Ok(())
    };
    let centroids =
        kmeans::train(samples, dim, &params, pool, &mut checkpoint).map_err(BuildError::KMeans)?;
    let quantizer = shape.quantizer.registration().map(|registration| {
        progress(KMeansStage::Preparing);
        (registration.train)(&Training {
            dim,
            metric: shape.metric,
            seed: shape.quantizer_seed,
            samples,
            centroids: &centroids,
            pool,
        })
    });
    Ok((centroids, quantizer))
}

/// What a build reports as it goes.
pub trait BuildProgress {
    /// Rows assigned to their lists so far.
    fn rows_done(&mut self, rows: u64);
    /// Entries are being written to the index (true) or rows assigned (false).
    fn writing(&mut self, writing: bool);
}

/// What a build found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Built {
    pub rows: u64,
    pub max_norm: f32,
}

/// Files rows under their lists and writes them, once the structure pages are written.
pub struct Builder<'a> {
    meta: Meta,
    dim: usize,
    centroids: &'a [f32],
    pool: &'a rayon::ThreadPool,
    quantizer: Option<&'a dyn Quantizer>,
    writer: ChainWriter,
    memory_budget: usize,
    batch_rows: Vec<f32>,
    batch_tids: Vec<Tid>,
    /// The batch's filter hashes, one per filter column per row.
    batch_filters: Vec<u64>,
    /// Per list, with filter columns: the summary of its entries' filter hashes.
    summaries: Vec<Summary>,
    /// Per list: the largest distance of a member from the centroid (`bounds`).
    radii: Vec<f32>,
    max_norm: f32,
    rows: u64,
    /// Per list, what encoding its rows needs of its centroid (RaBitQ: the rotated centroid),
    /// computed once; None when that would take more than LIST_CONTEXT_BYTES (each row then
    /// computes its own).
    list_contexts: Option<Vec<f32>>,
    /// With `Meta::spill`: picks each row's second list.
    spiller: Option<kmeans::Spiller<'a>>,
}

impl<'a> Builder<'a> {
    /// Writes the structure pages of an empty index and returns a builder for its rows.
    /// `memory_budget` bounds what the build holds (maintenance_work_mem): the entries kept before
    /// they are written get what the centroids and a batch of rows leave of it.
    pub fn start<S: PageStore>(
        store: &S,
        shape: &Shape,
        centroids: &'a [f32],
        quantizer: Option<&'a dyn Quantizer>,
        pool: &'a rayon::ThreadPool,
        memory_budget: usize,
    ) -> Result<Self, FormatError> {
        let meta = layout::write_structure(store, shape, centroids, quantizer)?;
        let dim = shape.dimensions;
        let lists = shape.lists;
        let contexts = list_contexts(quantizer, centroids, dim, pool);
        // A batch's rows, its codes (twice when spilling) and labels, the centroids and their
        // quantizer contexts.
        let code_bytes = quantizer.map_or(0, |q| q.code_bytes());
        let held = ASSIGN_BATCH_ROWS * (dim * size_of::<f32>() + 2 * code_bytes + 16)
            + size_of_val(centroids)
            + contexts.as_ref().map_or(0, |c| size_of_val(c.as_slice()));
        Ok(Builder {
            meta,
            dim,
            centroids,
            pool,
            quantizer,
            writer: ChainWriter::new(meta),
            memory_budget: memory_budget.saturating_sub(held),
            batch_rows: Vec::with_capacity(ASSIGN_BATCH_ROWS * dim),
            batch_tids: Vec::with_capacity(ASSIGN_BATCH_ROWS),
            batch_filters: Vec::with_capacity(ASSIGN_BATCH_ROWS * shape.filter_columns),
            summaries: if shape.filter_columns == 0 {
                Vec::new()
            } else {
                vec![Summary::default(); lists]
            },
            radii: vec![0.0; lists],
            max_norm: 0.0,
            rows: 0,
            list_contexts: contexts,
            spiller: meta.spill.then(|| {
                kmeans::Spiller::new(centroids, dim, shape.metric.kmeans(), kmeans::SPILL_LAMBDA)
            }),
        })
    }

    pub fn meta(&self) -> Meta {
        self.meta
    }

    /// Files a row (`row` as stored: see `Metric::prepare_row`) with its filter hashes.
    pub fn add_row<S: PageStore>(
        &mut self,
        store: &S,
        progress: &mut dyn BuildProgress,
        tid: Tid,
        row: &[f32],
        filter_hashes: &[u64],
    ) -> Result<(), FormatError> {
        debug_assert_eq!(row.len(), self.dim);
        self.batch_rows.extend_from_slice(row);
        self.batch_filters.extend_from_slice(filter_hashes);
        self.batch_tids.push(tid);
        if self.batch_tids.len() >= ASSIGN_BATCH_ROWS {
            self.assign_batch(store, progress)?;
        }
        Ok(())
    }

    /// Writes every row, the directory and the summaries, and records the build in the meta page.
    pub fn finish<S: PageStore>(
        mut self,
        store: &S,
        progress: &mut dyn BuildProgress,
    ) -> Result<Built, FormatError> {
        self.assign_batch(store, progress)?;
        progress.writing(true);
        self.writer.flush(store)?;
        layout::write_directory(
            store,
            &self.meta,
            &self.writer.heads_and_tails(),
            &self.radii,
        )?;
        if !self.summaries.is_empty() {
            layout::write_summaries(store, &self.meta, &self.summaries)?;
        }
        if self.rows > 0 {
            layout::finish_meta(store, self.rows, self.max_norm)?;
        }
        Ok(Built {
            rows: self.rows,
            max_norm: self.max_norm,
        })
    }

    /// The batch's codes for `labels`, computed on the pool (plain slices in, bytes out).
    fn encode_batch(&self, quantizer: &dyn Quantizer, labels: &[u32]) -> Vec<u8> {
        let code_bytes = quantizer.code_bytes();
        let dim = self.dim;
        let mut codes = vec![0u8; self.batch_tids.len() * code_bytes];
        let centroids = self.centroids;
        let contexts = self.list_contexts.as_deref();
        let context_len = quantizer.list_context_len();
        let rows = &self.batch_rows[..];
        self.pool.install(|| {
            codes
                .par_chunks_mut(code_bytes)
                .zip(rows.par_chunks(dim))
                .zip(labels.par_iter())
                .for_each_init(Vec::new, |scratch, ((code, row), &list)| {
                    let list = list as usize;
                    let centroid = &centroids[list * dim..(list + 1) * dim];
                    match contexts {
                        Some(contexts) => quantizer.encode_in_list(
                            row,
                            centroid,
                            &contexts[list * context_len..(list + 1) * context_len],
                            scratch,
                            code,
                        ),
                        None => quantizer.encode(row, centroid, scratch, code),
                    }
                });
        });
        codes
    }

    /// Widens list `list`'s radius and filter summary (when it has filter columns) to cover `row`.
    fn cover_row(&mut self, list: usize, row: &[f32], hashes: &[u64]) {
        let centroid = &self.centroids[list * self.dim..(list + 1) * self.dim];
        self.radii[list] = self.radii[list].max(self.meta.metric.member_distance(row, centroid));
        if let Some(summary) = self.summaries.get_mut(list) {
            for &hash in hashes {
                summary.insert(hash);
            }
        }
    }

    fn assign_batch<S: PageStore>(
        &mut self,
        store: &S,
        progress: &mut dyn BuildProgress,
    ) -> Result<(), FormatError> {
        if self.batch_tids.is_empty() {
            return Ok(());
        }
        store.check_interrupts();
        let labels = kmeans::assign(
            &self.batch_rows,
            self.dim,
            self.centroids,
            self.meta.metric.kmeans(),
            self.pool,
        );
        let format = self.meta.entry_format();
        let stride = format.stride();
        let filter_count = self.meta.filter_columns as usize;
        let codes = self.quantizer.map(|q| self.encode_batch(q, &labels));
        // Each row's second list (u32::MAX: none) and its code there.
        let seconds = self
            .spiller
            .as_ref()
            .map(|spiller| spiller.second_lists(&self.batch_rows, &labels, self.pool));
        let second_codes = match (self.quantizer, &seconds) {
            (Some(quantizer), Some(seconds)) => {
                let encodable: Vec<u32> = seconds
                    .iter()
                    .zip(&labels)
                    .map(|(&second, &primary)| if second == u32::MAX { primary } else { second })
                    .collect();
                Some(self.encode_batch(quantizer, &encodable))
            }
            _ => None,
        };
        let vector_format = self.meta.chain_format(self.meta.lists);
        let mut entry = vec![0u8; stride];
        let mut vector_entry = vec![0u8; vector_format.stride()];
        let mut spilled = vec![0u8; stride];
        let batch_rows = std::mem::take(&mut self.batch_rows);
        let batch_tids = std::mem::take(&mut self.batch_tids);
        let batch_filters = std::mem::take(&mut self.batch_filters);
        for (i, ((&tid, row), &list)) in batch_tids
            .iter()
            .zip(batch_rows.chunks_exact(self.dim))
            .zip(&labels)
            .enumerate()
        {
            let hashes = &batch_filters[i * filter_count..(i + 1) * filter_count];
            self.cover_row(list as usize, row, hashes);
            self.max_norm = self
                .max_norm
                .max(distance::norm_squared_f64(row).sqrt() as f32);
            let Some(codes) = &codes else {
                format.encode(tid, hashes, row, Origin::Build, &mut entry);
                self.writer.push(list, &entry);
                continue;
            };
            let code_bytes = format.code_bytes;
            let location = self.meta.keeps_vectors().then(|| {
                vector_format.encode(tid, &[], row, Origin::Build, &mut vector_entry);
                self.writer.push_vector(list, &vector_entry)
            });
            let code = &codes[i * code_bytes..(i + 1) * code_bytes];
            format.encode_code(tid, hashes, location, code, Origin::Build, &mut entry);
            let second = seconds.as_ref().map_or(u32::MAX, |s| s[i]);
            if let (Some(second_codes), true) = (&second_codes, second != u32::MAX) {
                self.cover_row(second as usize, row, hashes);
                let code = &second_codes[i * code_bytes..(i + 1) * code_bytes];
                format.encode_code(tid, hashes, location, code, Origin::Build, &mut spilled);
                crate::page::mark_spilled(&mut spilled);
                self.writer.push(second, &spilled);
            }
            self.writer.push(list, &entry);
        }
        self.rows += batch_tids.len() as u64;
        progress.rows_done(self.rows);
        self.batch_rows = batch_rows;
        self.batch_tids = batch_tids;
        self.batch_filters = batch_filters;
        self.batch_rows.clear();
        self.batch_tids.clear();
        self.batch_filters.clear();
        if self.writer.pending_bytes() > self.memory_budget {
            progress.writing(true);
            self.writer.flush(store)?;
            progress.writing(false);
        }
        Ok(())
    }
}

/// The quantizer's contexts of every list of `centroids`, computed on the pool.
fn list_contexts(
    quantizer: Option<&dyn Quantizer>,
    centroids: &[f32],
    dim: usize,
    pool: &rayon::ThreadPool,
) -> Option<Vec<f32>> {
    let quantizer = quantizer?;
    let len = quantizer.list_context_len();
    let lists = centroids.len() / dim;
    if len == 0 || lists * len * std::mem::size_of::<f32>() > LIST_CONTEXT_BYTES {
        return None;
    }
    let mut contexts = vec![0.0f32; lists * len];
    pool.install(|| {
        contexts
            .par_chunks_mut(len)
            .zip(centroids.par_chunks(dim))
            .for_each(|(context, centroid)| {
                context.copy_from_slice(&quantizer.list_context(centroid))
            });
    });
    Some(contexts)
}
