//! Writes the seed corpora under corpus/ (run from this directory: `cargo run --example make_seeds`).
//! Pages are built with pgivf-core's own writers, the way the index builds them, so that the fuzzer
//! starts from real structure rather than from zeros.

use pgivf_core::binary;
use pgivf_core::page::{
    self, centroids_per_page, write_centroids, write_directory_entry, write_special,
    DirectoryEntry, EntryFormat, Meta, Origin, PageKind, Special, Tid, BLOCK_SIZE,
    DIRECTORY_ENTRIES_PER_PAGE, INVALID_BLOCK, PAGE_HEADER_SIZE, SPECIAL_SIZE,
};
use pgivf_core::metric::Metric;
use pgivf_core::quant::{QuantizerKind, Rerank};
use std::fs;

fn main() {
    let text: &[(&str, &str)] = &[
        ("simple", "[1,2,3]"),
        (
            "spaces-exponents",
            " [ -1.5e-3 ,\t+4E+2,0.000001 ,1e-45 ]\n",
        ),
        (
            "hex-and-limits",
            "[0x1.fffffep127,-0x1p-149,3.4028235e38,1.17549435e-38,-0]",
        ),
        ("out-of-range", "[1e39]"),
        ("nan-payload", "[nan(abc_1)]"),
        ("junk", "[1,2]x"),
    ];
    for (name, literal) in text {
        write("text_parse", name, literal.as_bytes());
    }

    // First byte: the typmod mode of the binary_decode target (0: -1, 2: the announced count).
    for (name, mode, values) in [
        ("two", 0u8, vec![1.0f32, 2.0]),
        (
            "typmod-match",
            2,
            vec![-0.0, f32::MIN_POSITIVE, f32::MAX, 1e-45],
        ),
        ("typmod-mismatch", 3 | (2 << 2), vec![0.5; 3]),
    ] {
        let mut bytes = vec![mode];
        binary::encode(&values, &mut bytes);
        write("binary_decode", name, &bytes);
    }

    let dim: usize = 3;
    let lists: usize = 5;
    let centroid_pages = lists.div_ceil(centroids_per_page(dim));
    let mut meta_page = new_page(PageKind::Meta, 0);
    Meta {
        dimensions: dim as u32,
        lists: lists as u32,
        metric: Metric::L2,
        build_id: 0x1234_5678_9abc,
        centroid_start: 1,
        centroid_pages: centroid_pages as u32,
        directory_start: 1 + centroid_pages as u32,
        directory_pages: lists.div_ceil(DIRECTORY_ENTRIES_PER_PAGE) as u32,
        rows_at_build: 1000,
        filter_columns: 0,
        summary_start: 0,
        summary_pages: 0,
        radii: true,
        max_norm: 2.0,
        spill: false,
        quantizer: QuantizerKind::NONE,
        rerank: Rerank::Index,
        quantizer_start: 0,
        quantizer_pages: 0,
        quantizer_seed: 0,
    }
    .write(&mut meta_page);
    write("page_decode", "meta", &meta_page);

    let centroids: Vec<f32> = (0..lists * dim).map(|i| i as f32 * 0.25 - 1.0).collect();
    let mut centroid_page = new_page(PageKind::Centroids, 0);
    write_centroids(&mut centroid_page, &centroids, dim, 0, lists);
    write("page_decode", "centroids", &centroid_page);

    let mut directory_page = new_page(PageKind::Directory, 0);
    for list in 0..lists {
        let head = 3 + 2 * list as u32;
        let entry = DirectoryEntry {
            head,
            tail: head + 1,
            free_hint: if list == 2 { head } else { INVALID_BLOCK },
            radius: 1.0,
        };
        write_directory_entry(&mut directory_page, list, entry);
    }
    write("page_decode", "directory", &directory_page);

    // Two-page chains whose last entry on the first page continues on the second.
    for (dim, rows) in [(3, 400), (768, 5)] {
        let format = EntryFormat::vectors(dim);
        let mut chain = Vec::new();
        for i in 0..rows {
            let vector: Vec<f32> = (0..dim).map(|j| (i * 7 + j) as f32 * 0.5).collect();
            append(
                &mut chain,
                format,
                Tid {
                    block: i as u32,
                    offset: 1 + (i % 50) as u16,
                },
                &vector,
            );
        }
        assert_eq!(chain.len(), 2);
        page::mark_dead(&mut chain[0], 0);
        write("page_decode", &format!("entries-dim{dim}"), &chain.concat());
    }
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = format!("corpus/{target}");
    fs::create_dir_all(&dir).unwrap();
    fs::write(format!("{dir}/seed-{name}"), bytes).unwrap();
}

/// What PostgreSQL's PageInit leaves (pd_lower, pd_upper, pd_special), plus our special area.
fn new_page(kind: PageKind, first_entry: u16) -> Vec<u8> {
    let mut page = vec![0u8; BLOCK_SIZE];
    let special_start = (BLOCK_SIZE - SPECIAL_SIZE) as u16;
    page[12..14].copy_from_slice(&(PAGE_HEADER_SIZE as u16).to_le_bytes());
    page[14..16].copy_from_slice(&special_start.to_le_bytes());
    page[16..18].copy_from_slice(&special_start.to_le_bytes());
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

/// Appends an entry to a chain of pages the way the index does.
fn append(chain: &mut Vec<Vec<u8>>, format: EntryFormat, tid: Tid, vector: &[f32]) {
    let mut entry = vec![0u8; format.stride()];
    format.encode(tid, &[], vector, Origin::Build, &mut entry);
    if chain.is_empty() {
        chain.push(new_page(PageKind::Entries, 0));
    }
    let written = page::append_bytes(chain.last_mut().unwrap(), &entry).unwrap();
    if written < entry.len() {
        let rest = &entry[written..];
        let next_block = chain.len() as u32;
        page::set_next(chain.last_mut().unwrap(), next_block);
        let mut next = new_page(PageKind::Entries, rest.len() as u16);
        page::append_bytes(&mut next, rest).unwrap();
        chain.push(next);
    }
}
