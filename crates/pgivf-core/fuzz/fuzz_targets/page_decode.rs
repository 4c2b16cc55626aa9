//! The on-page format: every reader in `pgivf_core::page` returns an error, never panics, on any
//! page content, and what it returns is consistent with the page.
//!
//! The input is one or two 8192-byte pages (cut or zero-padded): a meta, centroid, directory or
//! entry page, or two consecutive pages of an entry chain. Entry pages are read with a few fixed
//! dimension counts plus the one a meta page announces, as vector entries and as the code entries
//! of quantized lists; vectors are looked up by a location taken from the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgivf_core::page::{
    self, centroid_pages, entry_spills, entry_starts, free_space, mark_dead, overwrite_entry,
    read_centroids, read_directory_entry, read_entry_header, read_special, read_summary, set_next,
    used, EntryFormat, EntryRef, Location, Meta, Origin, PageKind, StreamReader, Tid, BLOCK_SIZE,
    DATA_CAPACITY, DIRECTORY_ENTRIES_PER_PAGE,
};

const DIMS: [usize; 5] = [1, 3, 128, 768, 2000];
/// A byte of the page header that no reader looks at (`pd_prune_xid`): its low bit makes the scan
/// read from unaligned buffers, which take the copying path of `page::floats`.
const MISALIGN_FLAG_BYTE: usize = 20;

fuzz_target!(|data: &[u8]| {
    let first = page_from(&data[..data.len().min(BLOCK_SIZE)]);
    let second = (data.len() > BLOCK_SIZE)
        .then(|| page_from(&data[BLOCK_SIZE..data.len().min(2 * BLOCK_SIZE)]));

    // Anything but a whole page is refused.
    assert!(read_special(&first[..BLOCK_SIZE - 1]).is_err());
    assert!(used(&[]).is_err());
    assert!(read_centroids(data, &mut Vec::new()).is_err() || data.len() == BLOCK_SIZE);

    let mut dims = DIMS.to_vec();
    check_page(&first, &mut dims);
    if let Some(second) = &second {
        check_page(second, &mut dims);
    }
    for format in dims.iter().flat_map(|&dim| {
        [
            EntryFormat::vectors(dim),
            EntryFormat {
                filters: 2,
                ..EntryFormat::vectors(dim)
            },
            EntryFormat {
                dim,
                filters: 2,
                code_bytes: pgivf_core::quant::sq8::KIND.code_bytes(dim),
                located: false,
            },
            EntryFormat {
                dim,
                filters: 0,
                code_bytes: pgivf_core::quant::rabitq::KIND.code_bytes(dim),
                located: true,
            },
        ]
    }) {
        check_entries(&first, second.as_deref(), format);
        if let Some(second) = &second {
            check_entries(second, None, format);
        }
        let misalign = usize::from(first[MISALIGN_FLAG_BYTE] & 1);
        check_stream(&first, second.as_deref(), format, misalign);
        if format.code_bytes == 0 && format.filters == 0 {
            check_vector_lookup(&first, second.as_deref(), format.dim);
        }
    }
});

/// A vector entry looked up at a location from the input (a code entry's, when pages are damaged):
/// an error or a vector of the right size, never a panic.
fn check_vector_lookup(first: &[u8], second: Option<&[u8]>, dim: usize) {
    let offset = u16::from_le_bytes([first[22], first[23]]);
    let location = Location { block: 0, offset };
    let mut out = vec![1.0];
    if page::read_vector_at(first, location, second, dim, &mut out).is_ok() {
        assert_eq!(out.len(), dim);
        assert!(offset % 8 == 0 && (offset as usize) < DATA_CAPACITY);
    }
}

fn page_from(bytes: &[u8]) -> Vec<u8> {
    let mut page = vec![0u8; BLOCK_SIZE];
    page[..bytes.len()].copy_from_slice(bytes);
    page
}

/// The page-kind independent readers, plus the meta page's dimensions for the entry readers.
fn check_page(page: &[u8], dims: &mut Vec<usize>) {
    let special = read_special(page);
    let used = used(page).ok();
    if let Some(used) = used {
        assert!(used <= DATA_CAPACITY);
        assert_eq!(free_space(page), Ok(DATA_CAPACITY - used));
    }

    if let Ok(meta) = Meta::read(page) {
        assert!(matches!(special, Ok(s) if s.kind == PageKind::Meta));
        let dim = meta.dimensions as usize;
        assert!((1..=pgivf_core::VECTOR_MAX_DIM).contains(&dim));
        assert!(meta.lists >= 1);
        // The centroid pages a meta page claims are those its lists and dimensions take.
        assert_eq!(meta.centroid_pages as usize, centroid_pages(meta.lists as usize, dim));
        let format = meta.entry_format();
        let payload = if format.code_bytes > 0 { format.code_bytes } else { 4 * dim };
        assert!(format.stride() >= page::ENTRY_HEADER_SIZE + payload);
        assert!(meta.chains() >= meta.lists);
        assert!(meta.structure_end() >= meta.directory_start);
        // The block arithmetic the extension does with a meta page it has read.
        let centroid_end = meta.centroid_start.checked_add(meta.centroid_pages);
        let directory_end = meta.directory_start.checked_add(meta.directory_pages);
        assert!(centroid_end.is_some(), "centroid pages overflow: {meta:?}");
        assert!(
            directory_end.is_some(),
            "directory pages overflow: {meta:?}"
        );
        let summary_end = meta.summary_start.checked_add(meta.summary_pages);
        assert!(summary_end.is_some(), "summary pages overflow: {meta:?}");
        for list in [0, meta.lists / 2, meta.lists - 1] {
            if meta.filter_columns > 0 {
                let (block, slot) = meta.summary_slot(list);
                assert!(slot < page::SUMMARIES_PER_PAGE);
                assert!(block >= meta.summary_start && Some(block) < summary_end);
            }
            let (block, slot) = meta.directory_slot(list);
            assert!(slot < DIRECTORY_ENTRIES_PER_PAGE);
            assert!(block >= meta.directory_start && Some(block) < directory_end);
        }
        if !dims.contains(&dim) {
            dims.push(dim);
        }
    }

    let is = |kind| matches!(special, Ok(s) if s.kind == kind);
    for slot in [0, 1, 7, DIRECTORY_ENTRIES_PER_PAGE - 1] {
        assert_eq!(
            read_directory_entry(page, slot).is_ok(),
            is(PageKind::Directory)
        );
    }
    assert!(read_directory_entry(page, DIRECTORY_ENTRIES_PER_PAGE).is_err());
    for slot in [0, page::SUMMARIES_PER_PAGE - 1] {
        assert_eq!(read_summary(page, slot).is_ok(), is(PageKind::Summaries));
    }
    assert!(read_summary(page, page::SUMMARIES_PER_PAGE).is_err());
    assert!(read_directory_entry(page, usize::MAX).is_err());

    let mut centroids = vec![1.0f32];
    match read_centroids(page, &mut centroids) {
        Ok(()) => {
            assert!(is(PageKind::Centroids));
            assert_eq!(centroids.len(), 1 + used.unwrap() / 4);
        }
        Err(_) => assert!(!is(PageKind::Centroids) || used.is_none()),
    }

    if let Ok(special) = special {
        let mut copy = page.to_vec();
        set_next(&mut copy, special.next ^ 0x5a5a);
        assert_eq!(
            read_special(&copy).map(|s| s.next),
            Ok(special.next ^ 0x5a5a)
        );
        if let Some(before) = used {
            let appended = page::append_bytes(&mut copy, &page[..100]).unwrap();
            assert_eq!(appended, 100.min(DATA_CAPACITY - before));
            assert_eq!(page::used(&copy), Ok(before + appended));
        }
    }
}

/// `entry_starts`, `read_entry_header`, `mark_dead` and `overwrite_entry` (a dead slot reused) on an
/// entry page, `next` being the following page of the chain if there is one.
fn check_entries(page: &[u8], next: Option<&[u8]>, format: EntryFormat) {
    let Ok(starts) = entry_starts(page, format) else {
        return;
    };
    let starts: Vec<usize> = starts.collect();
    assert!(starts.len() <= DATA_CAPACITY / page::ENTRY_HEADER_SIZE);
    let headers: Vec<(Tid, bool)> = starts.iter().map(|&o| read_entry_header(page, o)).collect();
    for pair in starts.windows(2) {
        assert_eq!(pair[1] - pair[0], format.stride());
    }

    let mut copy = page.to_vec();
    for (&offset, &(tid, _)) in starts.iter().zip(&headers) {
        assert!(offset % 8 == 0 && offset < DATA_CAPACITY);
        assert_eq!(
            entry_spills(offset, format),
            offset + format.stride() > DATA_CAPACITY
        );
        mark_dead(&mut copy, offset);
        assert_eq!(read_entry_header(&copy, offset), (tid, true));
    }

    // Reuse the last slot, the one most likely to continue on the next page.
    if let Some(&offset) = starts.last() {
        let mut entry = vec![0u8; format.stride()];
        let tid = Tid {
            block: 0xabcdef,
            offset: 42,
        };
        let vector: Vec<f32> = (0..format.dim).map(|i| i as f32).collect();
        let filters: Vec<u64> = (0..format.filters as u64).collect();
        if format.code_bytes == 0 {
            format.encode(tid, &filters, &vector, Origin::Insert, &mut entry);
        } else {
            let code: Vec<u8> = (0..format.code_bytes).map(|i| i as u8).collect();
            let location = format.located.then_some(Location { block: 7, offset: 16 });
            format.encode_code(tid, &filters, location, &code, Origin::Insert, &mut entry);
            if let Some(location) = location {
                assert_eq!(format.location_of(&entry), location);
            }
        }
        let mut next_copy = next.map(<[u8]>::to_vec);
        let result = overwrite_entry(&mut copy, offset, next_copy.as_deref_mut(), &entry);
        if result.is_ok() {
            assert_eq!(read_entry_header(&copy, offset), (tid, false));
        } else {
            assert!(entry_spills(offset, format));
        }
    }
}

/// A scan of a list whose chain is `first` then `second`, from buffers that start `misalign` bytes
/// into an allocation.
fn check_stream(first: &[u8], second: Option<&[u8]>, format: EntryFormat, misalign: usize) {
    let mut buffer = vec![0u8; misalign + BLOCK_SIZE];
    buffer[misalign..].copy_from_slice(first);
    let mut reader = StreamReader::new();
    let mut visited = 0usize;
    let vector_len = if format.code_bytes > 0 { 0 } else { format.dim };
    let mut visit = |entry: EntryRef<'_>| {
        assert_eq!(entry.vector.len(), vector_len);
        assert_eq!(entry.code.len(), format.code_bytes);
        assert_eq!(entry.location.is_some(), format.located);
        assert_eq!(entry.filters.len(), format.filters);
        visited += 1;
    };
    if reader
        .feed(&buffer[misalign..], format, &mut visit)
        .is_err()
    {
        return;
    }
    // The raw reader sees the same entries, in runs of whole entries.
    let mut raw = StreamReader::new();
    let mut raw_entries = 0usize;
    raw.feed_raw(&buffer[misalign..], format, |run| {
        assert!(!run.is_empty() && run.len() % format.stride() == 0);
        raw_entries += run.len() / format.stride();
    })
    .expect("feed accepted the page");
    assert_eq!(raw_entries, visited);
    // A list's first page starts at an entry boundary: every whole entry on it was visited.
    let used_first = used(first).unwrap();
    assert_eq!(visited, used_first / format.stride());
    assert_eq!(
        reader.has_partial_entry(),
        !used_first.is_multiple_of(format.stride())
    );
    if let Some(second) = second {
        buffer[misalign..].copy_from_slice(second);
        let before = visited;
        let mut visit = |entry: EntryRef<'_>| {
            assert_eq!(entry.vector.len(), vector_len);
            visited += 1;
        };
        if reader.feed(&buffer[misalign..], format, &mut visit).is_ok() {
            let used_second = used(second).unwrap();
            let total = (used_first + used_second) / format.stride();
            assert!(visited - before <= total + 1);
        }
    }
}
