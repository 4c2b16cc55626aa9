//! `memory_required` must cover what `train` really allocates. A counting global allocator
//! tracks the peak; it is process-wide, so this file holds a single test.

mod kmeans_common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use kmeans_common::*;
use pgivf_core::kmeans::{memory_required, train, KMeansMetric, KMeansParams};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(now, Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn memory_required_covers_peak_allocation() {
    let cases = [
        (0usize, 8usize, 10usize, KMeansMetric::L2),
        (5, 3, 10, KMeansMetric::L2),
        (2000, 1, 20, KMeansMetric::L2),
        (3000, 16, 40, KMeansMetric::L2),
        (4000, 64, 300, KMeansMetric::L2),
        (3000, 100, 50, KMeansMetric::Spherical),
        (500, 700, 500, KMeansMetric::L2),
    ];
    for threads in [1, 2] {
        let pool = pool(threads);
        for (n, dim, k, metric) in cases {
            let mut samples = blobs(k, n.div_ceil(k), dim, 1.0, 1).samples;
            samples.truncate(n * dim);
            if metric == KMeansMetric::Spherical {
                normalize_rows(&mut samples, dim);
            }
            let params = KMeansParams::new(k, metric);
            let mut progress = no_progress();
            let baseline = CURRENT.load(Ordering::SeqCst);
            PEAK.store(baseline, Ordering::SeqCst);
            let centroids = train(&samples, dim, &params, &pool, &mut progress).unwrap();
            let used = PEAK.load(Ordering::SeqCst) - baseline;
            let estimate = memory_required(n, dim, k);
            assert!(
                used <= estimate,
                "{n}×{dim}×{k} on {threads} threads: used {used} bytes, estimated {estimate}"
            );
            drop(centroids);
        }
    }
}
