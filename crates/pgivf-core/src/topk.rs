//! Lazy top-k over `(distance, payload)` candidates.
//!
//! An index scan collects up to hundreds of thousands of candidates, but the executor usually pulls
//! only the first 10 to 100. Sorting everything up front would waste most of the work, so candidates
//! are sorted in chunks as they are consumed: each chunk is split off with a linear-time selection
//! and only that chunk is sorted. Chunks double in size, so draining everything costs about as much
//! as one sort, and pulling `k` costs O(n + k log k).

use std::collections::BinaryHeap;

/// Smallest chunk sorted at once: enough for a typical `LIMIT`, small enough to sort instantly.
const FIRST_CHUNK: usize = 64;

/// Candidates returned nearest first.
///
/// [`pop_nearest`](Self::pop_nearest) returns the nearest candidate among all pushed and not yet
/// returned, whenever they were pushed: iterative scans add candidates after some were returned,
/// and those may be nearer than ones already sorted (but never come out before ones already
/// returned). Order is ascending distance, then ascending payload; NaN distances come last, and
/// `-0.0` ties with `0.0`.
///
/// Each entry is one `u128` that compares like `(distance, payload)` in that order, complemented
/// so that the nearest entry is the largest: sorting ascending puts it at the end, where `Vec::pop`
/// takes it, and `BinaryHeap` (a max-heap) yields it first.
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    /// Entries not yet sorted, in no particular order. None is nearer than `boundary`.
    pool: Vec<u128>,
    /// The current sorted chunk, nearest last. None is farther than `boundary`.
    ready: Vec<u128>,
    /// Entries pushed after a chunk was split off that are nearer than `boundary`, so they must
    /// come out before everything still in `pool`.
    late: BinaryHeap<u128>,
    /// The farthest entry of the last chunk split off from `pool`; `None` before the first.
    boundary: Option<u128>,
    /// Size of the last chunk split off from `pool`.
    last_chunk: usize,
}

impl Candidates {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            pool: Vec::with_capacity(n),
            ..Self::default()
        }
    }

    /// Forgets all candidates but keeps the allocations, for rescans.
    pub fn clear(&mut self) {
        self.pool.clear();
        self.ready.clear();
        self.late.clear();
        self.boundary = None;
        self.last_chunk = 0;
    }

    #[inline]
    pub fn push(&mut self, distance: f32, payload: u64) {
        let entry = encode(distance, payload);
        match self.boundary {
            Some(boundary) if entry > boundary => self.late.push(entry),
            _ => self.pool.push(entry),
        }
    }

    /// Pushes `distances[i]` with `payloads[i]` for every `i`. Panics if the lengths differ.
    pub fn extend_from(&mut self, distances: &[f32], payloads: &[u64]) {
        assert_eq!(distances.len(), payloads.len(), "one payload per distance");
        let entries = distances
            .iter()
            .zip(payloads)
            .map(|(&distance, &payload)| encode(distance, payload));
        match self.boundary {
            None => self.pool.extend(entries),
            Some(boundary) => {
                for entry in entries {
                    if entry > boundary {
                        self.late.push(entry);
                    } else {
                        self.pool.push(entry);
                    }
                }
            }
        }
    }

    /// Entries the buffers can hold without growing.
    pub fn capacity(&self) -> usize {
        self.pool.capacity() + self.ready.capacity() + self.late.capacity()
    }

    /// Bytes the buffers take.
    pub fn memory_bytes(&self) -> usize {
        self.capacity() * std::mem::size_of::<u128>()
    }

    /// Makes room for `n` more pushes without growing (so that a failed allocation is an error
    /// here, not a process abort in `push`).
    pub fn try_reserve(&mut self, n: usize) -> Result<(), std::collections::TryReserveError> {
        self.pool.try_reserve(n)?;
        // Only entries nearer than the last chunk split off go to `late`.
        if self.boundary.is_some() {
            self.late.try_reserve(n)?;
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.pool.len() + self.ready.len() + self.late.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Next nearest candidate not yet returned; ties go to the smaller payload, NaN comes last.
    pub fn pop_nearest(&mut self) -> Option<(f32, u64)> {
        if self.ready.is_empty() && self.late.is_empty() {
            self.split_off_chunk();
        }
        let entry = match (self.ready.last(), self.late.peek()) {
            (Some(sorted), Some(late)) if late > sorted => self.late.pop(),
            (Some(_), _) => self.ready.pop(),
            (None, _) => self.late.pop(),
        }?;
        Some(decode(entry))
    }

    /// The candidate [`pop_nearest`](Self::pop_nearest) would return next, left in place.
    pub fn peek_nearest(&mut self) -> Option<(f32, u64)> {
        if self.ready.is_empty() && self.late.is_empty() {
            self.split_off_chunk();
        }
        let entry = match (self.ready.last(), self.late.peek()) {
            (Some(sorted), Some(late)) if late > sorted => *late,
            (Some(sorted), _) => *sorted,
            (None, late) => *late?,
        };
        Some(decode(entry))
    }

    /// Payloads of up to `n` candidates soon to come, nearest first: the next of the sorted chunk
    /// (entries pushed since it was split off may come between them). For prefetching.
    pub fn upcoming(&self, n: usize) -> impl Iterator<Item = u64> + '_ {
        self.ready
            .iter()
            .rev()
            .take(n)
            .map(|&entry| decode(entry).1)
    }

    /// Moves the nearest entries of `pool` into `ready`, sorted.
    fn split_off_chunk(&mut self) {
        if self.pool.is_empty() {
            return;
        }
        let chunk = (2 * self.last_chunk).max(FIRST_CHUNK);
        // Once the chunk would cover half the pool, sorting it all is cheaper than selecting first
        // (and it needs no memory, should there be none for the chunk).
        if 2 * chunk >= self.pool.len() || self.ready.try_reserve(chunk).is_err() {
            std::mem::swap(&mut self.ready, &mut self.pool);
        } else {
            let split = self.pool.len() - chunk;
            self.pool.select_nth_unstable(split);
            self.ready.extend(self.pool.drain(split..));
        }
        self.ready.sort_unstable();
        self.last_chunk = self.ready.len();
        self.boundary = self.ready.first().copied();
    }
}

fn encode(distance: f32, payload: u64) -> u128 {
    let key = u128::from(order_key(distance));
    !(key << 96 | u128::from(payload) << 32 | u128::from(distance.to_bits()))
}

fn decode(entry: u128) -> (f32, u64) {
    let fields = !entry;
    (f32::from_bits(fields as u32), (fields >> 32) as u64)
}

/// Maps distances to integers in the same order, with every NaN after +infinity and both zeros
/// equal, so that entries compare as plain integers.
fn order_key(distance: f32) -> u32 {
    if distance.is_nan() {
        return u32::MAX;
    }
    let bits = if distance == 0.0 {
        0
    } else {
        distance.to_bits()
    };
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 1 << 31
    }
}
