//! Lazy top-k against a full sort, with interleaved pushes, duplicates and NaN.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use pgivf_core::topk::Candidates;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// The documented order: ascending distance (NaN last, -0 == 0), then ascending payload.
fn reference_order(a: &(f32, u64), b: &(f32, u64)) -> Ordering {
    let distance = match (a.0.is_nan(), b.0.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.0.partial_cmp(&b.0).unwrap(),
    };
    distance.then(a.1.cmp(&b.1))
}

/// Entries equal under `reference_order` may come out in either order; compare what is observable.
fn assert_same_entry(actual: (f32, u64), expected: (f32, u64), context: &str) {
    assert_eq!(actual.1, expected.1, "{context}: payload");
    assert!(
        actual.0 == expected.0 || (actual.0.is_nan() && expected.0.is_nan()),
        "{context}: {} vs {}",
        actual.0,
        expected.0
    );
}

fn random_distance(rng: &mut SmallRng) -> f32 {
    match rng.gen_range(0..20) {
        0 => f32::NAN,
        1 => -f32::NAN,
        2 => f32::INFINITY,
        3 => f32::NEG_INFINITY,
        4 => 0.0,
        5 => -0.0,
        // Few distinct values, so that many distances tie.
        6..=9 => rng.gen_range(0..8) as f32,
        _ => rng.gen_range(-1000.0..1000.0),
    }
}

fn random_candidates(rng: &mut SmallRng, n: usize) -> Vec<(f32, u64)> {
    (0..n)
        .map(|_| {
            // Small payload range: equal (distance, payload) pairs happen too.
            let payload = if rng.gen_bool(0.5) {
                rng.gen_range(0..50)
            } else {
                rng.gen()
            };
            (random_distance(rng), payload)
        })
        .collect()
}

#[test]
fn drains_in_full_sort_order() {
    let mut rng = SmallRng::seed_from_u64(1);
    for n in [0, 1, 2, 63, 64, 65, 127, 128, 129, 1000, 5000, 100_000] {
        let entries = random_candidates(&mut rng, n);
        let mut candidates = Candidates::with_capacity(n);
        for &(distance, payload) in &entries {
            candidates.push(distance, payload);
        }
        assert_eq!(candidates.len(), n);
        let mut expected = entries.clone();
        expected.sort_by(reference_order);
        for (i, &entry) in expected.iter().enumerate() {
            let actual = candidates.pop_nearest().expect("not yet drained");
            assert_same_entry(actual, entry, &format!("n {n} pop {i}"));
            assert_eq!(candidates.len(), n - i - 1);
        }
        assert_eq!(candidates.pop_nearest(), None);
        assert!(candidates.is_empty());
    }
}

#[test]
fn first_k_of_many() {
    let mut rng = SmallRng::seed_from_u64(2);
    let distances: Vec<f32> = (0..100_000).map(|_| rng.gen()).collect();
    let payloads: Vec<u64> = (0..100_000).collect();
    let mut candidates = Candidates::new();
    candidates.extend_from(&distances, &payloads);
    let mut expected: Vec<(f32, u64)> = distances.iter().copied().zip(payloads).collect();
    expected.sort_by(reference_order);
    for (i, &entry) in expected.iter().take(10).enumerate() {
        let actual = candidates.pop_nearest().unwrap();
        assert_eq!(actual, entry, "pop {i}");
    }
    assert_eq!(candidates.len(), 100_000 - 10);
}

#[test]
fn keeps_distance_bits() {
    let mut candidates = Candidates::new();
    candidates.push(-0.0, 2);
    candidates.push(0.0, 1);
    candidates.push(f32::from_bits(0x7fc0_1234), 0);
    let first = candidates.pop_nearest().unwrap();
    assert_eq!((first.0.to_bits(), first.1), (0.0f32.to_bits(), 1));
    let second = candidates.pop_nearest().unwrap();
    assert_eq!((second.0.to_bits(), second.1), ((-0.0f32).to_bits(), 2));
    let third = candidates.pop_nearest().unwrap();
    assert_eq!((third.0.to_bits(), third.1), (0x7fc0_1234, 0));
    assert_eq!(candidates.pop_nearest(), None);
}

#[test]
fn nan_sorts_after_infinity() {
    let mut candidates = Candidates::new();
    candidates.extend_from(
        &[f32::NAN, f32::INFINITY, -f32::NAN, f32::NEG_INFINITY, 1.0],
        &[1, 2, 0, 3, 4],
    );
    let order: Vec<u64> = std::iter::from_fn(|| candidates.pop_nearest())
        .map(|(_, payload)| payload)
        .collect();
    assert_eq!(order, [3, 4, 2, 0, 1]);
}

/// `reference_order` reversed, so that `BinaryHeap` pops the nearest entry.
struct Nearest((f32, u64));

impl PartialEq for Nearest {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Nearest {}

impl PartialOrd for Nearest {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Nearest {
    fn cmp(&self, other: &Self) -> Ordering {
        reference_order(&other.0, &self.0)
    }
}

/// Pushes between pops, checked against a heap of what is left.
#[test]
fn interleaved_pushes_and_pops() {
    let mut rng = SmallRng::seed_from_u64(3);
    for round in 0..40 {
        let mut candidates = Candidates::new();
        let mut remaining = BinaryHeap::new();
        let operations = rng.gen_range(100..3000);
        for step in 0..operations {
            let context = format!("round {round} step {step}");
            match rng.gen_range(0..10) {
                0..=3 => {
                    let count = rng.gen_range(0..200);
                    let batch = random_candidates(&mut rng, count);
                    let (distances, payloads): (Vec<f32>, Vec<u64>) = batch.iter().copied().unzip();
                    candidates.extend_from(&distances, &payloads);
                    remaining.extend(batch.into_iter().map(Nearest));
                }
                4..=5 => {
                    let entry = random_candidates(&mut rng, 1)[0];
                    candidates.push(entry.0, entry.1);
                    remaining.push(Nearest(entry));
                }
                _ => {
                    for _ in 0..rng.gen_range(1..300) {
                        let expected = remaining.pop().map(|nearest| nearest.0);
                        match (candidates.pop_nearest(), expected) {
                            (Some(actual), Some(expected)) => {
                                assert_same_entry(actual, expected, &context)
                            }
                            (actual, expected) => assert_eq!(actual, expected, "{context}"),
                        }
                    }
                }
            }
            assert_eq!(candidates.len(), remaining.len(), "{context}");
        }
    }
}

#[test]
fn clear_allows_reuse() {
    let mut rng = SmallRng::seed_from_u64(4);
    let mut candidates = Candidates::with_capacity(1000);
    for _ in 0..5 {
        let entries = random_candidates(&mut rng, 1000);
        for &(distance, payload) in &entries {
            candidates.push(distance, payload);
        }
        // Leave most behind so the rescan starts from a half-consumed state.
        for _ in 0..100 {
            candidates.pop_nearest().unwrap();
        }
        candidates.push(-1.0, 7);
        candidates.clear();
        assert!(candidates.is_empty());
        assert_eq!(candidates.pop_nearest(), None);

        let mut fresh = random_candidates(&mut rng, 300);
        for &(distance, payload) in &fresh {
            candidates.push(distance, payload);
        }
        fresh.sort_by(reference_order);
        for (i, &entry) in fresh.iter().enumerate() {
            assert_same_entry(
                candidates.pop_nearest().unwrap(),
                entry,
                &format!("pop {i}"),
            );
        }
        assert_eq!(candidates.pop_nearest(), None);
    }
}

#[test]
#[should_panic(expected = "one payload per distance")]
fn extend_from_rejects_mismatched_lengths() {
    Candidates::new().extend_from(&[1.0, 2.0], &[1]);
}

#[test]
fn peek_shows_what_pop_returns_while_pushes_continue() {
    let mut rng = SmallRng::seed_from_u64(23);
    let mut candidates = Candidates::new();
    let mut all = random_candidates(&mut rng, 500);
    for &(distance, payload) in &all {
        candidates.push(distance, payload);
    }
    assert_eq!(Candidates::new().peek_nearest(), None);
    let mut popped = Vec::new();
    for round in 0..5 {
        for _ in 0..60 {
            let peeked = candidates.peek_nearest().unwrap();
            let got = candidates.pop_nearest().unwrap();
            assert_same_entry(peeked, got, &format!("round {round}"));
            popped.push(got);
        }
        // A later batch, some of it nearer than what was already returned.
        let more = random_candidates(&mut rng, 100);
        for &(distance, payload) in &more {
            candidates.push(distance, payload + 1_000_000 * (round + 1));
        }
        all.extend(more.iter().map(|&(d, p)| (d, p + 1_000_000 * (round + 1))));
    }
    while let Some(peeked) = candidates.peek_nearest() {
        assert_same_entry(peeked, candidates.pop_nearest().unwrap(), "drain");
        popped.push(peeked);
    }
    assert_eq!(popped.len(), all.len());
}
