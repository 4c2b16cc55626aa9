//! The re-rank queue of a quantized scan: rows by the lower bound of their distance, with their heap
//! TID and vector location, and the loop that fills it from a page's code entries.
//!
//! Most rows a probe estimates are far from the result. A max-heap keeps the `OVERFLOW_AFTER`
//! smallest upper bounds seen; a row whose lower bound is above the largest of them cannot be among
//! the nearest `OVERFLOW_AFTER` rows and waits unsorted in the overflow, which joins the sorted
//! candidates only if a scan reads that far (more rows than a typical LIMIT). That keeps the
//! selection work proportional to the rows that matter.

use super::PreparedQuery;
use crate::page::{entry_header, EntryFormat, Tid};
use crate::topk::Candidates;
use std::collections::BinaryHeap;

/// Rows a scan is expected to hand out before it needs rows from the overflow.
pub const OVERFLOW_AFTER: usize = 32;
/// The location of a row re-ranked from the table.
pub const NO_LOCATION: u64 = u64::MAX;
/// Rows a batch of [`RerankQueue::push_lanes`] holds.
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
#[derive(Debug, Default)]
pub struct RerankQueue {
    bounds: Candidates,
    rows: Vec<[u64; 2]>,
    upper: BinaryHeap<Bound>,
    /// Rows waiting unsorted: their lower bounds, and their rows in `rows` from
    /// `overflow_start` on (sorted candidates' rows come before it).
    overflow: Vec<f32>,
    overflow_rows: Vec<[u64; 2]>,
    overflow_min: Option<f32>,
    queued: u64,
}

impl RerankQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets every row, keeping the allocations.
    pub fn clear(&mut self) {
        self.bounds.clear();
        self.rows.clear();
        self.upper.clear();
        self.overflow.clear();
        self.overflow_rows.clear();
        self.overflow_min = None;
        self.queued = 0;
    }

    /// Rows queued since the last clear.
    pub fn queued(&self) -> u64 {
        self.queued
    }

    /// Entries the buffers hold without growing.
    pub fn capacity(&self) -> usize {
        self.bounds.capacity() + self.rows.capacity() + self.overflow.capacity()
    }

    /// The lower bound above which a row goes to the overflow: the largest of the
    /// `OVERFLOW_AFTER` smallest upper bounds seen. It only decreases.
    #[inline(always)]
    fn cutoff(&self) -> f32 {
        if self.upper.len() == OVERFLOW_AFTER {
            self.upper.peek().map_or(f32::INFINITY, |b| b.0)
        } else {
            f32::INFINITY
        }
    }

    /// Queues the rows of the lanes set in `lanes` (bit i for lane i): lane i's row is
    /// `[tids[i], locations[i]]`. Most rows of a scan are beyond the cutoff: they go to the
    /// overflow without branches; the others one by one.
    #[inline(always)]
    pub fn push_lanes(
        &mut self,
        lower: &[f32; LANES],
        upper: &[f32; LANES],
        tids: &[u64; LANES],
        locations: &[u64; LANES],
        lanes: u32,
    ) {
        // A row whose upper bound tightens the cutoff has its lower bound below it too.
        let cutoff = self.cutoff();
        let mut near = 0u32;
        for (i, &bound) in lower.iter().enumerate() {
            near |= u32::from(bound <= cutoff) << i;
        }
        near &= lanes;
        let far = lanes & !near;
        if far != 0 {
            let (mut bounds, mut far_rows) = ([0f32; LANES], [[0u64; 2]; LANES]);
            let (mut count, mut min) = (0, self.overflow_min.unwrap_or(f32::INFINITY));
            for i in 0..LANES {
                bounds[count] = lower[i];
                far_rows[count] = [tids[i], locations[i]];
                let taken = (far >> i) & 1;
                if taken != 0 {
                    min = min.min(lower[i]);
                }
                count += taken as usize;
            }
            // Whole arrays, then the tail cut: a copy of fixed size, inlined, not a memcpy call.
            let (len, rows_len) = (self.overflow.len(), self.overflow_rows.len());
            self.overflow.extend_from_slice(&bounds);
            self.overflow_rows.extend_from_slice(&far_rows);
            self.overflow.truncate(len + count);
            self.overflow_rows.truncate(rows_len + count);
            self.overflow_min = Some(min);
            self.queued += u64::from(far.count_ones());
        }
        while near != 0 {
            let i = near.trailing_zeros() as usize;
            near &= near - 1;
            self.push([lower[i], upper[i]], [tids[i], locations[i]]);
        }
    }

    /// Queues a row with bounds `[lower, upper]`.
    #[inline(always)]
    pub fn push(&mut self, [lower, upper]: [f32; 2], row: [u64; 2]) {
        self.queued += 1;
        let cutoff = self.cutoff();
        if upper < cutoff {
            self.upper.push(Bound(upper));
            if self.upper.len() > OVERFLOW_AFTER {
                self.upper.pop();
            }
        }
        if lower <= cutoff {
            self.bounds.push(lower, self.rows.len() as u64);
            self.rows.push(row);
        } else {
            self.overflow.push(lower);
            self.overflow_rows.push(row);
            self.overflow_min = Some(self.overflow_min.map_or(lower, |m| m.min(lower)));
        }
    }

    /// The row with the smallest lower bound, left in place.
    pub fn peek(&mut self) -> Option<(f32, [u64; 2])> {
        let queued = self.bounds.peek_nearest();
        if let Some(min) = self.overflow_min {
            if queued.is_none_or(|(b, _)| min < b) {
                for (&bound, &row) in self.overflow.iter().zip(&self.overflow_rows) {
                    self.bounds.push(bound, self.rows.len() as u64);
                    self.rows.push(row);
                }
                self.overflow.clear();
                self.overflow_rows.clear();
                self.overflow_min = None;
                return self.peek();
            }
        }
        queued.map(|(bound, slot)| (bound, self.rows[slot as usize]))
    }

    /// Rows soon to come out of [`pop`](Self::pop) (see `Candidates::upcoming`): up to `n`, for
    /// prefetching.
    pub fn upcoming(&self, n: usize) -> impl Iterator<Item = [u64; 2]> + '_ {
        self.bounds.upcoming(n).map(|slot| self.rows[slot as usize])
    }

    /// Removes and returns the row [`peek`](Self::peek) returns.
    pub fn pop(&mut self) -> Option<(f32, [u64; 2])> {
        self.peek()?;
        let (bound, slot) = self.bounds.pop_nearest()?;
        Some((bound, self.rows[slot as usize]))
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

impl PreparedQuery {
    /// Queues the live entries of a run of whole entries of `format` (one page's worth) whose
    /// lower bound, `factor` standard errors down, is at most `threshold`.
    pub fn queue_entries(
        &self,
        entries: &[u8],
        format: EntryFormat,
        factor: f32,
        threshold: f32,
        max_offset: u16,
        queue: &mut RerankQueue,
    ) -> Queued {
        match self {
            PreparedQuery::Rabitq(q) => {
                q.queue_entries(entries, format, factor, threshold, max_offset, queue)
            }
            PreparedQuery::Sq8(q) => {
                queue_with(entries, format, threshold, max_offset, queue, |c| {
                    q.estimate(c).bounds(factor)
                })
            }
        }
    }
}

/// The loop behind `queue_entries`, with the estimator inlined.
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
    fn lanes_queue_like_rows_one_by_one() {
        // push_lanes takes the rows of the set lanes only, and they come out in the same order
        // as rows pushed one at a time, overflow or not.
        let (mut by_lanes, mut one_by_one) = (RerankQueue::new(), RerankQueue::new());
        let mut taken = 0;
        for batch in 0..200u64 {
            let lane = |i: usize| batch * LANES as u64 + i as u64;
            let lower: [f32; LANES] = std::array::from_fn(|i| ((lane(i) * 7919) % 1601) as f32);
            let upper: [f32; LANES] = std::array::from_fn(|i| lower[i] + (i % 3) as f32 * 40.0);
            let tids: [u64; LANES] = std::array::from_fn(lane);
            let locations: [u64; LANES] = std::array::from_fn(|i| !lane(i));
            let lanes = ((batch * 0x9E37_79B9) >> 7) as u32 & 0xFF;
            by_lanes.push_lanes(&lower, &upper, &tids, &locations, lanes);
            for i in (0..LANES).filter(|i| lanes >> i & 1 != 0) {
                one_by_one.push([lower[i], upper[i]], [tids[i], locations[i]]);
                taken += 1;
            }
        }
        assert!(by_lanes.overflow.len() > taken / 2, "most rows overflow");
        assert_eq!(by_lanes.queued(), taken as u64);
        let drain = |queue: &mut RerankQueue| {
            let mut out = Vec::new();
            while let Some((bound, row)) = queue.pop() {
                out.push((bound, row));
            }
            out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            out
        };
        let expected = drain(&mut one_by_one);
        assert_eq!(expected.len(), taken);
        assert_eq!(drain(&mut by_lanes), expected);
    }
}
