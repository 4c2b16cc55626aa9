//! Chains of entry pages: how a list's entries (or a quantized index's vectors) are written,
//! appended to, reused and walked.
//!
//! A chain is one byte stream of fixed-size entries over pages linked by `next` (see `page`).
//! Entries never move: VACUUM only marks them dead, and an insert either writes over a dead entry
//! in place or appends at the chain's tail, extending it with a new page when the entry does not
//! fit (an entry that straddles the boundary is written to both pages in one record). So a scan
//! reading a chain page by page sees each entry exactly once, whatever writers do meanwhile.
//!
//! Lock order, which keeps concurrent inserters, VACUUM and scans deadlock-free: entry pages in
//! chain order, then the chain's directory page. Nothing waits for an entry page while holding a
//! directory page, except when creating a chain's first page, a brand-new page nobody else can see.
//! A damaged page must never make a writer lock a page it already holds (an uncancellable wait):
//! every page a writer is led to is checked to be an entry page and not the one it holds.

use crate::page::{
    self, EntryFormat, FormatError, Location, Meta, PageKind, DATA_CAPACITY, INVALID_BLOCK,
};
use crate::store::{ChainWalk, Hint, Image, LockedPage, PageStore};

use super::layout::{read_directory, update_directory};

/// Pages an insert looks at for a reusable slot before it gives up and appends: an insert never
/// walks a whole list. The hint moves past the pages it has checked.
const SLOT_SEARCH_PAGES: usize = 8;

/// Calls `visit` with each page of the chain whose first page is `head`, in chain order, each
/// share-locked while it is visited, and with where the page read next probably is in memory:
/// the chain's next page or, after its last, block `after` (the next list's first page, or
/// `INVALID_BLOCK`). Scans are bound by memory and the CPU's own prefetcher does not follow a
/// chain of buffers: `visit` prefetches those bytes, and never reads them.
pub fn walk<S: PageStore, E: From<FormatError>>(
    store: &S,
    head: u32,
    after: u32,
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut walk = ChainWalk::new();
    let mut block = head;
    while block != INVALID_BLOCK {
        walk.step(store)?;
        let page = store.read(block)?;
        let bytes = page.bytes();
        let next = page::read_special(&bytes)?.next;
        let following = if next == INVALID_BLOCK { after } else { next };
        let ahead = store.hint(following).map_or(&[][..], Hint::for_prefetch);
        visit(&bytes, ahead)?;
        block = next;
    }
    Ok(())
}

/// Visits every entry of chain `chain` in stream order, with the entry and the block of the page
/// it ends on.
pub fn for_each_entry<S: PageStore>(
    store: &S,
    meta: &Meta,
    chain: u32,
    mut visit: impl FnMut(page::EntryRef<'_>, u32),
) -> Result<(), FormatError> {
    let head = read_directory(store, meta, chain)?.head;
    let format = meta.chain_format(chain);
    let mut reader = page::StreamReader::new();
    let mut block = head;
    walk(store, head, INVALID_BLOCK, |bytes, _| {
        let here = block;
        block = page::read_special(bytes)?.next;
        reader.feed(bytes, format, |entry| visit(entry, here))
    })
}

/// Calls `use_vector(owner TID, dead, vector)` with the vector entry at `location` (a quantized
/// index's vector chain), read in place while its page is share-locked.
pub fn with_located_vector<S: PageStore, R>(
    store: &S,
    location: Location,
    dim: usize,
    scratch: &mut Vec<f32>,
    use_vector: impl FnOnce(page::Tid, bool, &[f32]) -> R,
) -> Result<R, FormatError> {
    let first = store.read(location.block)?;
    let first_bytes = first.bytes();
    let second = if page::vector_spills(location, dim) {
        let next = page::read_special(&first_bytes)?.next;
        if next == INVALID_BLOCK {
            return Err(FormatError::Corrupted("vector continues past its chain"));
        }
        Some(store.read(next)?)
    } else {
        None
    };
    let second_bytes = second.as_ref().map(|page| page.bytes());
    let (owner, dead, vector) = page::vector_at(
        &first_bytes,
        location,
        second_bytes.as_deref(),
        dim,
        scratch,
    )?;
    Ok(use_vector(owner, dead, vector))
}

/// [`with_located_vector`], with the vector copied into `out`.
pub fn read_located_vector<S: PageStore>(
    store: &S,
    location: Location,
    dim: usize,
    out: &mut Vec<f32>,
) -> Result<(page::Tid, bool), FormatError> {
    let mut scratch = Vec::new();
    with_located_vector(store, location, dim, &mut scratch, |owner, dead, vector| {
        out.clear();
        out.extend_from_slice(vector);
        (owner, dead)
    })
}

/// Writes `entry` into chain `chain` (a list, or a quantized index's vector chain) and returns
/// where it starts: over a dead entry when the chain has one near its free-slot hint, else at
/// its tail.
pub fn insert_entry<S: PageStore>(
    store: &S,
    meta: &Meta,
    chain: u32,
    entry: &[u8],
) -> Result<Location, FormatError> {
    let mut directory = read_directory(store, meta, chain)?;
    if directory.head == INVALID_BLOCK {
        if let Some(location) = create_first_page(store, meta, chain, entry)? {
            return Ok(location);
        }
        // Another backend started the chain meanwhile: go on with its page.
        directory = read_directory(store, meta, chain)?;
    }
    if directory.free_hint != INVALID_BLOCK {
        if let Some(location) = reuse_free_slot(store, meta, chain, directory.free_hint, entry)? {
            return Ok(location);
        }
    }
    append(store, meta, chain, directory.tail, entry)
}

/// An entry that does not fit where it must (builds refuse formats whose entries exceed a page,
/// so only a damaged page gets here) is an error, never a silently shortened entry.
fn whole(written: usize, wanted: usize) -> Result<(), FormatError> {
    if written == wanted {
        Ok(())
    } else {
        Err(FormatError::Corrupted("an entry does not fit its page"))
    }
}

/// Starts a chain with a page holding `entry`. None if another backend started it first.
fn create_first_page<S: PageStore>(
    store: &S,
    meta: &Meta,
    chain: u32,
    entry: &[u8],
) -> Result<Option<Location>, FormatError> {
    let (block, slot) = meta.directory_slot(chain);
    let directory_page = store.lock(block)?;
    let mut directory = page::read_directory_entry(&directory_page.bytes(), slot)?;
    if directory.head != INVALID_BLOCK {
        return Ok(None);
    }
    let new = store.extend()?;
    directory.head = new.block();
    directory.tail = new.block();
    let image = Image::New {
        kind: PageKind::Entries,
        first_entry: 0,
    };
    store.log(
        [(&new, image), (&directory_page, Image::Existing)],
        |[new_bytes, directory_bytes]| {
            whole(page::append_bytes(new_bytes, entry)?, entry.len())?;
            page::write_directory_entry(directory_bytes, slot, directory);
            Ok(())
        },
    )?;
    Ok(Some(Location {
        block: new.block(),
        offset: 0,
    }))
}

/// A page a writer was led to by a link: it must be an entry page, or damage would have the
/// writer put entries into the meta, centroid or directory pages.
fn entry_page(bytes: &[u8]) -> Result<page::Special, FormatError> {
    let special = page::read_special(bytes)?;
    if special.kind != PageKind::Entries {
        return Err(FormatError::Corrupted(
            "a chain leads to a page that holds no entries",
        ));
    }
    Ok(special)
}

/// Appends at the chain's tail, following `next` links if other inserters extended the chain
/// since the directory was read.
fn append<S: PageStore>(
    store: &S,
    meta: &Meta,
    chain: u32,
    tail_hint: u32,
    entry: &[u8],
) -> Result<Location, FormatError> {
    let stride = entry.len();
    let mut block = tail_hint;
    let mut walk = ChainWalk::new();
    loop {
        walk.step(store)?;
        let tail = store.lock(block)?;
        let special = entry_page(&tail.bytes())?;
        if special.next != INVALID_BLOCK {
            block = special.next;
            continue;
        }
        let free = page::free_space(&tail.bytes())?;
        let location = Location {
            block,
            offset: (DATA_CAPACITY - free) as u16,
        };
        if free >= stride {
            store.log([(&tail, Image::Existing)], |[bytes]| {
                whole(page::append_bytes(bytes, entry)?, stride)
            })?;
            return Ok(location);
        }
        // The entry starts in the free end of this page and continues on a new one (or, when
        // this page is exactly full, starts at the top of the new one).
        let new = store.extend()?;
        let location = if free == 0 {
            Location {
                block: new.block(),
                offset: 0,
            }
        } else {
            location
        };
        let (directory_block, slot) = meta.directory_slot(chain);
        let directory_page = store.lock(directory_block)?;
        let mut directory = page::read_directory_entry(&directory_page.bytes(), slot)?;
        directory.tail = new.block();
        let image = Image::New {
            kind: PageKind::Entries,
            first_entry: ((stride - free) % stride) as u16,
        };
        store.log(
            [
                (&tail, Image::Existing),
                (&new, image),
                (&directory_page, Image::Existing),
            ],
            |[tail_bytes, new_bytes, directory_bytes]| {
                page::append_bytes(tail_bytes, &entry[..free])?;
                page::set_next(tail_bytes, new.block());
                whole(
                    page::append_bytes(new_bytes, &entry[free..])?,
                    stride - free,
                )?;
                page::write_directory_entry(directory_bytes, slot, directory);
                Ok(())
            },
        )?;
        return Ok(location);
    }
}

/// Writes `entry` over a dead entry at or after the hinted page. None when none was found within
/// [`SLOT_SEARCH_PAGES`] pages; the hint then moves past the pages looked at.
fn reuse_free_slot<S: PageStore>(
    store: &S,
    meta: &Meta,
    chain: u32,
    hint: u32,
    entry: &[u8],
) -> Result<Option<Location>, FormatError> {
    let format = meta.chain_format(chain);
    let mut block = hint;
    for _ in 0..SLOT_SEARCH_PAGES {
        store.check_interrupts();
        let page = store.lock(block)?;
        let (special, dead) = {
            let bytes = page.bytes();
            let special = entry_page(&bytes)?;
            let dead = page::entry_starts(&bytes, format)?
                .find(|&offset| page::read_entry_header(&bytes, offset).1);
            (special, dead)
        };
        if let Some(offset) = dead {
            overwrite(store, format, &page, special.next, offset, entry)?;
            drop(page);
            if block != hint {
                update_directory(store, meta, chain, |d| {
                    std::mem::replace(&mut d.free_hint, block) == hint
                })?;
            }
            return Ok(Some(Location {
                block,
                offset: offset as u16,
            }));
        }
        drop(page);
        block = special.next;
        if block == INVALID_BLOCK {
            break;
        }
    }
    update_directory(store, meta, chain, |d| {
        std::mem::replace(&mut d.free_hint, block) == hint
    })?;
    Ok(None)
}

/// Writes `entry` over the dead entry at `offset` of `page` (and, when it continues there, the
/// start of the chain's next page, `next`).
fn overwrite<'s, S: PageStore>(
    store: &'s S,
    format: EntryFormat,
    page: &S::Page<'s>,
    next: u32,
    offset: usize,
    entry: &[u8],
) -> Result<(), FormatError> {
    if !page::entry_spills(offset, format) {
        return store.log([(page, Image::Existing)], |[bytes]| {
            page::overwrite_entry(bytes, offset, None, entry)
        });
    }
    if next == INVALID_BLOCK || next == page.block() {
        return Err(FormatError::Corrupted("an entry continues past its chain"));
    }
    let next_page = store.lock(next)?;
    entry_page(&next_page.bytes())?;
    store.log(
        [(page, Image::Existing), (&next_page, Image::Existing)],
        |[first, second]| page::overwrite_entry(first, offset, Some(second), entry),
    )
}

/// The build's writer: entries of every chain collected in memory, then appended chain after
/// chain, so that each flush lays a chain's pages out contiguously (one flush, the usual case,
/// makes every list one contiguous run). A quantized index's code entries hold their vector's
/// ordinal in its chain until the vectors are written, and their location from then on.
pub struct ChainWriter {
    meta: Meta,
    pending: Vec<Vec<u8>>,
    pending_bytes: usize,
    /// Per chain: head, tail, and bytes of its stream written so far.
    chains: Vec<(u32, u32, usize)>,
    /// Per vector chain: its pages in order (to turn a vector's ordinal into its location), and
    /// how many vectors it has.
    vector_pages: Vec<Vec<u32>>,
    vector_counts: Vec<usize>,
}

impl ChainWriter {
    pub fn new(meta: Meta) -> Self {
        let chains = meta.chains() as usize;
        let vector_chains = chains - meta.lists as usize;
        ChainWriter {
            meta,
            pending: vec![Vec::new(); chains],
            pending_bytes: 0,
            chains: vec![(INVALID_BLOCK, INVALID_BLOCK, 0); chains],
            vector_pages: vec![Vec::new(); vector_chains],
            vector_counts: vec![0; vector_chains],
        }
    }

    /// Bytes held by the entries waiting to be written (what their buffers take, which grow by
    /// doubling: up to twice the entries).
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Queues an encoded entry for chain `chain`.
    pub fn push(&mut self, chain: u32, entry: &[u8]) {
        let pending = &mut self.pending[chain as usize];
        let before = pending.capacity();
        pending.extend_from_slice(entry);
        self.pending_bytes += pending.capacity() - before;
    }

    /// Queues the vector of a row of list `list` in the list's vector chain; returns what its
    /// code entries hold until [`flush`](Self::flush) replaces it with the vector's location:
    /// its ordinal (as a block) and its list (as an offset: lists fit a u16).
    pub fn push_vector(&mut self, list: u32, entry: &[u8]) -> Location {
        let ordinal = &mut self.vector_counts[list as usize];
        *ordinal += 1;
        let held = Location {
            block: (*ordinal - 1) as u32,
            offset: list as u16,
        };
        self.push(self.meta.lists + list, entry);
        held
    }

    /// Appends every pending chain to the index, vectors before the codes that locate them.
    pub fn flush<S: PageStore>(&mut self, store: &S) -> Result<(), FormatError> {
        let lists = self.meta.lists as usize;
        let order = (lists..self.pending.len()).chain(0..lists);
        for chain in order {
            if self.pending[chain].is_empty() {
                continue;
            }
            store.check_interrupts();
            let stride = self.meta.chain_format(chain as u32).stride();
            if chain < lists && self.meta.keeps_vectors() {
                let format = self.meta.entry_format();
                let vector_format = self.meta.chain_format(self.meta.lists);
                for entry in self.pending[chain].chunks_exact_mut(stride) {
                    let held = format.location_of(entry);
                    let pages = &self.vector_pages[held.offset as usize];
                    let location =
                        page::location_in_chain(pages, held.block as usize, vector_format)
                            .expect("vectors are written before their codes");
                    format.set_location(entry, location);
                }
            }
            let bytes = std::mem::take(&mut self.pending[chain]);
            let (head, tail, written) = &mut self.chains[chain];
            let mut pos = 0;
            if *tail != INVALID_BLOCK && *written % DATA_CAPACITY != 0 {
                let page = store.lock(*tail)?;
                let n = store.log([(&page, Image::Existing)], |[page_bytes]| {
                    page::append_bytes(page_bytes, &bytes)
                })?;
                pos += n;
                *written += n;
            }
            // New pages go four to a record, each written once with its link to the next
            // already set: the page after a record is added before the record is made, so no
            // page is logged a second time just to link it (Generic WAL would compare all of it
            // to find that change).
            let mut following = None;
            while pos < bytes.len() {
                let pages_left = (bytes.len() - pos).div_ceil(DATA_CAPACITY);
                // The chain's old tail is linked to its first new page in the same record.
                let previous = match (*tail, &following) {
                    (INVALID_BLOCK, _) | (_, Some(_)) => None,
                    (block, None) => Some(block),
                };
                let batch = pages_left.min(4 - usize::from(previous.is_some()));
                let mut pages = Vec::with_capacity(batch + 1);
                pages.push(match following.take() {
                    Some(page) => page,
                    None => store.extend()?,
                });
                for _ in 1..batch {
                    pages.push(store.extend()?);
                }
                let after = if pages_left > batch {
                    let page = store.extend()?;
                    let block = page.block();
                    following = Some(page);
                    block
                } else {
                    INVALID_BLOCK
                };
                let blocks: Vec<u32> = pages.iter().map(|page| page.block()).collect();
                let mut images: Vec<Image> = (0..batch)
                    .map(|i| Image::New {
                        kind: PageKind::Entries,
                        // The first entry starting on a page comes after the rest of a split one.
                        first_entry: ((stride - (*written + i * DATA_CAPACITY) % stride) % stride)
                            as u16,
                    })
                    .collect();
                if let Some(block) = previous {
                    pages.push(store.lock(block)?);
                    images.push(Image::Existing);
                }
                let data = &bytes[pos..];
                let edit = |page_bytes: &mut [&mut [u8]]| -> Result<usize, FormatError> {
                    let mut n = 0;
                    for (i, page_bytes) in page_bytes.iter_mut().take(batch).enumerate() {
                        page::set_next(page_bytes, blocks.get(i + 1).copied().unwrap_or(after));
                        n += page::append_bytes(page_bytes, &data[n..])?;
                    }
                    if previous.is_some() {
                        page::set_next(page_bytes[batch], blocks[0]);
                    }
                    Ok(n)
                };
                let n = log_pages(store, &pages, &images, edit)?;
                if *head == INVALID_BLOCK {
                    *head = blocks[0];
                }
                *tail = blocks[batch - 1];
                if chain >= lists {
                    self.vector_pages[chain - lists].extend_from_slice(&blocks);
                }
                pos += n;
                *written += n;
            }
            self.pending_bytes -= bytes.capacity();
        }
        Ok(())
    }

    /// Every chain's head and tail, for the directory.
    pub fn heads_and_tails(&self) -> Vec<(u32, u32)> {
        self.chains
            .iter()
            .map(|&(head, tail, _)| (head, tail))
            .collect()
    }
}
/// [`PageStore::log`] for one to four pages given as slices.
fn log_pages<'s, S: PageStore, R>(
    store: &'s S,
    pages: &[S::Page<'s>],
    images: &[Image],
    edit: impl FnOnce(&mut [&mut [u8]]) -> Result<R, FormatError>,
) -> Result<R, FormatError> {
    fn one<'s, S: PageStore, R, const N: usize>(
        store: &'s S,
        pages: &[S::Page<'s>],
        images: &[Image],
        edit: impl FnOnce(&mut [&mut [u8]]) -> Result<R, FormatError>,
    ) -> Result<R, FormatError> {
        store.log(
            std::array::from_fn::<_, N, _>(|i| (&pages[i], images[i])),
            |mut bytes| edit(&mut bytes),
        )
    }
    match pages.len() {
        1 => one::<S, R, 1>(store, pages, images, edit),
        2 => one::<S, R, 2>(store, pages, images, edit),
        3 => one::<S, R, 3>(store, pages, images, edit),
        4 => one::<S, R, 4>(store, pages, images, edit),
        n => unreachable!("{n} pages in one record"),
    }
}
