//! An index's pages in plain memory, for tests: what the extension's store does over shared
//! buffers, with locks checked as a backend would meet them. A backend that locks a page it
//! already holds waits for itself forever (PostgreSQL's buffer locks are not re-entrant, and such
//! a wait cannot be cancelled), so here it panics, naming the block.

use super::{Image, LockedPage, PageStore};
use crate::page::{self, FormatError, BLOCK_SIZE};
use std::cell::{Cell, Ref, RefCell};
use std::rc::Rc;

#[derive(Debug, Default)]
struct Slot {
    bytes: RefCell<Vec<u8>>,
    shared: Cell<u32>,
    exclusive: Cell<bool>,
}

/// Pages in memory. `records` counts the changes logged, `interrupts` the cancel checks.
#[derive(Debug, Default)]
pub struct MemoryStore {
    pages: RefCell<Vec<Rc<Slot>>>,
    pub records: Cell<u64>,
    pub interrupts: Cell<u64>,
}

/// A locked page of a [`MemoryStore`].
#[derive(Debug)]
pub struct MemoryPage {
    block: u32,
    slot: Rc<Slot>,
    exclusive: bool,
}

impl Drop for MemoryPage {
    fn drop(&mut self) {
        if self.exclusive {
            self.slot.exclusive.set(false);
        } else {
            self.slot.shared.set(self.slot.shared.get() - 1);
        }
    }
}

impl LockedPage for MemoryPage {
    type Bytes<'p> = Ref<'p, [u8]>;

    fn block(&self) -> u32 {
        self.block
    }

    fn bytes(&self) -> Ref<'_, [u8]> {
        Ref::map(self.slot.bytes.borrow(), Vec::as_slice)
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&self, block: u32) -> Result<Rc<Slot>, FormatError> {
        self.pages
            .borrow()
            .get(block as usize)
            .cloned()
            .ok_or(FormatError::Corrupted(
                "a page refers to a block past the end",
            ))
    }

    fn take(&self, block: u32, exclusive: bool) -> Result<MemoryPage, FormatError> {
        let slot = self.slot(block)?;
        assert!(
            !slot.exclusive.get() && (!exclusive || slot.shared.get() == 0),
            "block {block} locked again by the backend that holds it: a self-deadlock"
        );
        if exclusive {
            slot.exclusive.set(true);
        } else {
            slot.shared.set(slot.shared.get() + 1);
        }
        Ok(MemoryPage {
            block,
            slot,
            exclusive,
        })
    }

    /// A copy of block `block`'s bytes (no lock: for tests that inspect or damage pages).
    pub fn page(&self, block: u32) -> Vec<u8> {
        self.pages.borrow()[block as usize].bytes.borrow().clone()
    }

    /// Overwrites block `block` (for tests that damage pages).
    pub fn set_page(&self, block: u32, bytes: &[u8]) {
        self.pages.borrow()[block as usize]
            .bytes
            .borrow_mut()
            .copy_from_slice(bytes);
    }

    /// Whether any page is locked (every guard dropped after an operation, error or not).
    pub fn any_locked(&self) -> bool {
        self.pages
            .borrow()
            .iter()
            .any(|slot| slot.exclusive.get() || slot.shared.get() > 0)
    }
}

/// PostgreSQL's `PageInit` for our pages (24-byte header, 16-byte special area) plus the special
/// area's content.
pub fn init_page(bytes: &mut [u8], kind: page::PageKind, first_entry: u16) {
    bytes.fill(0);
    let special_start = (BLOCK_SIZE - page::SPECIAL_SIZE) as u16;
    bytes[12..14].copy_from_slice(&(page::PAGE_HEADER_SIZE as u16).to_le_bytes());
    bytes[14..16].copy_from_slice(&special_start.to_le_bytes());
    bytes[16..18].copy_from_slice(&special_start.to_le_bytes());
    // pd_pagesize_version: the page size with layout version 4.
    bytes[18..20].copy_from_slice(&(BLOCK_SIZE as u16 | 4).to_le_bytes());
    page::write_special(
        bytes,
        page::Special {
            next: page::INVALID_BLOCK,
            first_entry,
            kind,
        },
    );
}

impl PageStore for MemoryStore {
    type Page<'s> = MemoryPage;

    fn read(&self, block: u32) -> Result<MemoryPage, FormatError> {
        self.take(block, false)
    }

    fn lock(&self, block: u32) -> Result<MemoryPage, FormatError> {
        self.take(block, true)
    }

    fn extend(&self) -> Result<MemoryPage, FormatError> {
        let block = {
            let mut pages = self.pages.borrow_mut();
            pages.push(Rc::new(Slot {
                bytes: RefCell::new(vec![0; BLOCK_SIZE]),
                ..Slot::default()
            }));
            pages.len() as u32 - 1
        };
        self.take(block, true)
    }

    fn blocks(&self) -> u32 {
        self.pages.borrow().len() as u32
    }

    fn log<const N: usize, R>(
        &self,
        pages: [(&MemoryPage, Image); N],
        edit: impl FnOnce([&mut [u8]; N]) -> Result<R, FormatError>,
    ) -> Result<R, FormatError> {
        assert!(N <= 4, "Generic WAL records hold at most four pages");
        for (i, (page, _)) in pages.iter().enumerate() {
            assert!(
                page.exclusive,
                "block {} changed without its exclusive lock",
                page.block
            );
            assert!(
                pages[..i]
                    .iter()
                    .all(|(other, _)| other.block != page.block),
                "block {} registered twice in one record",
                page.block
            );
        }
        let mut copies: [Vec<u8>; N] = std::array::from_fn(|i| {
            let (page, image) = pages[i];
            let mut copy = page.slot.bytes.borrow().clone();
            if let Image::New { kind, first_entry } = image {
                init_page(&mut copy, kind, first_entry);
            }
            copy
        });
        let result = edit(copies.each_mut().map(Vec::as_mut_slice))?;
        for ((page, _), copy) in pages.iter().zip(copies) {
            *page.slot.bytes.borrow_mut() = copy;
        }
        self.records.set(self.records.get() + 1);
        Ok(result)
    }

    fn check_interrupts(&self) {
        self.interrupts.set(self.interrupts.get() + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::PageKind;

    #[test]
    fn changes_apply_when_the_edit_succeeds_and_not_otherwise() {
        let store = MemoryStore::new();
        let page = store.extend().unwrap();
        let new = Image::New {
            kind: PageKind::Entries,
            first_entry: 0,
        };
        store
            .log([(&page, new)], |[bytes]| {
                page::append_bytes(bytes, &[1, 2, 3]).map(|_| ())
            })
            .unwrap();
        assert_eq!(page::used(&page.bytes()).unwrap(), 3);
        let failed: Result<(), _> = store.log([(&page, Image::Existing)], |[bytes]| {
            page::append_bytes(bytes, &[4]).unwrap();
            Err(FormatError::Corrupted("stop"))
        });
        assert!(failed.is_err());
        assert_eq!(page::used(&page.bytes()).unwrap(), 3);
        assert_eq!(store.records.get(), 1);
        drop(page);
        assert!(!store.any_locked());
    }

    #[test]
    #[should_panic(expected = "self-deadlock")]
    fn locking_a_page_twice_is_a_self_deadlock() {
        let store = MemoryStore::new();
        let first = store.extend().unwrap();
        let _again = store.lock(first.block()).unwrap();
    }

    #[test]
    fn shared_locks_stack_and_reading_past_the_end_is_an_error() {
        let store = MemoryStore::new();
        drop(store.extend().unwrap());
        let a = store.read(0).unwrap();
        let b = store.read(0).unwrap();
        drop((a, b));
        assert!(!store.any_locked());
        assert!(store.read(1).is_err());
    }
}
