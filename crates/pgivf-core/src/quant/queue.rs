//! The re-rank queue of a quantized scan: rows by the lower bound of their distance, with their heap
//! TID and vector location, and the loop that fills it from a page's code entries.
//!
//! Most rows a probe estimates are far from the result. A max-heap keeps the smallest upper bounds
//! seen, as many as the scan expects to hand out (at most `OVERFLOW_AFTER`); a row whose lower bound
//! is above the largest of them cannot be among that many nearest rows and waits unsorted in the
//! overflow, which joins the sorted candidates only if a scan reads that far. That keeps the
//! selection work proportional to the rows that matter.

use crate::page::{entry_header, EntryFormat, Tid};
use crate::topk::Candidates;
use std::collections::BinaryHeap;

/// Rows a scan is expected to hand out before it needs rows from the overflow, unless told fewer
/// ([`RerankQueue::expect_rows`]).
pub const OVERFLOW_AFTER: usize = 32;
/// The location of a row re-ranked from the table.
pub const NO_LOCATION: u64 = u64::MAX;
/// Rows a batch of [`RerankQueue::push_lanes_avx512`] holds.
pub const LANES: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Bound(f32);
impl Eq for Bound {}
impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Rows waiting to be re-ranked: `(lower bound, [heap TID, vector location])`.
#[derive(Debug)]
pub struct RerankQueue {
    bounds: Candidates,
    rows: Vec<[u64; 2]>,
    upper: BinaryHeap<Bound>,
    /// Rows waiting unsorted: their lower bounds, heap TIDs and vector locations, side by side
    /// so that a batch of lanes is stored with a few vector stores.
    overflow: Vec<f32>,
    overflow_tids: Vec<u64>,
    overflow_locations: Vec<u64>,
    /// The smallest lower bound in the overflow, lane by lane as batches of lanes left it (rows
    /// pushed one by one count in lane 0; infinite when none).
    overflow_min_lanes: [f32; LANES],
    queued: u64,
    /// How many smallest upper bounds `upper` keeps: the rows the scan expects to hand out.
    expected_rows: usize,
}

impl Default for RerankQueue {
    fn default() -> Self {
        RerankQueue {
            bounds: Candidates::default(),
            rows: Vec::new(),
            upper: BinaryHeap::new(),
            overflow: Vec::new(),
            overflow_tids: Vec::new(),
            overflow_locations: Vec::new(),
            overflow_min_lanes: [f32::INFINITY; LANES],
            queued: 0,
            expected_rows: OVERFLOW_AFTER,
        }
    }
}

impl RerankQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many rows the scan expects to hand out (1 to `OVERFLOW_AFTER`): the fewer, the more
    /// rows wait unsorted. Only speed depends on it: rows come out in the same order whatever it
    /// is. For an empty queue (after [`clear`](Self::clear)).
    pub fn expect_rows(&mut self, rows: usize) {
        assert!(self.upper.is_empty(), "set before any row is queued");
        self.expected_rows = rows.clamp(1, OVERFLOW_AFTER);
    }

    /// Forgets every row, keeping the allocations.
    pub fn clear(&mut self) {
        self.bounds.clear();
        self.rows.clear();
        self.upper.clear();
        self.clear_overflow();
        self.queued = 0;
    }

    fn clear_overflow(&mut self) {
        self.overflow.clear();
        self.overflow_tids.clear();
        self.overflow_locations.clear();
        self.overflow_min_lanes = [f32::INFINITY; LANES];
    }

    /// The smallest lower bound waiting in the overflow, if any row does.
    fn overflow_min(&self) -> Option<f32> {
        (!self.overflow.is_empty()).then(|| {
            self.overflow_min_lanes
                .iter()
                .fold(f32::INFINITY, |a, &b| a.min(b))
        })
    }

    /// Rows queued since the last clear.
    pub fn queued(&self) -> u64 {
        self.queued
    }

    /// Bytes the buffers take.
    pub fn memory_bytes(&self) -> usize {
        self.bounds.memory_bytes()
            + self.rows.capacity() * size_of::<[u64; 2]>()
            + self.upper.capacity() * size_of::<Bound>()
            + self.overflow.capacity() * size_of::<f32>()
            + (self.overflow_tids.capacity() + self.overflow_locations.capacity())
                * size_of::<u64>()
    }

    /// Makes room for `n` more pushes without growing (so that a failed allocation is an error
    /// here, not a process abort in `push`).
    pub fn try_reserve(&mut self, n: usize) -> Result<(), std::collections::TryReserveError> {
        self.bounds.try_reserve(n)?;
        self.rows.try_reserve(n)?;
        // Vector stores of a batch of lanes write whole lanes.
        self.overflow.try_reserve(n + LANES)?;
        self.overflow_tids.try_reserve(n + LANES)?;
        self.overflow_locations.try_reserve(n + LANES)?;
        self.upper
            .try_reserve((self.expected_rows + 1).saturating_sub(self.upper.len()))?;
        Ok(())
    }

    /// Entries the buffers hold without growing.
    pub fn capacity(&self) -> usize {
        self.bounds.capacity() + self.rows.capacity() + self.overflow.capacity()
    }

    /// The lower bound above which a row goes to the overflow: the largest of the
    /// `expected_rows` smallest upper bounds seen. It only decreases.
    #[inline(always)]
    fn cutoff(&self) -> f32 {
        if self.upper.len() == self.expected_rows {
            self.upper.peek().map_or(f32::INFINITY, |b| b.0)
        } else {
            f32::INFINITY
        }
    }

    /// Queues the rows of the lanes set in `lanes` (bit i for lane i; lane i's row is
    /// `[tids[i], locations[i]]`), as [`push`](Self::push) would one by one. Most rows of a scan
    /// are beyond the cutoff: they are compressed into the overflow with three vector stores,
    /// without branches; the others are pushed one by one.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and AVX-512VL.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl")]
    #[inline]
    pub unsafe fn push_lanes_avx512(
        &mut self,
        lower: std::arch::x86_64::__m256,
        upper: std::arch::x86_64::__m256,
        tids: std::arch::x86_64::__m512i,
        locations: std::arch::x86_64::__m512i,
        lanes: u32,
    ) {
        use std::arch::x86_64::*;
        let cutoff = _mm256_set1_ps(self.cutoff());
        let near = u32::from(_mm256_cmp_ps_mask::<_CMP_LE_OQ>(lower, cutoff)) & lanes;
        let far = lanes & !near;
        if far != 0 {
            let mask = far as __mmask8;
            let len = self.overflow.len();
            let count = far.count_ones() as usize;
            self.overflow.reserve(LANES);
            self.overflow_tids.reserve(LANES);
            self.overflow_locations.reserve(LANES);
            // SAFETY: each buffer has room for LANES more elements from `len` (reserved above);
            // the first `count` stored lanes are the far rows, in lane order, and only they
            // become part of the buffers.
            unsafe {
                _mm256_storeu_ps(
                    self.overflow.as_mut_ptr().add(len),
                    _mm256_maskz_compress_ps(mask, lower),
                );
                _mm512_storeu_si512(
                    self.overflow_tids.as_mut_ptr().add(len).cast(),
                    _mm512_maskz_compress_epi64(mask, tids),
                );
                _mm512_storeu_si512(
                    self.overflow_locations.as_mut_ptr().add(len).cast(),
                    _mm512_maskz_compress_epi64(mask, locations),
                );
                self.overflow.set_len(len + count);
                self.overflow_tids.set_len(len + count);
                self.overflow_locations.set_len(len + count);
                // min(lower, previous) keeps the previous minimum when a bound is NaN, as
                // f32::min does in the row-by-row path.
                let previous = _mm256_loadu_ps(self.overflow_min_lanes.as_ptr());
                let min = _mm256_mask_min_ps(previous, mask, lower, previous);
                _mm256_storeu_ps(self.overflow_min_lanes.as_mut_ptr(), min);
            }
            self.queued += count as u64;
        }
        if near != 0 {
            let (mut lowers, mut uppers) = ([0f32; LANES], [0f32; LANES]);
            let (mut tid_lanes, mut location_lanes) = ([0u64; LANES], [0u64; LANES]);
            // SAFETY: stores of eight lanes into eight-element arrays.
            unsafe {
                _mm256_storeu_ps(lowers.as_mut_ptr(), lower);
                _mm256_storeu_ps(uppers.as_mut_ptr(), upper);
                _mm512_storeu_si512(tid_lanes.as_mut_ptr().cast(), tids);
                _mm512_storeu_si512(location_lanes.as_mut_ptr().cast(), locations);
            }
            let mut near = near;
            while near != 0 {
                let i = near.trailing_zeros() as usize;
                near &= near - 1;
                self.push([lowers[i], uppers[i]], [tid_lanes[i], location_lanes[i]]);
            }
        }
    }

    /// Queues a row with bounds `[lower, upper]`.
    #[inline(always)]
    pub fn push(&mut self, [lower, upper]: [f32; 2], row: [u64; 2]) {
        self.queued += 1;
        let cutoff = self.cutoff();
        if upper < cutoff {
            self.upper.push(Bound(upper));
            if self.upper.len() > self.expected_rows {
                self.upper.pop();
            }
        }
        if lower <= cutoff {
            self.bounds.push(lower, self.rows.len() as u64);
            self.rows.push(row);
        } else {
            self.overflow.push(lower);
            self.overflow_tids.push(row[0]);
            self.overflow_locations.push(row[1]);
            self.overflow_min_lanes[0] = self.overflow_min_lanes[0].min(lower);
        }
    }

    /// Whether the overflow's smallest row comes before the sorted rows' next: only then can the
    /// next row to pop be one of its rows.
    fn overflow_due(&mut self) -> bool {
        let Some(min) = self.overflow_min() else {
            return false;
        };
        self.bounds.peek_nearest().is_none_or(|(b, _)| min < b)
    }

    /// Sorts the overflow in when it is due; the room for it is reserved first, so that no
    /// memory is a returned error rather than a process abort.
    fn admit_overflow(&mut self) -> Result<(), std::collections::TryReserveError> {
        if self.overflow_due() {
            self.bounds.try_reserve(self.overflow.len())?;
            self.rows.try_reserve(self.overflow.len())?;
            for (i, &bound) in self.overflow.iter().enumerate() {
                self.bounds.push(bound, self.rows.len() as u64);
                self.rows
                    .push([self.overflow_tids[i], self.overflow_locations[i]]);
            }
            self.clear_overflow();
        }
        Ok(())
    }

    /// The smallest lower bound waiting, without sorting the overflow into the queue: deciding
    /// that no waiting row can come before an exact candidate needs only the overflow's minimum,
    /// and most scans stop there.
    pub fn peek_bound(&mut self) -> Option<f32> {
        let queued = self.bounds.peek_nearest().map(|(bound, _)| bound);
        match (queued, self.overflow_min()) {
            (Some(queued), Some(overflow)) => Some(queued.min(overflow)),
            (queued, overflow) => queued.or(overflow),
        }
    }

    /// Rows soon to come out of [`pop`](Self::pop) (see `Candidates::upcoming`): up to `n`, for
    /// prefetching.
    pub fn upcoming(&self, n: usize) -> impl Iterator<Item = [u64; 2]> + '_ {
        self.bounds.upcoming(n).map(|slot| self.rows[slot as usize])
    }

    /// Removes and returns the row with the smallest lower bound.
    #[cfg(test)]
    pub fn pop(&mut self) -> Option<(f32, [u64; 2])> {
        self.try_pop().expect("memory to sort the waiting rows in")
    }

    /// [`pop`](Self::pop), with a failure to grow the sorted rows as an error.
    pub fn try_pop(
        &mut self,
    ) -> Result<Option<(f32, [u64; 2])>, std::collections::TryReserveError> {
        self.admit_overflow()?;
        Ok(self
            .bounds
            .pop_nearest()
            .map(|(bound, slot)| (bound, self.rows[slot as usize])))
    }
}

/// What a page's entries added to a queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    /// Live entries whose lower bound is within the threshold.
    pub rows: usize,
    /// Whether some queued entry holds a heap TID outside 1..=`max_offset` offsets or block
    /// 0xFFFFFFFF (a damaged page: the caller must not hand it out).
    pub bad_tid: bool,
}

/// The loop behind [`super::PreparedQuery::queue_entries`], with the estimator inlined.
#[inline(always)]
pub(crate) fn queue_with(
    entries: &[u8],
    format: EntryFormat,
    threshold: f32,
    max_offset: u16,
    queue: &mut RerankQueue,
    mut bounds: impl FnMut(&[u8]) -> [f32; 2],
) -> Queued {
    let stride = format.stride();
    let code = format.code_range();
    let mut queued = Queued::default();
    for entry in entries.chunks_exact(stride) {
        if entry_header(entry, 0).1.is_dead() {
            continue;
        }
        let row_bounds = bounds(&entry[code.clone()]);
        if row_bounds[0] <= threshold {
            queue_entry(entry, format, row_bounds, max_offset, queue, &mut queued);
        }
    }
    queued
}

/// Queues one live entry with its bounds, checking its heap TID.
#[inline(always)]
fn queue_entry(
    entry: &[u8],
    format: EntryFormat,
    bounds: [f32; 2],
    max_offset: u16,
    queue: &mut RerankQueue,
    queued: &mut Queued,
) {
    let row = entry_row(entry, format);
    queued.bad_tid |= !row.valid_tid(max_offset);
    queue.push(bounds, row.row);
    queued.rows += 1;
}

/// What the queue needs of an entry.
#[derive(Debug, Clone, Copy)]
struct EntryRow {
    /// `[heap TID, vector location]` as the queue holds them.
    pub row: [u64; 2],
}

impl EntryRow {
    /// Whether the heap TID is one PostgreSQL could have given: a real block and a line pointer
    /// in 1..=`max_offset`.
    #[inline(always)]
    fn valid_tid(&self, max_offset: u16) -> bool {
        let tid = Tid::from_u64(self.row[0]);
        tid.block != u32::MAX && tid.offset != 0 && tid.offset <= max_offset
    }
}

#[inline(always)]
fn entry_row(entry: &[u8], format: EntryFormat) -> EntryRow {
    let (tid, _) = entry_header(entry, 0);
    let location = if format.located {
        let l = format.location_of(entry);
        (u64::from(l.block) << 16) | u64::from(l.offset)
    } else {
        NO_LOCATION
    };
    EntryRow {
        row: [tid.to_u64(), location],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_rows_come_back_in_order() {
        // Rows pushed in a scrambled order come out by lower bound, whether they went to the
        // sorted candidates or waited in the overflow.
        let mut queue = RerankQueue::new();
        let mut expected = Vec::new();
        for i in 0..1000u64 {
            let lower = ((i * 7919) % 1000) as f32;
            queue.push([lower, lower + 5.0], [i, i]);
            expected.push((lower, i));
        }
        expected.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            queue.overflow.len() > 500,
            "most rows wait in the overflow: {}",
            queue.overflow.len()
        );
        let mut got = Vec::new();
        while let Some((bound, [tid, _])) = queue.pop() {
            got.push((bound, tid));
        }
        assert_eq!(got, expected);
        assert_eq!(queue.queued(), 1000);
    }

    #[test]
    fn rows_come_out_in_the_same_order_whatever_is_expected() {
        // Expecting fewer rows sends more to the overflow; popping past them still gives every
        // row in bound order, with the same bound ties (by row) as the default.
        let drain = |expected: Option<usize>| {
            let mut queue = RerankQueue::new();
            if let Some(rows) = expected {
                queue.expect_rows(rows);
            }
            for i in 0..2000u64 {
                let lower = ((i * 7919) % 1009) as f32;
                queue.push([lower, lower + ((i % 5) * 30) as f32], [i, !i]);
            }
            let overflow = queue.overflow.len();
            let mut out = Vec::new();
            while let Some((bound, row)) = queue.pop() {
                out.push((bound, row));
            }
            assert!(out.windows(2).all(|pair| pair[0].0 <= pair[1].0));
            out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            (out, overflow)
        };
        let (all, default_overflow) = drain(None);
        assert_eq!(all.len(), 2000);
        for rows in [OVERFLOW_AFTER + 10, OVERFLOW_AFTER, 12, 3, 1, 0] {
            let (out, overflow) = drain(Some(rows));
            assert_eq!(out, all, "expecting {rows}");
            if rows < OVERFLOW_AFTER {
                assert!(
                    overflow > default_overflow,
                    "expecting {rows}: {overflow} waiting"
                );
            } else {
                assert_eq!(overflow, default_overflow);
            }
        }
    }

    #[test]
    fn peek_bound_is_the_next_bound_and_leaves_the_overflow_alone() {
        // A far row queued first (before any cutoff) stays among the sorted candidates while
        // nearer rows queued later wait in the overflow. peek_bound reports the smallest bound of
        // all rows at every step without sorting the overflow in; only a pop that needs it does.
        let mut queue = RerankQueue::new();
        queue.push([500.0, 501.0], [500, 500]);
        for i in 1..200u64 {
            queue.push([i as f32, i as f32 + 1.0], [i, i]);
        }
        let waiting = queue.overflow.len();
        assert!(waiting > 100, "rows wait in the overflow: {waiting}");
        let mut expected: Vec<f32> = (1..200).map(|i| i as f32).collect();
        expected.push(500.0);
        let sorted_first = expected.len() - waiting - 1;
        for (n, &bound) in expected.iter().enumerate() {
            assert_eq!(queue.peek_bound(), Some(bound));
            if n <= sorted_first {
                // Up to the overflow's smallest row: the far row is still sorted, nothing moved.
                assert_eq!(queue.overflow.len(), waiting, "step {n}");
            }
            assert_eq!(queue.pop().map(|(b, _)| b), Some(bound));
        }
        assert_eq!(queue.peek_bound(), None);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn lanes_queue_like_rows_one_by_one() {
        // push_lanes_avx512 takes the rows of the set lanes only, and they come out in the same
        // order as rows pushed one at a time, overflow or not.
        if !(std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl"))
        {
            eprintln!("no AVX-512 on this CPU: scans never call push_lanes_avx512 here");
            return;
        }
        let (mut by_lanes, mut one_by_one) = (RerankQueue::new(), RerankQueue::new());
        let mut taken = 0;
        for batch in 0..200u64 {
            let lane = |i: usize| batch * LANES as u64 + i as u64;
            let lower: [f32; LANES] = std::array::from_fn(|i| ((lane(i) * 7919) % 1601) as f32);
            let upper: [f32; LANES] = std::array::from_fn(|i| lower[i] + (i % 3) as f32 * 40.0);
            let tids: [u64; LANES] = std::array::from_fn(lane);
            let locations: [u64; LANES] = std::array::from_fn(|i| !lane(i));
            let lanes = ((batch * 0x9E37_79B9) >> 7) as u32 & 0xFF;
            use std::arch::x86_64::*;
            // SAFETY: the CPU's AVX-512F and AVX-512VL were detected; loads of eight lanes from
            // eight-element arrays.
            unsafe {
                by_lanes.push_lanes_avx512(
                    _mm256_loadu_ps(lower.as_ptr()),
                    _mm256_loadu_ps(upper.as_ptr()),
                    _mm512_loadu_si512(tids.as_ptr().cast()),
                    _mm512_loadu_si512(locations.as_ptr().cast()),
                    lanes,
                )
            };
            for i in (0..LANES).filter(|i| lanes >> i & 1 != 0) {
                one_by_one.push([lower[i], upper[i]], [tids[i], locations[i]]);
                taken += 1;
            }
        }
        assert!(by_lanes.overflow.len() > taken / 2, "most rows overflow");
        assert_eq!(by_lanes.queued(), taken as u64);
        // Rows come out by lower bound (ties in any order): sorted by row within each bound.
        let drain = |queue: &mut RerankQueue| {
            let mut out = Vec::new();
            while let Some((bound, row)) = queue.pop() {
                out.push((bound, row));
            }
            assert!(
                out.windows(2).all(|pair| pair[0].0 <= pair[1].0),
                "rows come out by lower bound"
            );
            out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            out
        };
        let expected = drain(&mut one_by_one);
        assert_eq!(expected.len(), taken);
        assert_eq!(drain(&mut by_lanes), expected);
    }
}
