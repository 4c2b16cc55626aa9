//! VACUUM: marking the entries of dead table rows dead, so that inserts reuse their slots.
//!
//! Every chain is walked, and under a cleanup lock (no scan holds a pin on the page) the entries
//! whose heap row VACUUM found dead are marked dead in place. Entries never move, so a concurrent
//! scan reading a chain page by page sees each entry exactly once. The chain's free-slot hint is
//! set to its first page with a dead entry, where later inserts reuse the slots: the index does
//! not grow under churn.

use crate::page::{self, FormatError, Meta, Tid, INVALID_BLOCK};
use crate::store::{ChainWalk, Image, LockedPage, PageStore};

use super::layout::{read_directory, update_directory};

/// What a bulk delete found.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Deleted {
    /// Rows left in the index (a spilled row's second entry is not another row).
    pub live_rows: f64,
    pub removed_rows: f64,
}

/// Marks dead every entry whose heap row `is_dead` says is dead.
pub fn bulk_delete<S: PageStore>(
    store: &S,
    meta: &Meta,
    mut is_dead: impl FnMut(Tid) -> bool,
) -> Result<Deleted, FormatError> {
    let mut deleted = Deleted::default();
    // A quantized index's vector chains are vacuumed like its lists (their entries carry the same
    // heap TIDs), so their slots are reused too; only the lists' entries are counted. A vector's
    // chain comes after every list, so by the time its slot can be reused, every code that
    // locates it is dead.
    for chain in 0..meta.chains() {
        let format = meta.chain_format(chain);
        let counted = if chain < meta.lists { 1.0 } else { 0.0 };
        let mut first_free = INVALID_BLOCK;
        let mut block = read_directory(store, meta, chain)?.head;
        let mut walk = ChainWalk::new();
        while block != INVALID_BLOCK {
            walk.step(store)?;
            store.vacuum_delay();
            let page = store.lock_for_cleanup(block)?;
            let mut has_dead = false;
            let mut kill = Vec::new();
            let mut killed_rows = 0.0;
            let next = {
                let bytes = page.bytes();
                for offset in page::entry_starts(&bytes, format)? {
                    let (tid, flags) = page::entry_header(page::data(&bytes), offset);
                    let counted = if flags.is_spilled() { 0.0 } else { counted };
                    if flags.is_dead() {
                        has_dead = true;
                    } else if is_dead(tid) {
                        kill.push(offset);
                        killed_rows += counted;
                    } else {
                        deleted.live_rows += counted;
                    }
                }
                page::read_special(&bytes)?.next
            };
            if !kill.is_empty() {
                store.log([(&page, Image::Existing)], |[bytes]| {
                    for &offset in &kill {
                        page::mark_dead(bytes, offset);
                    }
                    Ok(())
                })?;
                deleted.removed_rows += killed_rows;
                has_dead = true;
            }
            if has_dead && first_free == INVALID_BLOCK {
                first_free = block;
            }
            block = next;
        }
        update_directory(store, meta, chain, |entry| {
            std::mem::replace(&mut entry.free_hint, first_free) != first_free
        })?;
    }
    Ok(deleted)
}
