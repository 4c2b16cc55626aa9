//! `ambuild` and `ambuildempty`: the catalogs and options turned into a build request, the table's
//! rows read for the core's build (see `pgivf_core::index::build`), and progress reported in
//! `pg_stat_progress_create_index`.

use super::heap::{self, RowReader};
use super::storage::PgStore;
use super::{
    catalog, options, phase_on_threads, FilterColumns, PHASE_ASSIGN, PHASE_KMEANS, PHASE_LOAD,
};
use crate::error::{raise_build, raise_with, OrCorrupt};
use pgivf_core::index::build::{self, BuildProgress, Builder, Request};
use pgivf_core::index::layout::{self, Shape};
use pgivf_core::kmeans::KMeansStage;
use pgivf_core::page::MAX_HEAP_TUPLES_PER_PAGE;
use pgivf_core::store::PageStore;
use pgrx::{pg_sys, PgLogLevel, PgSqlErrorCode};

/// What `CREATE INDEX` asks for.
fn request(index: pg_sys::Relation) -> Request {
    // SAFETY: `index` is an open index relation with at least one attribute.
    let first_type = unsafe { crate::compat::attribute(index, 0).atttypid };
    if first_type == pg_sys::VARBITOID {
        raise_with(
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            "type not supported for ivfflat index".into(),
            None,
        );
    }
    let vector_column = catalog::vector_column(index);
    let typmod = catalog::vector_typmod(index, vector_column);
    let filter_columns = FilterColumns::of(index).len();
    let (quantizer, rerank) = options::quantizer(index);
    Request {
        dimensions: (typmod >= 0).then_some(typmod as usize),
        metric: catalog::build_metric(index, vector_column),
        lists: options::lists(index),
        filter_columns,
        quantizer,
        rerank,
        spill: options::spill(index),
        vector_is_column: catalog::heap_vector_attribute(index, vector_column).is_some(),
    }
}

/// Lists for an index without a `lists` option, said in a NOTICE.
fn lists_for_table(heap: Option<pg_sys::Relation>) -> usize {
    let rows = heap.map_or(0.0, heap::estimated_rows);
    let lists = options::lists_for_rows(rows);
    if rows >= options::DEFAULT_LISTS as f64 {
        pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            format!(
                "ivfflat index uses {lists} {} for about {rows:.0} rows",
                if lists == 1 { "list" } else { "lists" }
            ),
            "ambuild",
        )
        .set_detail("Without a lists option the index gets rows / 1000 lists up to 1M rows and sqrt(rows) beyond; REINDEX sizes it again.")
        .set_hint("Give WITH (lists = n) to choose the number yourself.")
        .report(PgLogLevel::NOTICE);
    }
    lists
}

/// The index's shape; `heap` is the table being indexed (None for the empty init fork of an
/// unlogged table), which sizes the index when `lists` was not given.
fn shape(index: pg_sys::Relation, heap: Option<pg_sys::Relation>) -> Shape {
    build::plan(&request(index), || lists_for_table(heap), build_id(index))
        .unwrap_or_else(|e| raise_build(index, e))
}

fn progress(param: u32, value: i64) {
    // SAFETY: plain progress counter update for the current backend.
    unsafe { pg_sys::pgstat_progress_update_param(param as i32, value) }
}

/// Build progress for pg_stat_progress_create_index; `threads` assign the rows.
struct Progress {
    threads: usize,
}

impl BuildProgress for Progress {
    fn rows_done(&mut self, rows: u64) {
        progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE, rows as i64);
    }

    fn writing(&mut self, writing: bool) {
        // Pages are written by the backend alone.
        let phase = if writing {
            PHASE_LOAD
        } else {
            phase_on_threads(PHASE_ASSIGN, self.threads)
        };
        progress(pg_sys::PROGRESS_CREATEIDX_SUBPHASE, phase);
    }
}

/// k-means's checkpoints: the cancel check, and the samples assigned so far.
fn kmeans_progress(stage: KMeansStage) {
    pgrx::check_for_interrupts!();
    if let KMeansStage::Assigning { done, total, .. } = stage {
        progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE, done as i64);
        progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_TOTAL, total as i64);
    }
}

/// A rayon pool sized like PostgreSQL would size a parallel build: the leader plus
/// max_parallel_maintenance_workers, but no more threads than cores.
fn thread_pool() -> rayon::ThreadPool {
    // SAFETY: reading a GUC variable on the backend thread.
    let workers = unsafe { pg_sys::max_parallel_maintenance_workers }.max(0) as usize;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    rayon::ThreadPoolBuilder::new()
        .num_threads((workers + 1).min(cores).max(1))
        .thread_name(|i| format!("pgivf-build-{i}"))
        .build()
        .unwrap_or_else(|e| {
            raise_with(
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
                format!("could not start build threads: {e}"),
                None,
            )
        })
}

fn maintenance_work_mem_bytes() -> usize {
    // SAFETY: reading a GUC variable on the backend thread.
    (unsafe { pg_sys::maintenance_work_mem }).max(64) as usize * 1024
}

/// A value that differs between builds, so that backends notice that their cached centroids are
/// stale.
fn build_id(index: pg_sys::Relation) -> u64 {
    // SAFETY: plain reads of the clock, the backend's pid and the index's file number.
    let (now, pid) = unsafe {
        (
            pg_sys::GetCurrentTimestamp() as u64,
            pg_sys::MyProcPid as u64,
        )
    };
    let node = u64::from(crate::compat::relation_file(index).2);
    let mut x = now ^ (pid << 48) ^ (node << 20);
    // splitmix64 finaliser: spreads nearby inputs far apart.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

struct AssignState<'a> {
    index: pg_sys::Relation,
    store: &'a PgStore<'a>,
    builder: Builder<'a>,
    reader: RowReader,
    threads: usize,
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn assign_callback(
    _index: pg_sys::Relation,
    tid: pg_sys::ItemPointer,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    _alive: bool,
    state: *mut std::ffi::c_void,
) {
    // SAFETY: `state` is the AssignState passed to the scan below.
    let state = unsafe { &mut *state.cast::<AssignState>() };
    // SAFETY: the callback's own arrays.
    if !unsafe { state.reader.read(values, isnull) } {
        return;
    }
    // SAFETY: `tid` points at the heap tuple's ItemPointer.
    let tid = heap::tid_of(unsafe { &*tid });
    let AssignState {
        index,
        store,
        builder,
        reader,
        threads,
    } = state;
    let mut progress = Progress { threads: *threads };
    builder
        .add_row(*store, &mut progress, tid, &reader.vector, &reader.hashes)
        .or_corrupt(*index);
}

#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambuild(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    info: *mut pg_sys::IndexInfo,
) -> *mut pg_sys::IndexBuildResult {
    let shape = shape(index, Some(heap));
    let store = PgStore::new(index);
    if store.blocks() != 0 {
        raise_with(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "index is not empty at the start of the build".into(),
            None,
        );
    }
    let pool = thread_pool();
    if pool.current_num_threads() > 1 {
        // pgvector reports its parallel builds this way, and its tests look for the message.
        pgrx::debug1!("using {} parallel workers", pool.current_num_threads());
    }
    let vector_column = catalog::vector_column(index);
    let memory = maintenance_work_mem_bytes();
    let wanted = build::sample_target(
        shape.lists,
        heap::table_blocks(heap) as usize * MAX_HEAP_TUPLES_PER_PAGE,
    );
    let target = build::samples_within(&shape, wanted, memory);
    progress(
        pg_sys::PROGRESS_CREATEIDX_SUBPHASE,
        phase_on_threads(PHASE_KMEANS, pool.current_num_threads()),
    );
    let started = std::time::Instant::now();
    let samples = heap::sample_rows(
        heap,
        index,
        info,
        shape.metric,
        vector_column,
        target,
        build::KMEANS_SEED,
    );
    let sample_count = samples.len() / shape.dimensions;
    let sampled = started.elapsed();
    // Said only when the smaller sample is what trains the lists (else training refuses it).
    if target < wanted
        && sample_count >= target
        && build::training_memory(&shape, sample_count) <= memory
    {
        pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            format!("ivfflat index sampled {sample_count} rows for k-means instead of up to {wanted}"),
            "ambuild",
        )
        .set_detail(format!(
            "maintenance_work_mem ({} MB) holds {} rows of {} dimensions for {} lists; fewer samples train the lists a little less well.",
            memory / (1024 * 1024),
            target,
            shape.dimensions,
            shape.lists
        ))
        .set_hint(format!(
            "Raise maintenance_work_mem to {} MB to sample up to {wanted}.",
            build::training_memory(&shape, wanted).div_ceil(1024 * 1024)
        ))
        .report(PgLogLevel::NOTICE);
    }
    let (centroids, quantizer) =
        build::train(&shape, &samples, &pool, memory, &mut kmeans_progress)
            .unwrap_or_else(|e| raise_build(index, e));
    drop(samples);
    let clustered = started.elapsed();

    progress(
        pg_sys::PROGRESS_CREATEIDX_SUBPHASE,
        phase_on_threads(PHASE_ASSIGN, pool.current_num_threads()),
    );
    // SAFETY: heap's pg_class row is loaded.
    let estimated_rows = unsafe { (*(*heap).rd_rel).reltuples }.max(0.0) as i64;
    progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_TOTAL, estimated_rows);
    progress(pg_sys::PROGRESS_CREATEIDX_TUPLES_DONE, 0);
    let builder = Builder::start(
        &store,
        &shape,
        &centroids,
        quantizer.as_deref(),
        &pool,
        memory,
    )
    .or_corrupt(index);
    let mut state = AssignState {
        index,
        store: &store,
        builder,
        reader: RowReader::new(shape.metric, vector_column, FilterColumns::of(index)),
        threads: pool.current_num_threads(),
    };
    // SAFETY: the callback matches IndexBuildCallback and `state` outlives the scan.
    let heap_tuples = unsafe {
        pg_sys::table_index_build_scan(
            heap,
            index,
            info,
            true,
            true,
            Some(assign_callback),
            (&mut state as *mut AssignState).cast(),
            std::ptr::null_mut(),
        )
    };
    let assigned = started.elapsed();
    let built = state
        .builder
        .finish(
            &store,
            &mut Progress {
                threads: pool.current_num_threads(),
            },
        )
        .or_corrupt(index);
    // The phase times users and benchmarks ask about (SET client_min_messages = debug1 shows them).
    pgrx::debug1!(
        "ivfflat build: {} samples in {:.3} s, k-means {:.3} s, reading and assigning {} rows {:.3} s, writing {:.3} s, {} threads",
        sample_count,
        sampled.as_secs_f64(),
        (clustered - sampled).as_secs_f64(),
        built.rows,
        (assigned - clustered).as_secs_f64(),
        (started.elapsed() - assigned).as_secs_f64(),
        pool.current_num_threads()
    );
    if sample_count < shape.lists {
        pg_sys::panic::ErrorReport::new(
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            "ivfflat index created with little data",
            "ambuild",
        )
        .set_detail("This will cause low recall.")
        .set_hint("Drop the index until the table has more data.")
        .report(PgLogLevel::NOTICE);
    }

    // SAFETY: palloc0 of the result struct PostgreSQL expects.
    unsafe {
        let result = pg_sys::palloc0(std::mem::size_of::<pg_sys::IndexBuildResult>())
            .cast::<pg_sys::IndexBuildResult>();
        (*result).heap_tuples = heap_tuples;
        (*result).index_tuples = built.rows as f64;
        result
    }
}

/// The empty index of an unlogged table, written to the init fork (copied over the main fork
/// after a crash). Generic WAL does not cover init forks, so the pages are WAL-logged wholesale,
/// as contrib/bloom and pgvector do.
#[pgrx::pg_guard]
pub unsafe extern "C-unwind" fn ambuildempty(index: pg_sys::Relation) {
    let shape = shape(index, None);
    let pool = thread_pool();
    let (centroids, quantizer) = build::train(&shape, &[], &pool, usize::MAX, &mut kmeans_progress)
        .unwrap_or_else(|e| raise_build(index, e));
    let store = PgStore::init_fork(index);
    layout::write_structure(&store, &shape, &centroids, quantizer.as_deref()).or_corrupt(index);
    // SAFETY: the init fork exists now and holds exactly the pages written above.
    unsafe {
        pg_sys::log_newpage_range(
            index,
            pg_sys::ForkNumber::INIT_FORKNUM,
            0,
            store.blocks(),
            true,
        );
    }
}
