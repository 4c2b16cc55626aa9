//! The on-page format of an ivfflat index.
//!
//! Every page is a standard PostgreSQL page (24-byte header, `pd_lower` marking the end of the used
//! data so that full-page images skip the free space) with a 16-byte special area:
//! `next block (u32), first entry offset (u16), page kind (u16), reserved (u32, u16), page id (u16)`.
//! All integers are little-endian.
//!
//! ```text
//! block 0                  meta page: magic, format version, dimensions, lists, metric, build id,
//!                          where the centroid and directory pages are
//! blocks 1 ..              centroid pages: whole f32 centroids back to back (read once per backend)
//! then                     directory pages: per list {head block, tail block, free-slot hint, 0}
//! then                     summary pages (only with filter columns): per list a bloom filter of
//!                          its entries' filter values (see `filter`)
//! then                     quantizer pages (only with quantizer = 'sq8'): the per-dimension grid
//! then                     entry pages: one chain per list, linked by `next`
//! ```
//!
//! With a quantizer (`quant`), a list's chain holds codes instead of vectors: `{heap block u32,
//! heap offset u16, flags u16, u64[filter columns], [vector location], code}`. With `rerank =
//! 'index'` the full vectors live in a second chain per list (directory slots `lists ..
//! 2 × lists`), as entries `{heap block, heap offset, flags, f32[dim]}` of the same stream format,
//! and each code entry holds its vector's location `{block u32, data offset u16, 0 u16}`. A probe
//! then streams only codes, and re-ranking reads the few vectors it needs by location.
//!
//! A list's entry pages hold one byte stream of fixed-size entries, `{heap block u32, heap offset u16,
//! flags u16, u64[filter columns], f32[dim]}`, and an entry may continue from the end of one page onto
//! the start of the next.
//! That is what makes the index dense: pgvector stores one whole IndexTuple per page slot and so
//! wastes 25-50% of each page at 512, 768, 1024 and 1536 dimensions; here every page is full except a
//! list's tail. Because entries never move (VACUUM only sets the dead flag, and inserts reuse dead
//! slots in place), the entry stream of a list only ever grows at its tail. `first entry offset` is the
//! offset in the page's data of the first entry that starts on that page, so an entry can be located
//! from its page alone (VACUUM and slot reuse need that); a scan follows the stream from the list head.

use crate::filter::{EntryHashes, Summary, SUMMARY_BYTES};
use crate::metric::Metric;
use crate::quant::{QuantizerKind, Rerank};
use thiserror::Error;

pub const BLOCK_SIZE: usize = 8192;
pub const PAGE_HEADER_SIZE: usize = 24;
pub const SPECIAL_SIZE: usize = 16;
/// Bytes of data per page, between the page header and the special area.
pub const DATA_CAPACITY: usize = BLOCK_SIZE - PAGE_HEADER_SIZE - SPECIAL_SIZE;
const _: () = assert!(DATA_CAPACITY.is_multiple_of(8));
pub const INVALID_BLOCK: u32 = u32::MAX;
/// Identifies our pages in the last two bytes, like pg_filedump expects (pgvector's is 0xFF84).
pub const PAGE_ID: u16 = 0xFF85;
pub const MAGIC: u32 = 0x5049_5646; // "PIVF"
/// The format this pgivf writes. Version 1 is 0.1.0's entries `{heap TID, flags, f32[dim]}`; 0.2.0
/// and 0.3.0 added list radii, filter hashes in entries, quantized lists and spilling behind meta
/// page fields that 0.1.0 leaves zero, but still wrote 1, so a 0.1.0 binary would read their
/// entries as its own. Version 2 is that layout, written from 0.4.0 on: every binary before it
/// refuses it. Any later change of a page's or an entry's layout raises it again.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format this pgivf reads (version 1 indexes are read by the meta page's fields, as
/// 0.3.0 did).
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Size of an entry's header: heap block, heap offset, flags.
pub const ENTRY_HEADER_SIZE: usize = 8;
const FLAG_DEAD: u16 = 1;
/// The dead flag's bit in an entry's first 8 bytes read as one little-endian u64 (heap TID block
/// u32, offset u16, flags u16), for loops that read headers eight at a time.
pub const DEAD_BIT_IN_HEADER: u64 = (FLAG_DEAD as u64) << 48;
/// Set on entries written by inserts after the build (statistics tell drift from them).
const FLAG_INSERTED: u16 = 2;
/// Set on a row's second entry in an index that files rows under two lists (see `Meta::spill`).
const FLAG_SPILLED: u16 = 4;
const PD_LOWER: usize = 12;
const SPECIAL_START: usize = BLOCK_SIZE - SPECIAL_SIZE;
pub const DIRECTORY_ENTRY_SIZE: usize = 16;
pub const DIRECTORY_ENTRIES_PER_PAGE: usize = DATA_CAPACITY / DIRECTORY_ENTRY_SIZE;
/// Most lists an index may have (the `lists` option's upper bound, as in pgvector); a meta page
/// claiming more is corrupt, and trusting it would size the centroid cache from garbage.
pub const MAX_LISTS: u32 = 32768;
/// Most filter columns (PostgreSQL's INDEX_MAX_KEYS is 32, one of which is the vector).
pub const MAX_FILTER_COLUMNS: usize = 31;
pub const SUMMARIES_PER_PAGE: usize = DATA_CAPACITY / SUMMARY_BYTES;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    #[error("ivfflat index is not valid: bad magic number {0:#x}")]
    BadMagic(u32),
    #[error("ivfflat index has format version {0}, this pgivf reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}; REINDEX it")]
    UnsupportedVersion(u32),
    #[error("ivfflat index page is corrupted: {0}")]
    Corrupted(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum PageKind {
    Meta = 1,
    Centroids = 2,
    Directory = 3,
    Entries = 4,
    Summaries = 5,
    Quantizer = 6,
}

/// A heap tuple identifier (PostgreSQL's ItemPointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tid {
    pub block: u32,
    pub offset: u16,
}

/// Heap tuples per page at most (PostgreSQL's MaxHeapTuplesPerPage for 8 kB pages).
pub const MAX_HEAP_TUPLES_PER_PAGE: usize = 291;

impl Tid {
    /// Whether PostgreSQL could have given this heap TID: a real block, and a line pointer in
    /// 1..=MaxHeapTuplesPerPage.
    #[inline]
    pub fn is_valid_heap_tid(self) -> bool {
        self.block != INVALID_BLOCK
            && self.offset >= 1
            && self.offset as usize <= MAX_HEAP_TUPLES_PER_PAGE
    }

    /// Packs into a u64 that sorts like the TID, for top-k payloads.
    #[inline]
    pub fn to_u64(self) -> u64 {
        ((self.block as u64) << 16) | self.offset as u64
    }

    #[inline]
    pub fn from_u64(packed: u64) -> Self {
        Tid {
            block: (packed >> 16) as u32,
            offset: packed as u16,
        }
    }
}

/// The special area of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Special {
    pub next: u32,
    /// Data offset of the first entry that starts on this page (entry pages only).
    pub first_entry: u16,
    pub kind: PageKind,
}

#[inline]
fn get_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}
#[inline]
fn get_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}
#[inline]
fn get_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}
fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}
fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}
fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// Writes the special area. The page must already be initialised by PostgreSQL's `PageInit` with
/// `SPECIAL_SIZE` bytes of special space.
pub fn write_special(page: &mut [u8], special: Special) {
    let s = SPECIAL_START;
    put_u32(page, s, special.next);
    put_u16(page, s + 4, special.first_entry);
    put_u16(page, s + 6, special.kind as u16);
    page[s + 8..s + 14].fill(0);
    put_u16(page, s + 14, PAGE_ID);
}

#[inline]
pub fn read_special(page: &[u8]) -> Result<Special, FormatError> {
    check_page_len(page)?;
    let s = SPECIAL_START;
    if get_u16(page, s + 14) != PAGE_ID {
        return Err(FormatError::Corrupted("page is not an ivfflat page"));
    }
    let kind = match get_u16(page, s + 6) {
        1 => PageKind::Meta,
        2 => PageKind::Centroids,
        3 => PageKind::Directory,
        4 => PageKind::Entries,
        5 => PageKind::Summaries,
        6 => PageKind::Quantizer,
        _ => return Err(FormatError::Corrupted("unknown page kind")),
    };
    Ok(Special {
        next: get_u32(page, s),
        first_entry: get_u16(page, s + 4),
        kind,
    })
}

pub fn set_next(page: &mut [u8], next: u32) {
    put_u32(page, SPECIAL_START, next);
}

fn check_page_len(page: &[u8]) -> Result<(), FormatError> {
    if page.len() != BLOCK_SIZE {
        return Err(FormatError::Corrupted("page has the wrong size"));
    }
    Ok(())
}

/// Bytes of data in use on the page (from `pd_lower`).
#[inline]
pub fn used(page: &[u8]) -> Result<usize, FormatError> {
    check_page_len(page)?;
    let lower = get_u16(page, PD_LOWER) as usize;
    if !(PAGE_HEADER_SIZE..=PAGE_HEADER_SIZE + DATA_CAPACITY).contains(&lower) {
        return Err(FormatError::Corrupted("pd_lower out of range"));
    }
    Ok(lower - PAGE_HEADER_SIZE)
}

pub fn set_used(page: &mut [u8], used: usize) {
    debug_assert!(used <= DATA_CAPACITY);
    put_u16(page, PD_LOWER, (PAGE_HEADER_SIZE + used) as u16);
}

#[inline]
pub fn data(page: &[u8]) -> &[u8] {
    &page[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + DATA_CAPACITY]
}

pub fn data_mut(page: &mut [u8]) -> &mut [u8] {
    &mut page[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + DATA_CAPACITY]
}

/// Reinterprets little-endian f32 bytes without copying when they are aligned (they always are on
/// PostgreSQL buffers: pages are aligned and every offset we use is a multiple of 4), copying into
/// `scratch` otherwise.
pub fn floats<'a>(bytes: &'a [u8], scratch: &'a mut Vec<f32>) -> &'a [f32] {
    debug_assert_eq!(bytes.len() % 4, 0);
    if cfg!(target_endian = "little")
        && (bytes.as_ptr() as usize).is_multiple_of(std::mem::align_of::<f32>())
    {
        // SAFETY: the pointer is aligned for f32, the length is a whole number of f32s inside
        // `bytes`, every bit pattern is a valid f32, and the result borrows `bytes`.
        #[allow(unsafe_code)]
        unsafe {
            return std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), bytes.len() / 4);
        }
    }
    scratch.clear();
    scratch.extend(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))),
    );
    scratch
}

fn put_floats(out: &mut [u8], values: &[f32]) {
    for (chunk, value) in out.chunks_exact_mut(4).zip(values) {
        chunk.copy_from_slice(&value.to_le_bytes());
    }
}

/// The meta page's content.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meta {
    pub dimensions: u32,
    pub lists: u32,
    pub metric: Metric,
    /// Random per build: lets backends tell a cached copy of the centroids from a rebuilt index.
    pub build_id: u64,
    pub centroid_start: u32,
    pub centroid_pages: u32,
    pub directory_start: u32,
    pub directory_pages: u32,
    /// Rows indexed by the build (for statistics).
    pub rows_at_build: u64,
    /// Scalar key columns after the vector, whose value hashes each entry carries.
    pub filter_columns: u32,
    /// The lists' filter summaries (none without filter columns).
    pub summary_start: u32,
    pub summary_pages: u32,
    /// Whether lists keep their radius in the directory (indexes built before radii existed do
    /// not: a scan then cannot bound any list).
    pub radii: bool,
    /// Largest norm of any row the index ever held (for inner-product bounds).
    pub max_norm: f32,
    /// Whether each row of this quantized index also has a code in a second list
    /// (`kmeans::Spiller`), flagged spilled; scans re-rank a row once however many of its codes
    /// they meet.
    pub spill: bool,
    /// What the lists hold (indexes built before quantizers hold vectors: zero bytes read as none).
    pub quantizer: QuantizerKind,
    /// With a quantizer, where the full vectors for re-ranking are.
    pub rerank: Rerank,
    /// The quantizer's parameter pages (SQ8's grid; none for RaBitQ).
    pub quantizer_start: u32,
    pub quantizer_pages: u32,
    /// RaBitQ's rotation seed.
    pub quantizer_seed: u64,
}

/// Indexes written before filter columns existed have a 56-byte meta page, before radii a 64-byte
/// one, and before quantizers a 72-byte one; the bytes after it are zero there, which reads as no
/// filter columns, no summary pages, no radii and no quantizer.
const META_SIZE: usize = 96;
const META_FLAG_RADII: u32 = 1;
const META_FLAG_SPILL: u32 = 2;

/// Where each meta page field lies in the page's data; every field is 4 bytes but for the three
/// u64s. Both [`Meta::write`] and [`Meta::read`] go by this table.
mod meta_field {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const DIMENSIONS: usize = 8;
    pub const LISTS: usize = 12;
    pub const METRIC: usize = 16;
    pub const FILTER_COLUMNS: usize = 20;
    pub const BUILD_ID: usize = 24;
    pub const CENTROID_START: usize = 32;
    pub const CENTROID_PAGES: usize = 36;
    pub const DIRECTORY_START: usize = 40;
    pub const DIRECTORY_PAGES: usize = 44;
    pub const ROWS_AT_BUILD: usize = 48;
    pub const SUMMARY_START: usize = 56;
    pub const SUMMARY_PAGES: usize = 60;
    pub const FLAGS: usize = 64;
    pub const MAX_NORM: usize = 68;
    pub const QUANTIZER: usize = 72;
    pub const RERANK: usize = 76;
    pub const QUANTIZER_START: usize = 80;
    pub const QUANTIZER_PAGES: usize = 84;
    pub const QUANTIZER_SEED: usize = 88;
}

impl Meta {
    pub fn write(&self, page: &mut [u8]) {
        use meta_field::*;
        let d = data_mut(page);
        put_u32(d, MAGIC, crate::page::MAGIC);
        put_u32(d, VERSION, FORMAT_VERSION);
        put_u32(d, DIMENSIONS, self.dimensions);
        put_u32(d, LISTS, self.lists);
        put_u32(d, METRIC, self.metric.code());
        put_u32(d, FILTER_COLUMNS, self.filter_columns);
        put_u64(d, BUILD_ID, self.build_id);
        put_u32(d, CENTROID_START, self.centroid_start);
        put_u32(d, CENTROID_PAGES, self.centroid_pages);
        put_u32(d, DIRECTORY_START, self.directory_start);
        put_u32(d, DIRECTORY_PAGES, self.directory_pages);
        put_u64(d, ROWS_AT_BUILD, self.rows_at_build);
        put_u32(d, SUMMARY_START, self.summary_start);
        put_u32(d, SUMMARY_PAGES, self.summary_pages);
        let flags = if self.radii { META_FLAG_RADII } else { 0 }
            | if self.spill { META_FLAG_SPILL } else { 0 };
        put_u32(d, FLAGS, flags);
        put_u32(d, MAX_NORM, self.max_norm.to_bits());
        put_u32(d, QUANTIZER, self.quantizer.code());
        put_u32(d, RERANK, self.rerank as u8 as u32);
        put_u32(d, QUANTIZER_START, self.quantizer_start);
        put_u32(d, QUANTIZER_PAGES, self.quantizer_pages);
        put_u64(d, QUANTIZER_SEED, self.quantizer_seed);
        set_used(page, META_SIZE);
    }

    pub fn read(page: &[u8]) -> Result<Meta, FormatError> {
        use meta_field::*;
        let special = read_special(page)?;
        let d = data(page);
        let magic = get_u32(d, MAGIC);
        if magic != crate::page::MAGIC || special.kind != PageKind::Meta {
            return Err(FormatError::BadMagic(magic));
        }
        let version = get_u32(d, VERSION);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let flags = get_u32(d, FLAGS);
        // A build sets no other bit: one set elsewhere is a damaged page, which would otherwise
        // pass for a good one.
        if flags & !(META_FLAG_RADII | META_FLAG_SPILL) != 0 {
            return Err(FormatError::Corrupted("unknown meta page flags"));
        }
        let meta = Meta {
            dimensions: get_u32(d, DIMENSIONS),
            lists: get_u32(d, LISTS),
            metric: Metric::from_code(get_u32(d, METRIC))
                .ok_or(FormatError::Corrupted("unknown metric"))?,
            build_id: get_u64(d, BUILD_ID),
            centroid_start: get_u32(d, CENTROID_START),
            centroid_pages: get_u32(d, CENTROID_PAGES),
            directory_start: get_u32(d, DIRECTORY_START),
            directory_pages: get_u32(d, DIRECTORY_PAGES),
            rows_at_build: get_u64(d, ROWS_AT_BUILD),
            filter_columns: get_u32(d, FILTER_COLUMNS),
            summary_start: get_u32(d, SUMMARY_START),
            summary_pages: get_u32(d, SUMMARY_PAGES),
            radii: flags & META_FLAG_RADII != 0,
            spill: flags & META_FLAG_SPILL != 0,
            max_norm: f32::from_bits(get_u32(d, MAX_NORM)),
            quantizer: QuantizerKind::from_code(get_u32(d, QUANTIZER))
                .ok_or(FormatError::Corrupted("unknown quantizer"))?,
            rerank: match get_u32(d, RERANK) {
                0 => Rerank::Index,
                1 => Rerank::Heap,
                _ => return Err(FormatError::Corrupted("unknown rerank source")),
            },
            quantizer_start: get_u32(d, QUANTIZER_START),
            quantizer_pages: get_u32(d, QUANTIZER_PAGES),
            quantizer_seed: get_u64(d, QUANTIZER_SEED),
        };
        let dims_ok = (1..=crate::VECTOR_MAX_DIM as u32).contains(&meta.dimensions);
        let lists_ok = (1..=MAX_LISTS).contains(&meta.lists);
        let pages_ok = meta.centroid_pages as u64
            == div_ceil_u64(
                meta.lists as u64 * meta.dimensions.max(1) as u64,
                centroid_floats_per_page(meta.dimensions as usize) as u64,
            )
            && meta.directory_pages as u64
                == div_ceil_u64(meta.chains() as u64, DIRECTORY_ENTRIES_PER_PAGE as u64)
            && meta.quantizer_pages as u64
                == parameter_pages(meta.quantizer.parameter_floats(meta.dimensions as usize))
                    as u64
            && meta.summary_pages as u64
                == if meta.filter_columns == 0 {
                    0
                } else {
                    div_ceil_u64(meta.lists as u64, SUMMARIES_PER_PAGE as u64)
                };
        let spill_ok = !meta.spill || !meta.quantizer.is_none();
        let filters_ok = spill_ok
            && meta.filter_columns as usize <= MAX_FILTER_COLUMNS
            && meta.max_norm.is_finite()
            && meta.max_norm >= 0.0;
        // Block numbers are u32: a range that runs past the last one cannot be read (and would
        // overflow `start + pages`).
        let blocks_ok = meta
            .centroid_start
            .checked_add(meta.centroid_pages)
            .is_some()
            && meta
                .directory_start
                .checked_add(meta.directory_pages)
                .is_some()
            && meta.summary_start.checked_add(meta.summary_pages).is_some()
            && meta
                .quantizer_start
                .checked_add(meta.quantizer_pages)
                .is_some();
        if !dims_ok || !filters_ok || !lists_ok || !pages_ok || !blocks_ok {
            return Err(FormatError::Corrupted("meta page fields are inconsistent"));
        }
        Ok(meta)
    }

    /// The format of the entries of lists `0 .. lists` (vectors, or codes with a quantizer).
    pub fn entry_format(&self) -> EntryFormat {
        EntryFormat {
            dim: self.dimensions as usize,
            filters: self.filter_columns as usize,
            code_bytes: self.quantizer.code_bytes(self.dimensions as usize),
            located: self.keeps_vectors(),
        }
    }

    /// Whether a quantized index keeps full vectors in chains of their own.
    pub fn keeps_vectors(&self) -> bool {
        !self.quantizer.is_none() && self.rerank == Rerank::Index
    }

    /// Directory slots: one chain per list, and one more per list for the vectors of a quantized
    /// index that re-ranks from the index.
    pub fn chains(&self) -> u32 {
        if self.keeps_vectors() {
            2 * self.lists
        } else {
            self.lists
        }
    }

    /// The format of chain `chain`'s entries.
    pub fn chain_format(&self, chain: u32) -> EntryFormat {
        if chain < self.lists {
            self.entry_format()
        } else {
            EntryFormat::vectors(self.dimensions as usize)
        }
    }

    /// The first block after the structure pages (meta, centroids, directory, summaries, quantizer).
    pub fn structure_end(&self) -> u32 {
        (self.directory_start + self.directory_pages)
            .max(self.summary_start + self.summary_pages)
            .max(self.quantizer_start + self.quantizer_pages)
    }

    /// Summary page and slot of `list` (only with filter columns).
    pub fn summary_slot(&self, list: u32) -> (u32, usize) {
        let per_page = SUMMARIES_PER_PAGE as u32;
        (
            self.summary_start + list / per_page,
            (list % per_page) as usize,
        )
    }

    /// Block and slot of list `list`'s directory entry.
    pub fn directory_slot(&self, list: u32) -> (u32, usize) {
        let per_page = DIRECTORY_ENTRIES_PER_PAGE as u32;
        (
            self.directory_start + list / per_page,
            (list % per_page) as usize,
        )
    }
}

fn div_ceil_u64(a: u64, b: u64) -> u64 {
    if b == 0 {
        0
    } else {
        a.div_ceil(b)
    }
}

/// Pages of a quantizer's parameters (`Quantizer::parameters`), f32 values back to back across
/// pages.
pub fn parameter_pages(floats: usize) -> usize {
    (4 * floats).div_ceil(DATA_CAPACITY)
}

/// Writes page `number` of a quantizer's parameters.
pub fn write_quantizer_page(page: &mut [u8], values: &[f32], number: usize) {
    let per_page = DATA_CAPACITY / 4;
    let chunk =
        &values[(number * per_page).min(values.len())..((number + 1) * per_page).min(values.len())];
    put_floats(&mut data_mut(page)[..chunk.len() * 4], chunk);
    set_used(page, chunk.len() * 4);
}

/// Appends the grid values stored on a quantizer page to `out`.
pub fn read_quantizer_page(page: &[u8], out: &mut Vec<f32>) -> Result<(), FormatError> {
    if read_special(page)?.kind != PageKind::Quantizer {
        return Err(FormatError::Corrupted("expected a quantizer page"));
    }
    let used = used(page)?;
    let mut scratch = Vec::new();
    out.extend_from_slice(floats(&data(page)[..used - used % 4], &mut scratch));
    Ok(())
}

/// Centroid values on one centroid page. The centroids are one stream of floats over the
/// centroid pages: whole centroids on each page when one fits (up to 2,038 dimensions, as 0.1.0
/// wrote them), else full pages, a centroid going on over the next.
pub fn centroid_floats_per_page(dim: usize) -> usize {
    let dim = dim.max(1);
    match DATA_CAPACITY / (4 * dim) {
        0 => DATA_CAPACITY / 4,
        whole => whole * dim,
    }
}

/// Centroid pages of `lists` centroids of `dim` dimensions.
pub fn centroid_pages(lists: usize, dim: usize) -> usize {
    (lists * dim.max(1)).div_ceil(centroid_floats_per_page(dim))
}

/// Writes centroid page `page_number` of `all` (the centroids, row-major, `dim` wide).
pub fn write_centroids(page: &mut [u8], all: &[f32], dim: usize, page_number: usize) {
    let per_page = centroid_floats_per_page(dim);
    let first = (page_number * per_page).min(all.len());
    let values = &all[first..(first + per_page).min(all.len())];
    put_floats(&mut data_mut(page)[..values.len() * 4], values);
    set_used(page, values.len() * 4);
}

/// Appends the centroids stored on a centroid page to `out`.
pub fn read_centroids(page: &[u8], out: &mut Vec<f32>) -> Result<(), FormatError> {
    if read_special(page)?.kind != PageKind::Centroids {
        return Err(FormatError::Corrupted("expected a centroid page"));
    }
    let used = used(page)?;
    let mut scratch = Vec::new();
    out.extend_from_slice(floats(&data(page)[..used - used % 4], &mut scratch));
    Ok(())
}

/// A list's directory entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DirectoryEntry {
    /// First entry page of the list.
    pub head: u32,
    /// Last entry page, where appends go (inserters follow `next` if it moved on).
    pub tail: u32,
    /// Earliest page that may hold a dead entry whose slot an insert can reuse, or INVALID_BLOCK.
    pub free_hint: u32,
    /// Largest distance from the centroid of any row the list ever held (see `bounds`); only
    /// meaningful when the meta page says radii are kept.
    pub radius: f32,
}

pub fn read_directory_entry(page: &[u8], slot: usize) -> Result<DirectoryEntry, FormatError> {
    if read_special(page)?.kind != PageKind::Directory {
        return Err(FormatError::Corrupted("expected a directory page"));
    }
    if slot >= DIRECTORY_ENTRIES_PER_PAGE {
        return Err(FormatError::Corrupted("directory slot out of range"));
    }
    let d = &data(page)[slot * DIRECTORY_ENTRY_SIZE..];
    Ok(DirectoryEntry {
        head: get_u32(d, 0),
        tail: get_u32(d, 4),
        free_hint: get_u32(d, 8),
        radius: f32::from_bits(get_u32(d, 12)),
    })
}

pub fn write_directory_entry(page: &mut [u8], slot: usize, entry: DirectoryEntry) {
    let d = &mut data_mut(page)[slot * DIRECTORY_ENTRY_SIZE..];
    put_u32(d, 0, entry.head);
    put_u32(d, 4, entry.tail);
    put_u32(d, 8, entry.free_hint);
    put_u32(d, 12, entry.radius.to_bits());
    let end = (slot + 1) * DIRECTORY_ENTRY_SIZE;
    if used(page).unwrap_or(0) < end {
        set_used(page, end);
    }
}

/// Who wrote an entry: the build, or an insert after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Build,
    Insert,
}

/// An entry's flag bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryFlags(u16);

impl EntryFlags {
    #[inline]
    pub fn is_dead(self) -> bool {
        self.0 & FLAG_DEAD != 0
    }

    /// A row's second entry, in the list it is spilled to.
    #[inline]
    pub fn is_spilled(self) -> bool {
        self.0 & FLAG_SPILLED != 0
    }

    pub fn origin(self) -> Origin {
        if self.0 & FLAG_INSERTED != 0 {
            Origin::Insert
        } else {
            Origin::Build
        }
    }
}

/// List `slot`'s summary on a summary page.
pub fn read_summary(page: &[u8], slot: usize) -> Result<Summary, FormatError> {
    if read_special(page)?.kind != PageKind::Summaries {
        return Err(FormatError::Corrupted("expected a summary page"));
    }
    if slot >= SUMMARIES_PER_PAGE {
        return Err(FormatError::Corrupted("summary slot out of range"));
    }
    Ok(Summary::from_bytes(
        &data(page)[slot * SUMMARY_BYTES..(slot + 1) * SUMMARY_BYTES],
    ))
}

pub fn write_summary(page: &mut [u8], slot: usize, summary: &Summary) {
    let d = &mut data_mut(page)[slot * SUMMARY_BYTES..(slot + 1) * SUMMARY_BYTES];
    d.copy_from_slice(&summary.bits);
    let end = (slot + 1) * SUMMARY_BYTES;
    if used(page).unwrap_or(0) < end {
        set_used(page, end);
    }
}

/// Where a vector entry starts: its first page and the offset in that page's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub block: u32,
    pub offset: u16,
}

/// Layout of the entries of one chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryFormat {
    pub dim: usize,
    /// Filter columns: one u64 value hash each, between the header and the vector.
    pub filters: usize,
    /// With a quantizer: bytes of the code that replaces the vector (0: the vector itself).
    pub code_bytes: usize,
    /// Whether entries hold the location of their full vector (codes re-ranked from the index).
    pub located: bool,
}

const LOCATION_SIZE: usize = 8;

impl EntryFormat {
    /// Plain vectors and no filter columns.
    pub fn vectors(dim: usize) -> Self {
        EntryFormat {
            dim,
            filters: 0,
            code_bytes: 0,
            located: false,
        }
    }

    /// Entry size, a multiple of 8 so that (with DATA_CAPACITY a multiple of 8 too) an entry's
    /// 8-byte header never straddles two pages: odd dimensions get 4 bytes of padding.
    #[inline]
    pub fn stride(&self) -> usize {
        self.vector_offset() + self.payload_bytes().next_multiple_of(8)
    }

    /// Where an entry's vector location is (with `located`): a u32 block and a u16 offset, in
    /// an 8-byte slot.
    #[inline]
    pub fn location_offset(&self) -> usize {
        ENTRY_HEADER_SIZE + 8 * self.filters
    }

    #[inline]
    fn vector_offset(&self) -> usize {
        self.location_offset() + if self.located { LOCATION_SIZE } else { 0 }
    }

    #[inline]
    fn payload_bytes(&self) -> usize {
        if self.code_bytes > 0 {
            self.code_bytes
        } else {
            4 * self.dim
        }
    }

    fn vector_bytes(&self) -> usize {
        if self.code_bytes > 0 {
            0
        } else {
            4 * self.dim
        }
    }

    /// Encodes a code entry into `out` (exactly `stride()` bytes).
    pub fn encode_code(
        &self,
        tid: Tid,
        filter_hashes: &[u64],
        location: Option<Location>,
        code: &[u8],
        origin: Origin,
        out: &mut [u8],
    ) {
        debug_assert_eq!(code.len(), self.code_bytes);
        self.encode_header(tid, filter_hashes, origin, out);
        if let Some(location) = location {
            self.set_location(out, location);
        }
        let start = self.vector_offset();
        out[start..start + code.len()].copy_from_slice(code);
    }

    /// Sets the vector location of an encoded code entry.
    pub fn set_location(&self, entry: &mut [u8], location: Location) {
        debug_assert!(self.located);
        let at = self.location_offset();
        put_u32(entry, at, location.block);
        put_u16(entry, at + 4, location.offset);
        put_u16(entry, at + 6, 0);
    }

    /// Where an entry's code lies in its bytes.
    #[inline]
    pub fn code_range(&self) -> std::ops::Range<usize> {
        self.vector_offset()..self.vector_offset() + self.code_bytes
    }

    /// The vector location of an encoded code entry.
    #[inline]
    pub fn location_of(&self, entry: &[u8]) -> Location {
        let at = self.location_offset();
        Location {
            block: get_u32(entry, at),
            offset: get_u16(entry, at + 4),
        }
    }

    fn encode_header(&self, tid: Tid, filter_hashes: &[u64], origin: Origin, out: &mut [u8]) {
        debug_assert_eq!(filter_hashes.len(), self.filters);
        put_u32(out, 0, tid.block);
        put_u16(out, 4, tid.offset);
        let flags = match origin {
            Origin::Build => 0,
            Origin::Insert => FLAG_INSERTED,
        };
        put_u16(out, 6, flags);
        out[ENTRY_HEADER_SIZE..self.stride()].fill(0);
        for (i, hash) in filter_hashes.iter().enumerate() {
            put_u64(out, ENTRY_HEADER_SIZE + 8 * i, *hash);
        }
    }

    /// Encodes an entry into `out` (exactly `stride()` bytes).
    pub fn encode(
        &self,
        tid: Tid,
        filter_hashes: &[u64],
        vector: &[f32],
        origin: Origin,
        out: &mut [u8],
    ) {
        debug_assert_eq!(vector.len(), self.dim);
        debug_assert_eq!(self.code_bytes, 0);
        self.encode_header(tid, filter_hashes, origin, out);
        let start = self.vector_offset();
        put_floats(&mut out[start..start + self.vector_bytes()], vector);
    }
}

/// One entry as a list scan sees it.
#[derive(Debug, Clone, Copy)]
pub struct EntryRef<'a> {
    pub tid: Tid,
    pub flags: EntryFlags,
    /// One hash per filter column.
    pub filters: EntryHashes<'a>,
    /// The vector (empty in code entries).
    pub vector: &'a [f32],
    /// The code (empty in vector entries).
    pub code: &'a [u8],
    /// Where the full vector is (code entries re-ranked from the index).
    pub location: Option<Location>,
}

/// The header of the entry at `offset` in `bytes`.
#[inline]
pub fn entry_header(bytes: &[u8], offset: usize) -> (Tid, EntryFlags) {
    let tid = Tid {
        block: get_u32(bytes, offset),
        offset: get_u16(bytes, offset + 4),
    };
    (tid, EntryFlags(get_u16(bytes, offset + 6)))
}

/// Offsets (in the page's data) of the entries that start on this entry page.
pub fn entry_starts(
    page: &[u8],
    format: EntryFormat,
) -> Result<impl Iterator<Item = usize>, FormatError> {
    let special = read_special(page)?;
    if special.kind != PageKind::Entries {
        return Err(FormatError::Corrupted("expected an entry page"));
    }
    let used = used(page)?;
    let first = special.first_entry as usize;
    if !first.is_multiple_of(8) || (first > used && used > 0) {
        return Err(FormatError::Corrupted("first entry offset out of range"));
    }
    let stride = format.stride();
    Ok((first..used).step_by(stride).filter(move |_| stride > 0))
}

/// Heap TID and dead flag of the entry starting at data offset `offset` of an entry page.
pub fn read_entry_header(page: &[u8], offset: usize) -> (Tid, bool) {
    let (tid, flags) = entry_header(data(page), offset);
    (tid, flags.is_dead())
}

/// Marks the entry starting at data offset `offset` dead (its header is always on its first page).
pub fn mark_dead(page: &mut [u8], offset: usize) {
    let d = data_mut(page);
    let flags = get_u16(d, offset + 6) | FLAG_DEAD;
    put_u16(d, offset + 6, flags);
}

/// Flags an encoded entry (before it is written) as a row's spilled second entry.
pub fn mark_spilled(entry: &mut [u8]) {
    let flags = get_u16(entry, 6) | FLAG_SPILLED;
    put_u16(entry, 6, flags);
}

/// Free bytes at the end of an entry page.
pub fn free_space(page: &[u8]) -> Result<usize, FormatError> {
    Ok(DATA_CAPACITY - used(page)?)
}

/// Appends `bytes` (all of them, or as many as fit) to an entry page; returns how many were written.
pub fn append_bytes(page: &mut [u8], bytes: &[u8]) -> Result<usize, FormatError> {
    let used = used(page)?;
    let n = bytes.len().min(DATA_CAPACITY - used);
    data_mut(page)[used..used + n].copy_from_slice(&bytes[..n]);
    set_used(page, used + n);
    Ok(n)
}

/// Overwrites the entry that starts at `offset` on `first` with `entry` (a dead slot being reused).
/// `second` must be the next page of the chain when the entry continues there.
pub fn overwrite_entry(
    first: &mut [u8],
    offset: usize,
    second: Option<&mut [u8]>,
    entry: &[u8],
) -> Result<(), FormatError> {
    let on_first = (DATA_CAPACITY - offset).min(entry.len());
    data_mut(first)[offset..offset + on_first].copy_from_slice(&entry[..on_first]);
    if on_first < entry.len() {
        let second = second.ok_or(FormatError::Corrupted("entry continues past the last page"))?;
        let rest = entry.len() - on_first;
        if used(second)? < rest {
            return Err(FormatError::Corrupted("entry continuation is missing"));
        }
        data_mut(second)[..rest].copy_from_slice(&entry[on_first..]);
    }
    Ok(())
}

/// Whether the entry starting at `offset` continues onto the next page.
pub fn entry_spills(offset: usize, format: EntryFormat) -> bool {
    offset + format.stride() > DATA_CAPACITY
}

/// Reads the vector entry at `location`: `first` is its page and `second` the next page of its
/// chain when the entry continues there (see [`vector_spills`]). Returns the entry's heap TID,
/// whether it is dead, and the vector: borrowed from `first` when it lies whole there (and the page
/// is aligned), else assembled in `scratch`.
pub fn vector_at<'a>(
    first: &'a [u8],
    location: Location,
    second: Option<&[u8]>,
    dim: usize,
    scratch: &'a mut Vec<f32>,
) -> Result<(Tid, bool, &'a [f32]), FormatError> {
    let stride = EntryFormat::vectors(dim).stride();
    let offset = location.offset as usize;
    if read_special(first)?.kind != PageKind::Entries
        || !offset.is_multiple_of(8)
        || offset + ENTRY_HEADER_SIZE > used(first)?
    {
        return Err(FormatError::Corrupted("a vector location is out of range"));
    }
    let on_first = (used(first)? - offset).min(stride);
    if on_first == stride {
        let bytes = &data(first)[offset..offset + stride];
        let (tid, flags) = entry_header(bytes, 0);
        let values = floats(
            &bytes[ENTRY_HEADER_SIZE..ENTRY_HEADER_SIZE + 4 * dim],
            scratch,
        );
        return Ok((tid, flags.is_dead(), values));
    }
    let second = second.ok_or(FormatError::Corrupted("vector continues past its page"))?;
    let rest = stride - on_first;
    if read_special(second)?.kind != PageKind::Entries || used(second)? < rest {
        return Err(FormatError::Corrupted("vector continuation is missing"));
    }
    let mut bytes = Vec::with_capacity(stride);
    bytes.extend_from_slice(&data(first)[offset..offset + on_first]);
    bytes.extend_from_slice(&data(second)[..rest]);
    let (tid, flags) = entry_header(&bytes, 0);
    scratch.clear();
    scratch.extend(
        bytes[ENTRY_HEADER_SIZE..ENTRY_HEADER_SIZE + 4 * dim]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))),
    );
    Ok((tid, flags.is_dead(), scratch))
}

/// [`vector_at`], with the vector copied into `out`.
pub fn read_vector_at(
    first: &[u8],
    location: Location,
    second: Option<&[u8]>,
    dim: usize,
    out: &mut Vec<f32>,
) -> Result<(Tid, bool), FormatError> {
    let mut scratch = Vec::new();
    let (tid, dead, values) = vector_at(first, location, second, dim, &mut scratch)?;
    out.clear();
    out.extend_from_slice(values);
    Ok((tid, dead))
}

/// What reading the vector entry at `location` touches on the page at `location.block`: the page
/// header, the special area (both checked first) and the entry's part on that page, as byte ranges
/// of the page, for prefetching. Any location gives ranges inside the page.
pub fn vector_touches(location: Location, dim: usize) -> [std::ops::Range<usize>; 3] {
    let end = PAGE_HEADER_SIZE + DATA_CAPACITY;
    let start = (PAGE_HEADER_SIZE + location.offset as usize).min(end);
    let entry_end = (start + EntryFormat::vectors(dim).stride()).min(end);
    [0..PAGE_HEADER_SIZE, end..BLOCK_SIZE, start..entry_end]
}

/// Whether the vector entry at `location` continues onto the next page.
pub fn vector_spills(location: Location, dim: usize) -> bool {
    entry_spills(location.offset as usize, EntryFormat::vectors(dim))
}

/// The location of the `ordinal`-th entry of a chain whose pages are `pages`, in chain order.
pub fn location_in_chain(pages: &[u32], ordinal: usize, format: EntryFormat) -> Option<Location> {
    let position = ordinal * format.stride();
    Some(Location {
        block: *pages.get(position / DATA_CAPACITY)?,
        offset: (position % DATA_CAPACITY) as u16,
    })
}

/// Follows a list's entry stream page by page, reassembling entries that cross a page boundary.
#[derive(Debug, Default)]
pub struct StreamReader {
    carry: Vec<u8>,
    scratch: Vec<f32>,
}

/// The entry of `format` whose bytes start at `offset` in `bytes`.
fn entry_at<'a>(
    bytes: &'a [u8],
    offset: usize,
    format: EntryFormat,
    scratch: &'a mut Vec<f32>,
) -> EntryRef<'a> {
    let (tid, flags) = entry_header(bytes, offset);
    let filters_at = offset + ENTRY_HEADER_SIZE;
    let vector_at = offset + format.vector_offset();
    let location_at = offset + format.location_offset();
    EntryRef {
        tid,
        flags,
        filters: EntryHashes::new(&bytes[filters_at..filters_at + 8 * format.filters]),
        vector: floats(
            &bytes[vector_at..vector_at + format.vector_bytes()],
            scratch,
        ),
        code: &bytes[vector_at..vector_at + format.code_bytes],
        location: format.located.then(|| Location {
            block: get_u32(bytes, location_at),
            offset: get_u16(bytes, location_at + 4),
        }),
    }
}

impl StreamReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Call before the first page of a list.
    pub fn reset(&mut self) {
        self.carry.clear();
    }

    /// Feeds the next page of the chain; `visit` is called for every entry that ends on this page,
    /// in stream order.
    pub fn feed(
        &mut self,
        page: &[u8],
        format: EntryFormat,
        mut visit: impl FnMut(EntryRef<'_>),
    ) -> Result<(), FormatError> {
        let special = read_special(page)?;
        if special.kind != PageKind::Entries {
            return Err(FormatError::Corrupted("expected an entry page"));
        }
        let used = used(page)?;
        let bytes = &data(page)[..used];
        crate::distance::prefetch(bytes);
        let stride = format.stride();
        let mut pos = 0;
        if !self.carry.is_empty() {
            let need = stride - self.carry.len();
            if special.first_entry as usize != need.min(used) && used >= need {
                return Err(FormatError::Corrupted("entry continuation does not match"));
            }
            let take = need.min(used);
            self.carry.extend_from_slice(&bytes[..take]);
            pos = take;
            if self.carry.len() == stride {
                visit(entry_at(&self.carry, 0, format, &mut self.scratch));
                self.carry.clear();
            }
        } else if special.first_entry != 0 {
            return Err(FormatError::Corrupted(
                "list does not start at an entry boundary",
            ));
        }
        while pos + stride <= used {
            visit(entry_at(bytes, pos, format, &mut self.scratch));
            pos += stride;
        }
        self.carry.extend_from_slice(&bytes[pos..]);
        Ok(())
    }

    /// Like [`feed`](Self::feed), but hands out raw entry bytes, as runs of whole entries (a
    /// multiple of `stride()` long): for scans that decode only the parts they need, in batches.
    pub fn feed_raw(
        &mut self,
        page: &[u8],
        format: EntryFormat,
        mut visit: impl FnMut(&[u8]),
    ) -> Result<(), FormatError> {
        let special = read_special(page)?;
        if special.kind != PageKind::Entries {
            return Err(FormatError::Corrupted("expected an entry page"));
        }
        let used = used(page)?;
        // No whole-page prefetch here: code entries take long enough to decode that the caller's
        // prefetch of the next page, and the CPU's own, keep up.
        let bytes = &data(page)[..used];
        let stride = format.stride();
        let mut pos = 0;
        if !self.carry.is_empty() {
            let need = stride - self.carry.len();
            if special.first_entry as usize != need.min(used) && used >= need {
                return Err(FormatError::Corrupted("entry continuation does not match"));
            }
            let take = need.min(used);
            self.carry.extend_from_slice(&bytes[..take]);
            pos = take;
            if self.carry.len() == stride {
                visit(&self.carry);
                self.carry.clear();
            }
        } else if special.first_entry != 0 {
            return Err(FormatError::Corrupted(
                "list does not start at an entry boundary",
            ));
        }
        let whole = (used - pos) / stride * stride;
        if whole > 0 {
            visit(&bytes[pos..pos + whole]);
        }
        self.carry.extend_from_slice(&bytes[pos + whole..]);
        Ok(())
    }

    /// True when the stream ended in the middle of an entry (only valid after the last page).
    pub fn has_partial_entry(&self) -> bool {
        !self.carry.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_page(kind: PageKind, first_entry: u16) -> Vec<u8> {
        // What PostgreSQL's PageInit leaves: a zeroed page with pd_lower/pd_upper/pd_special set.
        let mut page = vec![0u8; BLOCK_SIZE];
        put_u16(&mut page, PD_LOWER, PAGE_HEADER_SIZE as u16);
        put_u16(&mut page, 14, SPECIAL_START as u16);
        put_u16(&mut page, 16, SPECIAL_START as u16);
        write_special(
            &mut page,
            Special {
                next: INVALID_BLOCK,
                first_entry,
                kind,
            },
        );
        page
    }

    /// Appends entries to a chain of in-memory pages the way the index does.
    fn append(chain: &mut Vec<Vec<u8>>, format: EntryFormat, tid: Tid, vector: &[f32]) {
        let mut entry = vec![0u8; format.stride()];
        format.encode(
            tid,
            &filter_hashes(format, tid),
            vector,
            Origin::Build,
            &mut entry,
        );
        if chain.is_empty() {
            chain.push(new_page(PageKind::Entries, 0));
        }
        let tail = chain.last_mut().unwrap();
        let written = append_bytes(tail, &entry).unwrap();
        if written < entry.len() {
            let rest = &entry[written..];
            let mut page = new_page(PageKind::Entries, (rest.len() % format.stride()) as u16);
            append_bytes(&mut page, rest).unwrap();
            chain.push(page);
        }
    }

    #[test]
    fn code_entries_locate_their_vectors_across_page_boundaries() {
        for (dim, quantizer) in [
            (384, crate::quant::rabitq::KIND),
            (700, crate::quant::sq8::KIND),
            (3, crate::quant::sq8::KIND),
        ] {
            let vector_format = EntryFormat::vectors(dim);
            let code_format = EntryFormat {
                dim,
                filters: 2,
                code_bytes: quantizer.code_bytes(dim),
                located: true,
            };
            assert!(code_format.stride() < vector_format.stride() || dim < 8);
            let (mut vectors, mut codes) = (Vec::new(), Vec::new());
            let rows = 3 * BLOCK_SIZE / vector_format.stride() + 5;
            for i in 0..rows {
                let tid = Tid {
                    block: i as u32,
                    offset: 1 + (i % 200) as u16,
                };
                append(&mut vectors, vector_format, tid, &vector(i, dim));
            }
            // Pages get block numbers 100, 101, ...: the ordinal of a vector gives its location.
            let pages: Vec<u32> = (0..vectors.len() as u32).map(|p| 100 + p).collect();
            for i in 0..rows {
                let tid = Tid {
                    block: i as u32,
                    offset: 1 + (i % 200) as u16,
                };
                let location = location_in_chain(&pages, i, vector_format).unwrap();
                let code: Vec<u8> = (0..code_format.code_bytes).map(|b| (b + i) as u8).collect();
                let mut entry = vec![0u8; code_format.stride()];
                code_format.encode_code(
                    tid,
                    &filter_hashes(code_format, tid),
                    Some(location),
                    &code,
                    Origin::Insert,
                    &mut entry,
                );
                assert_eq!(code_format.location_of(&entry), location);
                if codes.is_empty() {
                    codes.push(new_page(PageKind::Entries, 0));
                }
                let written = append_bytes(codes.last_mut().unwrap(), &entry).unwrap();
                if written < entry.len() {
                    let rest = &entry[written..];
                    let mut page = new_page(
                        PageKind::Entries,
                        (rest.len() % code_format.stride()) as u16,
                    );
                    append_bytes(&mut page, rest).unwrap();
                    codes.push(page);
                }
            }
            let mut reader = StreamReader::new();
            let mut seen = 0;
            let mut out = Vec::new();
            for page in &codes {
                reader
                    .feed(page, code_format, |entry| {
                        assert!(entry.vector.is_empty());
                        assert_eq!(entry.code[0], seen as u8);
                        assert_eq!(
                            entry.filters.to_vec(),
                            filter_hashes(code_format, entry.tid)
                        );
                        let location = entry.location.unwrap();
                        let index = (location.block - 100) as usize;
                        let second = vector_spills(location, dim).then(|| &vectors[index + 1][..]);
                        let (owner, dead) =
                            read_vector_at(&vectors[index], location, second, dim, &mut out)
                                .unwrap();
                        assert_eq!((owner, dead), (entry.tid, false));
                        assert_eq!(out, vector(seen, dim));
                        seen += 1;
                    })
                    .unwrap();
            }
            assert_eq!(seen, rows);
            // A location past the data, or off an entry boundary, is corruption, not a panic.
            let bad = Location {
                block: 100,
                offset: (DATA_CAPACITY - 8) as u16,
            };
            assert!(
                read_vector_at(&vectors[0], bad, None, dim, &mut out).is_err()
                    || vector_format.stride() <= 8
            );
            let odd = Location {
                block: 100,
                offset: 4,
            };
            assert!(read_vector_at(&vectors[0], odd, None, dim, &mut out).is_err());
        }
    }

    /// Distinct per column and row, so that a misplaced byte shows.
    fn filter_hashes(format: EntryFormat, tid: Tid) -> Vec<u64> {
        (0..format.filters)
            .map(|c| crate::filter::hash_integer(c, i64::from(tid.block)))
            .collect()
    }

    /// Every entry's TID, dead flag and vector; checks each entry's filter hashes on the way.
    fn read_all(chain: &[Vec<u8>], format: EntryFormat) -> Vec<(Tid, bool, Vec<f32>)> {
        let mut reader = StreamReader::new();
        let mut out = Vec::new();
        for page in chain {
            reader
                .feed(page, format, |e| {
                    if e.tid.block != 99 {
                        assert_eq!(
                            e.filters.to_vec(),
                            filter_hashes(format, e.tid),
                            "{:?}",
                            e.tid
                        );
                    }
                    out.push((e.tid, e.flags.is_dead(), e.vector.to_vec()))
                })
                .unwrap();
        }
        assert!(!reader.has_partial_entry());
        out
    }

    fn vector(i: usize, dim: usize) -> Vec<f32> {
        (0..dim).map(|j| (i * 1000 + j) as f32 * 0.5).collect()
    }

    #[test]
    fn entries_span_pages_and_read_back_in_order() {
        for (dim, filters) in [1, 3, 128, 384, 512, 768, 1024, 1536, 2000]
            .into_iter()
            .flat_map(|dim| [(dim, 0), (dim, 1), (dim, 3)])
        {
            let format = EntryFormat {
                filters,
                ..EntryFormat::vectors(dim)
            };
            let mut chain = Vec::new();
            let n = 3 * BLOCK_SIZE / format.stride() + 7;
            for i in 0..n {
                append(
                    &mut chain,
                    format,
                    Tid {
                        block: i as u32,
                        offset: (i % 300) as u16 + 1,
                    },
                    &vector(i, dim),
                );
            }
            let entries = read_all(&chain, format);
            assert_eq!(entries.len(), n, "dim {dim}");
            for (i, (tid, dead, v)) in entries.iter().enumerate() {
                assert_eq!(tid.block, i as u32);
                assert!(!dead);
                assert_eq!(v, &vector(i, dim));
            }
            // Every page but the tail is full: the density pgvector lacks.
            for page in &chain[..chain.len() - 1] {
                assert_eq!(used(page).unwrap(), DATA_CAPACITY);
            }
            // entry_starts finds exactly the entries, page by page.
            let starts: usize = chain
                .iter()
                .map(|p| entry_starts(p, format).unwrap().count())
                .sum();
            assert_eq!(starts, n, "dim {dim}");
        }
    }

    #[test]
    fn density_beats_one_tuple_per_slot() {
        // At 768 dimensions pgvector fits 2 tuples of 3088 bytes per page (75% full).
        let format = EntryFormat {
            filters: 0,
            ..EntryFormat::vectors(768)
        };
        let per_page = DATA_CAPACITY as f64 / format.stride() as f64;
        assert!(per_page > 2.6, "{per_page}");
    }

    #[test]
    fn dead_flags_and_slot_reuse_across_a_page_boundary() {
        let format = EntryFormat {
            filters: 2,
            ..EntryFormat::vectors(768)
        };
        let mut chain = Vec::new();
        for i in 0..10 {
            append(
                &mut chain,
                format,
                Tid {
                    block: i,
                    offset: 1,
                },
                &vector(i as usize, 768),
            );
        }
        // Find an entry that spills from page 0 to page 1, kill it and reuse its slot.
        let offset = entry_starts(&chain[0], format)
            .unwrap()
            .find(|o| entry_spills(*o, format))
            .unwrap();
        mark_dead(&mut chain[0], offset);
        let (tid, dead) = read_entry_header(&chain[0], offset);
        assert!(dead);
        let entries = read_all(&chain, format);
        assert_eq!(entries.iter().filter(|e| e.1).count(), 1);
        assert_eq!(entries.iter().find(|e| e.1).unwrap().0, tid);

        let mut entry = vec![0u8; format.stride()];
        format.encode(
            Tid {
                block: 99,
                offset: 9,
            },
            &[7, 8],
            &vector(99, 768),
            Origin::Insert,
            &mut entry,
        );
        let (first, rest) = chain.split_at_mut(1);
        overwrite_entry(&mut first[0], offset, Some(&mut rest[0]), &entry).unwrap();
        let entries = read_all(&chain, format);
        assert_eq!(entries.iter().filter(|e| e.1).count(), 0);
        let reused = entries.iter().find(|e| e.0.block == 99).unwrap();
        assert_eq!(reused.2, vector(99, 768));

        // The reused slot says an insert wrote it, the build's entries still say build, and marking
        // an inserted entry dead keeps its origin.
        let mut origins = Vec::new();
        let mut reader = StreamReader::new();
        for page in &chain {
            reader
                .feed(page, format, |e| {
                    if e.tid.block == 99 {
                        assert_eq!(e.filters.to_vec(), [7, 8]);
                    }
                    origins.push((e.tid, e.flags))
                })
                .unwrap();
        }
        for (tid, flags) in &origins {
            let expected = if tid.block == 99 {
                Origin::Insert
            } else {
                Origin::Build
            };
            assert_eq!(flags.origin(), expected, "{tid:?}");
        }
        mark_dead(&mut chain[0], offset);
        let (_, flags) = entry_header(data(&chain[0]), offset);
        assert!(flags.is_dead());
        assert_eq!(flags.origin(), Origin::Insert);
        assert!(!flags.is_spilled());
        // A spilled entry keeps its origin and can die like any other.
        let mut entry = vec![0u8; format.stride()];
        format.encode(
            Tid {
                block: 5,
                offset: 6,
            },
            &[7, 8],
            &vec![0.5; format.dim],
            Origin::Insert,
            &mut entry,
        );
        mark_spilled(&mut entry);
        let (tid, flags) = entry_header(&entry, 0);
        assert_eq!(
            (tid, flags.is_spilled(), flags.is_dead(), flags.origin()),
            (
                Tid {
                    block: 5,
                    offset: 6
                },
                true,
                false,
                Origin::Insert
            )
        );
    }

    #[test]
    fn meta_round_trip_and_validation() {
        let mut page = new_page(PageKind::Meta, 0);
        let meta = Meta {
            dimensions: 384,
            lists: 100,
            metric: Metric::Cosine,
            build_id: 0xdead_beef_1234,
            centroid_start: 1,
            centroid_pages: centroid_pages(100, 384) as u32,
            directory_start: 1 + centroid_pages(100, 384) as u32,
            directory_pages: 1,
            rows_at_build: 62956,
            filter_columns: 2,
            summary_start: 3 + centroid_pages(100, 384) as u32,
            summary_pages: 4,
            radii: true,
            max_norm: 1.5,
            spill: false,
            quantizer: QuantizerKind::NONE,
            rerank: Rerank::Index,
            quantizer_start: 0,
            quantizer_pages: 0,
            quantizer_seed: 0,
        };
        meta.write(&mut page);
        assert_eq!(Meta::read(&page).unwrap(), meta);
        let mut bad = page.clone();
        data_mut(&mut bad)[0] ^= 1;
        assert!(matches!(Meta::read(&bad), Err(FormatError::BadMagic(_))));
        // What this binary writes, and what 0.1.0 to 0.3.0 wrote, are read; a later format and
        // version 0 are refused, not read as damage.
        assert_eq!(get_u32(data(&page), 4), FORMAT_VERSION);
        let mut version_1 = page.clone();
        put_u32(data_mut(&mut version_1), 4, 1);
        assert_eq!(Meta::read(&version_1).unwrap(), meta);
        for version in [0, FORMAT_VERSION + 1, 7] {
            let mut bad = page.clone();
            put_u32(data_mut(&mut bad), 4, version);
            assert_eq!(
                Meta::read(&bad),
                Err(FormatError::UnsupportedVersion(version))
            );
        }
        let mut bad = page.clone();
        put_u32(data_mut(&mut bad), 12, 5000);
        assert!(matches!(Meta::read(&bad), Err(FormatError::Corrupted(_))));
        // Filter columns need exactly one summary slot per list.
        for (at, value) in [(60, 3), (60, 5), (20, 0), (20, 40)] {
            let mut bad = page.clone();
            put_u32(data_mut(&mut bad), at, value);
            assert!(
                matches!(Meta::read(&bad), Err(FormatError::Corrupted(_))),
                "offset {at} = {value}"
            );
        }
        // A meta page of 0.1.0 (version 1, 56 bytes, zeros after) reads as no filter columns.
        let mut old = page.clone();
        put_u32(data_mut(&mut old), 4, 1);
        data_mut(&mut old)[56..72].fill(0);
        put_u32(data_mut(&mut old), 20, 0);
        let read = Meta::read(&old).unwrap();
        assert_eq!(
            (
                read.filter_columns,
                read.summary_pages,
                read.entry_format().stride()
            ),
            (0, 0, 8 + 384 * 4)
        );
        assert!(!read.radii && read.max_norm == 0.0);
        let mut bad = page.clone();
        put_u32(data_mut(&mut bad), 68, f32::NAN.to_bits());
        assert!(Meta::read(&bad).is_err());
        // Only quantized lists can spill (flat ones would hold every vector twice).
        let mut bad = page.clone();
        put_u32(data_mut(&mut bad), 64, META_FLAG_RADII | META_FLAG_SPILL);
        assert!(matches!(Meta::read(&bad), Err(FormatError::Corrupted(_))));
        // Bits no build sets: a flag besides radii and spill, a metric field above 255.
        let mut bad = page.clone();
        put_u32(data_mut(&mut bad), 64, 4);
        assert!(matches!(Meta::read(&bad), Err(FormatError::Corrupted(_))));
        let mut bad = page.clone();
        put_u32(data_mut(&mut bad), 16, (1 << 8) | meta.metric as u32);
        assert!(matches!(Meta::read(&bad), Err(FormatError::Corrupted(_))));
        let spilled = Meta {
            spill: true,
            quantizer: crate::quant::rabitq::KIND,
            ..meta
        };
        let mut spilled_page = new_page(PageKind::Meta, 0);
        spilled.write(&mut spilled_page);
        assert_eq!(Meta::read(&spilled_page).unwrap(), spilled);
        assert_eq!(meta.entry_format().stride(), 8 + 16 + 384 * 4);
        assert_eq!(meta.structure_end(), meta.summary_start + 4);
        assert!(read_special(&page[..100]).is_err());
    }

    /// Found by the page_decode fuzz target: a meta page whose centroid or directory range ran past
    /// block u32::MAX was accepted, and `start + pages` (or `directory_slot`) then overflowed.
    #[test]
    fn meta_block_ranges_must_fit_in_u32() {
        let mut page = new_page(PageKind::Meta, 0);
        let meta = Meta {
            dimensions: 3,
            lists: 5,
            metric: Metric::L2,
            build_id: 1,
            centroid_start: 1,
            centroid_pages: 1,
            directory_start: 2,
            directory_pages: 1,
            rows_at_build: 0,
            filter_columns: 0,
            summary_start: 0,
            summary_pages: 0,
            radii: false,
            max_norm: 0.0,
            spill: false,
            quantizer: QuantizerKind::NONE,
            rerank: Rerank::Index,
            quantizer_start: 0,
            quantizer_pages: 0,
            quantizer_seed: 0,
        };
        meta.write(&mut page);
        assert_eq!(Meta::read(&page).unwrap(), meta);
        for (at, start) in [(32, u32::MAX), (40, u32::MAX)] {
            let mut bad = page.clone();
            put_u32(data_mut(&mut bad), at, start);
            assert_eq!(
                Meta::read(&bad),
                Err(FormatError::Corrupted("meta page fields are inconsistent"))
            );
        }
        // The last block that still leaves room for the range is fine.
        let mut edge = page.clone();
        put_u32(data_mut(&mut edge), 40, u32::MAX - 1);
        assert_eq!(
            Meta::read(&edge).unwrap().directory_slot(4),
            (u32::MAX - 1, 4)
        );
    }

    #[test]
    fn centroids_and_directory_round_trip() {
        // Whole centroids per page up to 2,038 dimensions; beyond, centroids span pages.
        for (dim, pages) in [(384, 2), (2038, 10), (2039, 11), (3072, 16), (16000, 79)] {
            let all: Vec<f32> = (0..10 * dim).map(|i| i as f32).collect();
            assert_eq!(centroid_pages(10, dim), pages, "{dim}");
            let mut out = Vec::new();
            for number in 0..pages {
                let mut page = new_page(PageKind::Centroids, 0);
                write_centroids(&mut page, &all, dim, number);
                read_centroids(&page, &mut out).unwrap();
            }
            assert_eq!(out, all, "{dim}");
        }
        // 0.1.0's layout: five whole 384-d centroids on a page, so ten take two pages.
        assert_eq!(centroid_floats_per_page(384), 5 * 384);

        let mut page = new_page(PageKind::Directory, 0);
        let entry = DirectoryEntry {
            head: 7,
            tail: 9,
            free_hint: INVALID_BLOCK,
            radius: 2.5,
        };
        write_directory_entry(&mut page, 3, entry);
        assert_eq!(read_directory_entry(&page, 3).unwrap(), entry);
        assert!(read_directory_entry(&page, DIRECTORY_ENTRIES_PER_PAGE).is_err());
    }

    #[test]
    fn summary_pages_round_trip() {
        let mut page = new_page(PageKind::Summaries, 0);
        let mut summary = Summary::default();
        summary.insert(crate::filter::hash_value(0, b"books"));
        write_summary(&mut page, SUMMARIES_PER_PAGE - 1, &summary);
        assert_eq!(used(&page).unwrap(), SUMMARIES_PER_PAGE * SUMMARY_BYTES);
        assert_eq!(
            read_summary(&page, SUMMARIES_PER_PAGE - 1).unwrap(),
            summary
        );
        assert_eq!(read_summary(&page, 0).unwrap(), Summary::default());
        assert!(read_summary(&page, SUMMARIES_PER_PAGE).is_err());
        let directory = new_page(PageKind::Directory, 0);
        assert!(read_summary(&directory, 0).is_err());
    }

    #[test]
    fn corrupted_pages_give_errors_not_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let format = EntryFormat {
            filters: 1,
            ..EntryFormat::vectors(300)
        };
        let mut chain = Vec::new();
        for i in 0..20 {
            append(
                &mut chain,
                format,
                Tid {
                    block: i,
                    offset: 1,
                },
                &vector(i as usize, 300),
            );
        }
        for _ in 0..2000 {
            let mut page = chain[rng.gen_range(0..chain.len())].clone();
            for _ in 0..rng.gen_range(1..8) {
                let at = rng.gen_range(0..BLOCK_SIZE);
                page[at] = rng.gen();
            }
            let mut reader = StreamReader::new();
            if rng.gen_bool(0.5) {
                let _ = reader.feed(&chain[0], format, |_| {});
            }
            let _ = reader.feed(&page, format, |_| {});
            if let Ok(starts) = entry_starts(&page, format) {
                for offset in starts.take(100) {
                    let _ = read_entry_header(&page, offset);
                }
            }
            let _ = Meta::read(&page);
            let _ = read_directory_entry(&page, rng.gen_range(0..600));
            let mut out = Vec::new();
            let _ = read_centroids(&page, &mut out);
        }
    }
}
