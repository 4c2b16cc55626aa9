//! `aminsert`: online inserts, no retraining.
//!
//! A row goes to the list of its nearest centroid (from the backend's centroid cache), and in an
//! index that spills, a second entry to the list `kmeans::Spiller` picks (both from one pass over
//! the centroids, `Spiller::place`). It reuses a slot that VACUUM freed when the list has one (so
//! delete + VACUUM + insert does not grow the index), and otherwise appends at the list's tail,
//! extending the chain with a new page when the entry does not fit; an entry that straddles the
//! boundary is written to both pages in one WAL record.
//!
//! Lock order, which keeps concurrent inserters, VACUUM and scans deadlock-free: entry pages in chain
//! order, then the list's directory page. Nothing waits for an entry page while holding a directory
//! page, except when creating a list's first page, which locks a brand-new page nobody else can see.

use super::build::{kmeans_metric, prepare_row, tid_of};
use super::cache::{self, read_directory, IndexCache};
use super::filters::add_to_summary;
use super::storage::{ChainWalk, Locked, Mode, OrCorrupt, Xlog};
use pgivf_core::page::{
    self, DirectoryEntry, EntryFormat, Location, Meta, Origin, PageKind, INVALID_BLOCK,
};
use pgivf_core::{bounds, distance, kmeans};
use pgrx::pg_sys;

/// Pages an insert looks at for a reusable slot before giving up and appending; bounded so that an
/// insert never walks a whole list. The hint moves past the pages it has checked.
const SLOT_SEARCH_PAGES: usize = 8;

#[pgrx::pg_guard]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C-unwind" fn aminsert(
    index: pg_sys::Relation,
    values: *mut pg_sys::Datum,
    isnull: *mut bool,
    heap_tid: pg_sys::ItemPointer,
    _heap: pg_sys::Relation,
    _check_unique: pg_sys::IndexUniqueCheck::Type,
    _index_unchanged: bool,
    _info: *mut pg_sys::IndexInfo,
) -> bool {
    let cache = cache::get(index);
    let meta = cache.meta;
    let vector_column = cache.vector_column;
    // SAFETY: the executor passes one value and null flag per key column.
    if unsafe { *isnull.add(vector_column) } {
        return false;
    }
    // SAFETY: a non-NULL vector datum.
    let vector = unsafe { crate::types::vector::detoast(*values.add(vector_column)) };
    if vector.len() != meta.dimensions as usize {
        crate::error::raise(
            pgivf_core::VectorError::DimensionMismatch(meta.dimensions as usize, vector.len()),
            None,
        );
    }
    let mut stored = Vec::with_capacity(vector.len());
    if !prepare_row(meta.metric, vector, &mut stored) {
        return false;
    }
    let placer = kmeans::Spiller::with_norms(
        &cache.centroids,
        meta.dimensions as usize,
        cache.centroid_norms(),
        kmeans_metric(meta.metric),
        kmeans::SPILL_LAMBDA,
    );
    let mut scratch = Vec::new();
    let mut between_rows = cache.between_rows.borrow_mut();
    let spill = (meta.spill && cache.quantizer.is_some()).then_some(&mut *between_rows);
    let (list, second) = placer
        .place(&stored, spill, &mut scratch)
        .expect("a row of the index's dimensions");
    drop(between_rows);
    let format = meta.entry_format();
    let mut filter_hashes = Vec::with_capacity(format.filters);
    if format.filters > 0 {
        // SAFETY: the executor's arrays, one datum and flag per key column.
        unsafe { cache.filters.row_hashes(values, isnull, &mut filter_hashes) };
    }
    cover_row(index, &cache, list, &stored, &filter_hashes);
    let mut entry = vec![0u8; format.stride()];
    // SAFETY: the heap TID of the new row.
    let tid = tid_of(unsafe { &*heap_tid });
    match &cache.quantizer {
        None => format.encode(tid, &filter_hashes, &stored, Origin::Insert, &mut entry),
        Some(quantizer) => {
            // The vector first, in its own WAL record: a crash before the code is written leaves
            // an unreferenced vector of an aborted row, which VACUUM frees like any dead entry.
            let location = meta.keeps_vectors().then(|| {
                let vector_format = meta.chain_format(meta.lists);
                let mut vector_entry = vec![0u8; vector_format.stride()];
                vector_format.encode(tid, &[], &stored, Origin::Insert, &mut vector_entry);
                insert_entry(index, &meta, meta.lists + list, &vector_entry)
            });
            let mut code = vec![0u8; quantizer.code_bytes()];
            let mut write_code = |list: u32, spilled: bool| {
                cache.encode(quantizer, list, &stored, &mut scratch, &mut code);
                format.encode_code(
                    tid,
                    &filter_hashes,
                    location,
                    &code,
                    Origin::Insert,
                    &mut entry,
                );
                if spilled {
                    page::mark_spilled(&mut entry);
                }
                insert_entry(index, &meta, list, &entry);
            };
            write_code(list, false);
            // After the row's first entry: a crash in between leaves the row in one list, which
            // scans handle like any row.
            if let Some(second) = second {
                cover_row(index, &cache, second, &stored, &filter_hashes);
                write_code(second, true);
            }
            return false;
        }
    }
    insert_entry(index, &meta, list, &entry);
    false
}

/// Widens list `list`'s bounds and filter summary to cover a row about to be added to it: before
/// the entry exists, so that a scan that can see the row also sees bounds and a summary that
/// cover it.
fn cover_row(
    index: pg_sys::Relation,
    cache: &IndexCache,
    list: u32,
    row: &[f32],
    filter_hashes: &[u64],
) {
    let meta = &cache.meta;
    if meta.radii {
        let dim = meta.dimensions as usize;
        let centroid = &cache.centroids[list as usize * dim..(list as usize + 1) * dim];
        let distance = bounds::member_distance(meta.metric, row, centroid);
        let norm = distance::norm_squared_f64(row).sqrt() as f32;
        widen_bounds(index, meta, list, distance, norm);
    }
    if !filter_hashes.is_empty() {
        add_to_summary(index, meta, list, filter_hashes);
    }
}

/// Grows list `list`'s radius and the index's largest norm to cover a new row, when they do not yet.
fn widen_bounds(index: pg_sys::Relation, meta: &Meta, list: u32, distance: f32, norm: f32) {
    if read_directory(index, meta, list).radius < distance {
        update_directory(index, meta, list, |entry| {
            let grows = entry.radius < distance;
            entry.radius = entry.radius.max(distance);
            grows
        });
    }
    if meta.max_norm < norm {
        let buffer = Locked::read(index, 0, Mode::Exclusive);
        let mut current = Meta::read(buffer.page()).or_corrupt(index);
        if current.max_norm < norm {
            current.max_norm = norm;
            let mut xlog = Xlog::start(index);
            current.write(xlog.register(&buffer));
            xlog.finish();
        }
    }
}

/// Changes one list's directory entry under the directory page's exclusive lock, in its own WAL record.
fn update_directory(
    index: pg_sys::Relation,
    meta: &Meta,
    list: u32,
    update: impl FnOnce(&mut DirectoryEntry) -> bool,
) {
    let (block, slot) = meta.directory_slot(list);
    let buffer = Locked::read(index, block, Mode::Exclusive);
    let mut entry = page::read_directory_entry(buffer.page(), slot).or_corrupt(index);
    if update(&mut entry) {
        let mut xlog = Xlog::start(index);
        page::write_directory_entry(xlog.register(&buffer), slot, entry);
        xlog.finish();
    }
}

/// Writes `entry` into chain `list` (a list, or a quantized index's vector chain); returns where.
pub fn insert_entry(index: pg_sys::Relation, meta: &Meta, list: u32, entry: &[u8]) -> Location {
    let mut directory = read_directory(index, meta, list);
    if directory.head == INVALID_BLOCK {
        if let Some(location) = create_first_page(index, meta, list, entry) {
            return location;
        }
        // Another backend started the list meanwhile: go on with its page.
        directory = read_directory(index, meta, list);
    }
    if directory.free_hint != INVALID_BLOCK {
        if let Some(location) = reuse_free_slot(index, meta, list, directory.free_hint, entry) {
            return location;
        }
    }
    append(index, meta, list, directory.tail, entry)
}

/// Starts a list's chain with a page holding `entry`. None if another backend started it first.
fn create_first_page(
    index: pg_sys::Relation,
    meta: &Meta,
    list: u32,
    entry: &[u8],
) -> Option<Location> {
    let (block, slot) = meta.directory_slot(list);
    let directory_buffer = Locked::read(index, block, Mode::Exclusive);
    let mut directory = page::read_directory_entry(directory_buffer.page(), slot).or_corrupt(index);
    if directory.head != INVALID_BLOCK {
        return None;
    }
    let new = Locked::extend(index, pg_sys::ForkNumber::MAIN_FORKNUM);
    let mut xlog = Xlog::start(index);
    let written =
        page::append_bytes(xlog.register_new(&new, PageKind::Entries, 0), entry).or_corrupt(index);
    whole(index, written, entry.len());
    directory.head = new.block();
    directory.tail = new.block();
    page::write_directory_entry(xlog.register(&directory_buffer), slot, directory);
    xlog.finish();
    Some(Location {
        block: new.block(),
        offset: 0,
    })
}

/// An entry that does not fit where it must (the build refuses formats whose entries exceed a page,
/// so only a damaged page gets here) is an error, never a silently shortened entry.
fn whole(index: pg_sys::Relation, written: usize, wanted: usize) {
    if written != wanted {
        super::storage::corrupted(
            index,
            page::FormatError::Corrupted("an entry does not fit its page"),
        );
    }
}

/// Appends at the list's tail, following `next` links if other inserters extended the chain since the
/// directory was read.
fn append(
    index: pg_sys::Relation,
    meta: &Meta,
    list: u32,
    tail_hint: u32,
    entry: &[u8],
) -> Location {
    let stride = entry.len();
    let mut block = tail_hint;
    let mut walk = ChainWalk::new(index);
    loop {
        walk.step();
        let tail = Locked::read(index, block, Mode::Exclusive);
        let special = page::read_special(tail.page()).or_corrupt(index);
        if special.next != INVALID_BLOCK {
            block = special.next;
            continue;
        }
        let free = page::free_space(tail.page()).or_corrupt(index);
        let location = Location {
            block,
            offset: (page::DATA_CAPACITY - free) as u16,
        };
        let mut xlog = Xlog::start(index);
        if free >= stride {
            let written = page::append_bytes(xlog.register(&tail), entry).or_corrupt(index);
            whole(index, written, stride);
            xlog.finish();
            return location;
        }
        // The entry starts in the free end of this page and continues on a new one (or, when
        // this page is exactly full, starts at the top of the new one).
        let new = Locked::extend(index, pg_sys::ForkNumber::MAIN_FORKNUM);
        let location = if free == 0 {
            Location {
                block: new.block(),
                offset: 0,
            }
        } else {
            location
        };
        let tail_page = xlog.register(&tail);
        page::append_bytes(tail_page, &entry[..free]).or_corrupt(index);
        page::set_next(tail_page, new.block());
        let new_page =
            xlog.register_new(&new, PageKind::Entries, ((stride - free) % stride) as u16);
        let written = page::append_bytes(new_page, &entry[free..]).or_corrupt(index);
        whole(index, written, stride - free);
        let (directory_block, slot) = meta.directory_slot(list);
        let directory_buffer = Locked::read(index, directory_block, Mode::Exclusive);
        let mut directory =
            page::read_directory_entry(directory_buffer.page(), slot).or_corrupt(index);
        directory.tail = new.block();
        page::write_directory_entry(xlog.register(&directory_buffer), slot, directory);
        xlog.finish();
        return location;
    }
}

/// Writes `entry` over a dead entry at or after the hinted page. None when none was found within
/// [`SLOT_SEARCH_PAGES`] pages; the hint then moves past the pages looked at.
fn reuse_free_slot(
    index: pg_sys::Relation,
    meta: &Meta,
    list: u32,
    hint: u32,
    entry: &[u8],
) -> Option<Location> {
    let format = meta.chain_format(list);
    let mut block = hint;
    for _ in 0..SLOT_SEARCH_PAGES {
        let buffer = Locked::read(index, block, Mode::Exclusive);
        let special = page::read_special(buffer.page()).or_corrupt(index);
        let dead = page::entry_starts(buffer.page(), format)
            .or_corrupt(index)
            .find(|offset| page::read_entry_header(buffer.page(), *offset).1);
        if let Some(offset) = dead {
            overwrite(index, format, &buffer, special.next, offset, entry);
            if block != hint {
                update_directory(index, meta, list, |d| {
                    std::mem::replace(&mut d.free_hint, block) == hint
                });
            }
            return Some(Location {
                block,
                offset: offset as u16,
            });
        }
        block = special.next;
        if block == INVALID_BLOCK {
            break;
        }
    }
    update_directory(index, meta, list, |d| {
        std::mem::replace(&mut d.free_hint, block) == hint
    });
    None
}

fn overwrite(
    index: pg_sys::Relation,
    format: EntryFormat,
    buffer: &Locked,
    next: u32,
    offset: usize,
    entry: &[u8],
) {
    let mut xlog = Xlog::start(index);
    if page::entry_spills(offset, format) {
        let next_buffer = Locked::read(index, next, Mode::Exclusive);
        let first = xlog.register(buffer);
        let second = xlog.register(&next_buffer);
        page::overwrite_entry(first, offset, Some(second), entry).or_corrupt(index);
        xlog.finish();
    } else {
        page::overwrite_entry(xlog.register(buffer), offset, None, entry).or_corrupt(index);
        xlog.finish();
    }
}
