//! Inserting a row after the build: no retraining.
//!
//! A row goes to the list of its nearest centroid and, in an index that spills, a second entry to
//! the list `kmeans::Spiller` picks (both from one pass over the centroids, `Spiller::place`).
//! The list's bounds (radius, the index's largest norm) and filter summary are widened before the
//! entry is written, so that a scan that can see the row also sees bounds and a summary that
//! cover it. A quantized row's vector is written before its codes, in a record of its own: a crash
//! in between leaves an unreferenced vector of an aborted row, which VACUUM frees like any dead
//! entry; a crash between a row's two codes leaves it in one list, which scans handle like any row.

use crate::distance;
use crate::kmeans::{self, Spiller};
use crate::page::{FormatError, Meta, Origin, Tid};
use crate::store::PageStore;

use super::chain::insert_entry;
use super::layout::{self, add_to_summary, read_directory, update_directory};
use super::loaded::LoadedIndex;

/// Inserts the row at `tid` (`row` as stored: see `Metric::prepare_row`; one hash per filter
/// column).
pub fn insert_row<S: PageStore>(
    store: &S,
    index: &LoadedIndex,
    tid: Tid,
    row: &[f32],
    filter_hashes: &[u64],
) -> Result<(), FormatError> {
    let meta = index.meta();
    let placer = Spiller::with_norms(
        &index.centroids,
        meta.dimensions as usize,
        index.centroid_norms(),
        meta.metric.kmeans(),
        kmeans::SPILL_LAMBDA,
    );
    let mut scratch = Vec::new();
    let (list, second) = {
        let mut between_rows = index.between_rows.borrow_mut();
        let spill = (meta.spill && index.quantizer.is_some()).then_some(&mut *between_rows);
        placer
            .place(row, spill, &mut scratch)
            .expect("a row of the index's dimensions")
    };
    let format = meta.entry_format();
    let mut entry = vec![0u8; format.stride()];
    cover_row(store, index, &meta, list, row, filter_hashes)?;
    let Some(quantizer) = index.quantizer.as_deref() else {
        format.encode(tid, filter_hashes, row, Origin::Insert, &mut entry);
        insert_entry(store, &meta, list, &entry)?;
        return Ok(());
    };
    let location = if meta.keeps_vectors() {
        let vector_format = meta.chain_format(meta.lists);
        let mut vector_entry = vec![0u8; vector_format.stride()];
        vector_format.encode(tid, &[], row, Origin::Insert, &mut vector_entry);
        Some(insert_entry(
            store,
            &meta,
            meta.lists + list,
            &vector_entry,
        )?)
    } else {
        None
    };
    let mut code = vec![0u8; quantizer.code_bytes()];
    let mut write_code = |list: u32, spilled: bool| {
        index.encode(quantizer, list, row, &mut scratch, &mut code);
        format.encode_code(
            tid,
            filter_hashes,
            location,
            &code,
            Origin::Insert,
            &mut entry,
        );
        if spilled {
            crate::page::mark_spilled(&mut entry);
        }
        insert_entry(store, &meta, list, &entry).map(|_| ())
    };
    write_code(list, false)?;
    if let Some(second) = second {
        cover_row(store, index, &meta, second, row, filter_hashes)?;
        write_code(second, true)?;
    }
    Ok(())
}

/// Widens list `list`'s radius, the index's largest norm and the list's filter summary to cover
/// a row about to be added to it.
fn cover_row<S: PageStore>(
    store: &S,
    index: &LoadedIndex,
    meta: &Meta,
    list: u32,
    row: &[f32],
    filter_hashes: &[u64],
) -> Result<(), FormatError> {
    if meta.radii {
        let distance = meta.metric.member_distance(row, index.centroid(list));
        if read_directory(store, meta, list)?.radius < distance {
            update_directory(store, meta, list, |entry| {
                let grows = entry.radius < distance;
                entry.radius = entry.radius.max(distance);
                grows
            })?;
        }
        let norm = distance::norm_squared_f64(row).sqrt() as f32;
        if meta.max_norm < norm {
            layout::widen_max_norm(store, norm)?;
        }
    }
    if !filter_hashes.is_empty() {
        add_to_summary(store, meta, list, filter_hashes)?;
    }
    Ok(())
}
