//! Distance kernels with runtime CPU dispatch.
//!
//! Sums accumulate in `f32` like pgvector's (except [`norm_squared_f64`], which follows pgvector's
//! `vector_norm`), so results match pgvector up to the summation order. The best implementation
//! for the running CPU is chosen once, on first use; [`kernels_for`] exposes every level so tests and
//! benchmarks can compare them.

use std::sync::OnceLock;

/// The dispatch table for the kernels of `$module`, all compiled with the same target features.
/// Each architecture module defines `entry_point!(kernel, arguments...)`, a closure entering a
/// `#[target_feature]` kernel, so that `unsafe` and its justification stay in that module.
macro_rules! simd_kernels {
    ($name:literal, $module:ident) => {
        Kernels {
            name: $name,
            l2_squared: entry_point!($module::l2_squared, a, b),
            dot: entry_point!($module::dot, a, b),
            l1: entry_point!($module::l1, a, b),
            cosine_parts: entry_point!($module::cosine_parts, a, b),
            norm_squared_f64: entry_point!($module::norm_squared_f64, a),
            l2_squared_batch: entry_point!($module::l2_squared_batch, query, rows, out),
            neg_dot_batch: entry_point!($module::neg_dot_batch, query, rows, out),
        }
    };
}

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod aarch64;
mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

/// An instruction-set level a set of kernels is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Scalar,
    Avx2Fma,
    Avx512f,
    Neon,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Scalar, Level::Avx2Fma, Level::Avx512f, Level::Neon];
}

/// (a·b, a·a, b·b).
type CosineParts = (f32, f32, f32);

/// One implementation of every kernel. The function pointers are private: SIMD kernels must only
/// run on CPUs that support them, which [`kernels_for`] checks before handing a set out.
pub struct Kernels {
    name: &'static str,
    l2_squared: fn(&[f32], &[f32]) -> f32,
    dot: fn(&[f32], &[f32]) -> f32,
    l1: fn(&[f32], &[f32]) -> f32,
    cosine_parts: fn(&[f32], &[f32]) -> CosineParts,
    norm_squared_f64: fn(&[f32]) -> f64,
    l2_squared_batch: fn(&[f32], &[f32], &mut [f32]),
    neg_dot_batch: fn(&[f32], &[f32], &mut [f32]),
}

impl Kernels {
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn l2_squared(&self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        (self.l2_squared)(a, b)
    }

    pub fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        (self.dot)(a, b)
    }

    pub fn l1(&self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        (self.l1)(a, b)
    }

    pub fn cosine_parts(&self, a: &[f32], b: &[f32]) -> (f32, f32, f32) {
        debug_assert_eq!(a.len(), b.len());
        (self.cosine_parts)(a, b)
    }

    pub fn norm_squared_f64(&self, a: &[f32]) -> f64 {
        (self.norm_squared_f64)(a)
    }

    pub fn l2_squared_batch(&self, query: &[f32], rows: &[f32], out: &mut [f32]) {
        check_batch(query, rows, out);
        if query.is_empty() {
            out.fill(0.0);
        } else {
            (self.l2_squared_batch)(query, rows, out);
        }
    }

    pub fn neg_dot_batch(&self, query: &[f32], rows: &[f32], out: &mut [f32]) {
        check_batch(query, rows, out);
        if query.is_empty() {
            out.fill(-0.0);
        } else {
            (self.neg_dot_batch)(query, rows, out);
        }
    }
}

/// Once per batch, so a real assertion: a wrong row count would silently misalign every row.
fn check_batch(query: &[f32], rows: &[f32], out: &[f32]) {
    assert_eq!(
        rows.len(),
        query.len() * out.len(),
        "rows must hold out.len() rows of query.len() dimensions"
    );
}

/// The kernels for `level`, or `None` if this CPU (or this build's architecture) lacks it.
pub fn kernels_for(level: Level) -> Option<&'static Kernels> {
    match level {
        Level::Scalar => Some(&scalar::KERNELS),
        #[cfg(target_arch = "x86_64")]
        Level::Avx2Fma => (std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        .then_some(&x86::AVX2_FMA_KERNELS),
        #[cfg(target_arch = "x86_64")]
        Level::Avx512f => {
            std::arch::is_x86_feature_detected!("avx512f").then_some(&x86::AVX512F_KERNELS)
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        Level::Neon => Some(&aarch64::NEON_KERNELS),
        _ => None,
    }
}

/// The fastest kernels this CPU supports, detected on first use.
pub fn kernels() -> &'static Kernels {
    static BEST: OnceLock<&'static Kernels> = OnceLock::new();
    BEST.get_or_init(|| {
        [Level::Avx512f, Level::Avx2Fma, Level::Neon]
            .into_iter()
            .find_map(kernels_for)
            .unwrap_or(&scalar::KERNELS)
    })
}

/// Which implementation [`kernels`] chose ("avx512f", "avx2+fma", "neon", "scalar").
pub fn implementation_name() -> &'static str {
    kernels().name()
}

/// Squared Euclidean distance.
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    kernels().l2_squared(a, b)
}

/// Inner product.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    kernels().dot(a, b)
}

/// Manhattan (taxicab) distance.
pub fn l1(a: &[f32], b: &[f32]) -> f32 {
    kernels().l1(a, b)
}

/// (a·b, a·a, b·b) in one pass, for cosine distance.
pub fn cosine_parts(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
    kernels().cosine_parts(a, b)
}

/// Sum of squares accumulated in `f64`, as pgvector's `vector_norm` does.
pub fn norm_squared_f64(a: &[f32]) -> f64 {
    kernels().norm_squared_f64(a)
}

/// `out[i] = l2_squared(query, row i)` for the `out.len()` rows of `query.len()` dimensions stored
/// back to back in `rows`. Panics if `rows.len() != out.len() * query.len()`.
pub fn l2_squared_batch(query: &[f32], rows: &[f32], out: &mut [f32]) {
    kernels().l2_squared_batch(query, rows, out);
}

/// `out[i] = -dot(query, row i)`, laid out like [`l2_squared_batch`].
pub fn neg_dot_batch(query: &[f32], rows: &[f32], out: &mut [f32]) {
    kernels().neg_dot_batch(query, rows, out);
}

/// Asks the CPU to start loading `bytes` into cache. Index pages sit in separate 8 kB shared
/// buffers, and hardware prefetchers stop at 4 kB boundaries, so a scan that touches a page only
/// when it gets to it waits for memory at every page; prefetching a whole page first lets its cache
/// lines load in parallel. A no-op where there is no prefetch instruction.
pub fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    x86::prefetch(bytes);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Prefetches the first cache line of every 4 kB memory page that starts inside `bytes` (and the
/// first line of `bytes`): a prefetch that misses the TLB waits for the page walk, so starting
/// every page's walk at once, before the loads spread over them, overlaps the walks.
pub fn prefetch_page_starts(bytes: &[u8]) {
    const PAGE: usize = 4096;
    let start = bytes.as_ptr() as usize;
    let mut offset = 0;
    while offset < bytes.len() {
        prefetch_to_l2(&bytes[offset..offset + 1]);
        offset = (start + offset + PAGE) / PAGE * PAGE - start;
    }
}

/// [`prefetch`] into the second-level cache only, for memory needed a little later (the next
/// page of a quantized scan): loads to L2 wait for fewer of the first-level cache's few miss
/// buffers, so more of them are in flight at once (criterion `rabitq_pages`, pages in shuffled
/// order: 10% faster than prefetching to L1).
pub fn prefetch_to_l2(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    x86::prefetch_to_l2(bytes);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

#[cfg(test)]
mod tests {
    #[test]
    fn page_start_prefetches_stay_inside_the_slice() {
        // Every length and starting alignment around a 4 kB boundary: the hints never index past
        // the end (a panic here would be an ERROR in a scan).
        let bytes = vec![0u8; 3 * 4096];
        let base = bytes.as_ptr() as usize;
        let first_boundary = base.next_multiple_of(4096) - base;
        for start in [0, 1, first_boundary.saturating_sub(1), first_boundary] {
            for len in [0, 1, 63, 64, 4095, 4096, 4097, 8192, 3 * 4096 - start] {
                if start + len <= bytes.len() {
                    super::prefetch_page_starts(&bytes[start..start + len]);
                }
            }
        }
    }
}
