//! Random sampling for the index build: which heap blocks to read ([`block_sample`]) and which of
//! their rows to keep for k-means ([`Reservoir`]). Both are seeded so that a build can be
//! reproduced.

use rand::distributions::Open01;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A uniform random sample of at most `capacity` items from a stream of unknown length.
///
/// Uses Li's Algorithm L: once the reservoir is full it draws how many items to skip before the
/// next replacement, so the random number generator runs O(capacity · log(seen / capacity)) times
/// rather than once per item, and [`Reservoir::offer_with`] lets the caller avoid building the
/// items that are skipped (e.g. detoasting rows).
#[derive(Debug, Clone)]
pub struct Reservoir<T> {
    items: Vec<T>,
    capacity: usize,
    seen: u64,
    /// 1-based position in the stream of the next item that replaces a random slot.
    next_replacement: u64,
    /// Algorithm L's running `W`: the largest of `capacity` uniform keys kept so far.
    w: f64,
    rng: StdRng,
}

impl<T> Reservoir<T> {
    /// Reserves room for `capacity` items up front, so an out-of-memory failure happens here
    /// rather than halfway through a scan.
    pub fn new(capacity: usize, seed: u64) -> Self {
        Self {
            items: Vec::with_capacity(capacity),
            capacity,
            seen: 0,
            next_replacement: u64::MAX,
            w: 1.0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn offer(&mut self, item: T) {
        self.offer_with(|| item);
    }

    /// Counts one more item of the stream; calls `make` only if the item is kept.
    pub fn offer_with(&mut self, make: impl FnOnce() -> T) {
        self.seen += 1;
        if self.items.len() < self.capacity {
            self.items.push(make());
            if self.items.len() == self.capacity {
                self.advance_w();
                self.schedule_next();
            }
        } else if self.seen == self.next_replacement {
            let slot = self.rng.gen_range(0..self.capacity);
            self.items[slot] = make();
            self.advance_w();
            self.schedule_next();
        }
    }

    /// Whether the next offered item will be kept; lets a caller skip reading it altogether.
    pub fn wants_next(&self) -> bool {
        self.items.len() < self.capacity || self.seen + 1 == self.next_replacement
    }

    fn advance_w(&mut self) {
        let u: f64 = self.rng.sample(Open01);
        self.w *= (u.ln() / self.capacity as f64).exp();
    }

    fn schedule_next(&mut self) {
        let u: f64 = self.rng.sample(Open01);
        // ln(1 - w) via ln_1p stays accurate when w is tiny after a long stream; a zero
        // denominator gives +∞, which the saturating cast turns into "never".
        let skip = (u.ln() / (-self.w).ln_1p()).floor() as u64;
        self.next_replacement = self.seen.saturating_add(skip).saturating_add(1);
    }

    /// Items offered so far, kept or not.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn as_slice(&self) -> &[T] {
        &self.items
    }

    /// The sample, in no particular order.
    pub fn into_vec(self) -> Vec<T> {
        self.items
    }
}

/// A sorted uniform random subset of `target` block numbers out of `0..total_blocks` (all of
/// them if `target >= total_blocks`), chosen like PostgreSQL's `BlockSampler`. Draws one random
/// number per block up to the last one chosen, a few nanoseconds each: about half a second for
/// a terabyte of heap.
pub fn block_sample(total_blocks: u32, target: usize, seed: u64) -> Vec<u32> {
    sorted_subset(
        total_blocks as usize,
        target,
        &mut StdRng::seed_from_u64(seed),
    )
}

/// A sorted uniform random subset of `min(target, population)` distinct values from
/// `0..population`, by Knuth's Algorithm S (selection sampling): one pass, output already sorted,
/// no memory beyond the result. `population` must fit in `u32` indices.
pub fn sorted_subset(population: usize, target: usize, rng: &mut impl Rng) -> Vec<u32> {
    assert!(
        population as u64 <= u64::from(u32::MAX) + 1,
        "population of {population} does not fit u32 indices"
    );
    let target = target.min(population);
    let mut chosen = Vec::with_capacity(target);
    for candidate in 0..population {
        let needed = target - chosen.len();
        if needed == 0 {
            break;
        }
        let left = population - candidate;
        if rng.gen::<f64>() * (left as f64) < needed as f64 {
            chosen.push(candidate as u32);
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pearson's statistic of `observed` counts against a uniform expectation.
    fn chi_square(observed: &[u64]) -> f64 {
        let total: u64 = observed.iter().sum();
        let expected = total as f64 / observed.len() as f64;
        observed
            .iter()
            .map(|&o| (o as f64 - expected).powi(2) / expected)
            .sum()
    }

    #[test]
    fn reservoir_keeps_everything_until_full() {
        let mut reservoir = Reservoir::new(10, 1);
        (0..7).for_each(|i| reservoir.offer(i));
        assert_eq!(reservoir.seen(), 7);
        assert_eq!(reservoir.into_vec(), (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn reservoir_of_zero_capacity_keeps_nothing() {
        let mut reservoir = Reservoir::new(0, 1);
        (0..100).for_each(|i| reservoir.offer(i));
        assert!(reservoir.is_empty());
        assert_eq!(reservoir.seen(), 100);
    }

    #[test]
    fn reservoir_sample_is_distinct_and_sized() {
        let mut reservoir = Reservoir::new(100, 9);
        (0..100_000u32).for_each(|i| reservoir.offer(i));
        let mut sample = reservoir.into_vec();
        sample.sort_unstable();
        sample.dedup();
        assert_eq!(sample.len(), 100);
    }

    #[test]
    fn reservoir_inclusion_is_uniform() {
        const STREAM: usize = 50;
        const CAPACITY: usize = 5;
        const TRIALS: u64 = 20_000;
        let mut inclusions = [0u64; STREAM];
        for seed in 0..TRIALS {
            let mut reservoir = Reservoir::new(CAPACITY, seed);
            (0..STREAM).for_each(|i| reservoir.offer(i));
            reservoir
                .into_vec()
                .into_iter()
                .for_each(|i| inclusions[i] += 1);
        }
        // 49 degrees of freedom: the 99.99th percentile is about 95.
        let statistic = chi_square(&inclusions);
        assert!(statistic < 95.0, "chi-square {statistic}: {inclusions:?}");
    }

    #[test]
    fn reservoir_is_uniform_over_a_long_stream() {
        // Late items must be as likely as early ones once skips get long.
        const STREAM: u32 = 100_000;
        const BUCKETS: usize = 20;
        let mut per_bucket = [0u64; BUCKETS];
        for seed in 0..200 {
            let mut reservoir = Reservoir::new(50, seed);
            (0..STREAM).for_each(|i| reservoir.offer(i));
            for i in reservoir.into_vec() {
                per_bucket[i as usize * BUCKETS / STREAM as usize] += 1;
            }
        }
        // 19 degrees of freedom: the 99.99th percentile is about 50.
        let statistic = chi_square(&per_bucket);
        assert!(statistic < 50.0, "chi-square {statistic}: {per_bucket:?}");
    }

    #[test]
    fn offer_with_builds_only_kept_items() {
        let mut built = 0;
        let mut reservoir = Reservoir::new(10, 3);
        for i in 0..10_000 {
            let wanted = reservoir.wants_next();
            let before = built;
            reservoir.offer_with(|| {
                built += 1;
                i
            });
            assert_eq!(wanted, built > before);
        }
        assert!(built < 200, "built {built} items for a reservoir of 10");
    }

    #[test]
    fn reservoir_is_reproducible() {
        let run = |seed| {
            let mut reservoir = Reservoir::new(20, seed);
            (0..5000).for_each(|i| reservoir.offer(i));
            reservoir.into_vec()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn block_sample_is_sorted_distinct_and_in_range() {
        for (total, target) in [
            (0, 10),
            (1, 1),
            (10, 3),
            (1000, 300),
            (100_000, 3000),
            (50, 50),
            (5, 100),
        ] {
            let blocks = block_sample(total, target, 7);
            assert_eq!(blocks.len(), target.min(total as usize));
            assert!(blocks.windows(2).all(|w| w[0] < w[1]));
            assert!(blocks.iter().all(|&b| b < total));
        }
    }

    #[test]
    fn block_sample_is_uniform() {
        const TOTAL: u32 = 40;
        let mut hits = [0u64; TOTAL as usize];
        for seed in 0..10_000 {
            block_sample(TOTAL, 7, seed)
                .into_iter()
                .for_each(|b| hits[b as usize] += 1);
        }
        // 39 degrees of freedom: the 99.99th percentile is about 80.
        let statistic = chi_square(&hits);
        assert!(statistic < 80.0, "chi-square {statistic}: {hits:?}");
    }

    #[test]
    fn block_sample_is_reproducible() {
        assert_eq!(block_sample(10_000, 100, 5), block_sample(10_000, 100, 5));
        assert_ne!(block_sample(10_000, 100, 5), block_sample(10_000, 100, 6));
    }
}
