//! Filter columns: the scalar columns after the vector in `CREATE INDEX ... USING ivfflat
//! (embedding vector_cosine_ops, category)`.
//!
//! An entry stores a 64-bit hash of each filter column's value, not the value: entries keep a fixed
//! size (so the list format and its page arithmetic are unchanged), and a text value of any length
//! costs 8 bytes. A query's `category = 'x'` or `category = ANY('{x,y}')` becomes a set of accepted
//! hashes per column; an entry whose hashes are all accepted is a candidate. Equal values always
//! hash equal, so no matching row is missed; unequal values may collide (about 2^-64 per pair), so
//! the executor rechecks the condition on the heap row.
//!
//! Each list also has a [`Summary`]: a bloom filter over the hashes of every entry ever added to it.
//! A scan skips lists whose summary rules the query's values out, and counts only the others as
//! probes. Summaries only grow (deleting rows does not clear bits; REINDEX rebuilds them), which keeps
//! them right without coordinating VACUUM with concurrent inserts: a stale bit costs a useless probe,
//! never a missed row.

/// Hash of a NULL filter value. `col = const` never matches NULL, but the row must still be found by
/// queries without that condition, so NULLs are stored like any other value.
pub const NULL_HASH: u64 = 0x6e75_6c6c_6e75_6c6c;

/// The hash of a filter column's value, from the value's bytes (integers as little-endian i64,
/// text as its bytes, uuid as its 16 bytes). `column` (0 for the first filter column) keeps equal
/// values of different columns apart in the shared summary.
pub fn hash_value(column: usize, bytes: &[u8]) -> u64 {
    // FNV-1a over the bytes, then a strong finaliser (splitmix64) so that every output bit depends
    // on every input bit: the bloom filter takes its bit positions from slices of the hash.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (column as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= bytes.len() as u64;
    finalize(h)
}

/// Hash of an integer (int2, int4, int8, bool as 0/1): the same for a value whatever its width.
pub fn hash_integer(column: usize, value: i64) -> u64 {
    hash_value(column, &value.to_le_bytes())
}

fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Bytes of one list's summary: 2,048 bits. With 4 bits per value, a list holding 200 distinct
/// values of its filter columns answers "maybe" for an absent value about 2% of the time.
pub const SUMMARY_BYTES: usize = 256;
const SUMMARY_BITS: u64 = (SUMMARY_BYTES * 8) as u64;
const BITS_PER_VALUE: u64 = 4;

/// One list's bloom filter over its entries' filter hashes.
#[derive(Clone, PartialEq, Eq)]
pub struct Summary {
    pub bits: [u8; SUMMARY_BYTES],
}

impl std::fmt::Debug for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Summary({} bits set)", self.bits_set())
    }
}

impl Default for Summary {
    fn default() -> Self {
        Self {
            bits: [0; SUMMARY_BYTES],
        }
    }
}

/// The bit positions of a hash (double hashing: h1 + i·h2).
fn positions(hash: u64) -> impl Iterator<Item = usize> {
    let h1 = hash & 0xffff_ffff;
    let h2 = (hash >> 32) | 1;
    (0..BITS_PER_VALUE).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % SUMMARY_BITS) as usize)
}

impl Summary {
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut summary = Self::default();
        summary.bits.copy_from_slice(&bytes[..SUMMARY_BYTES]);
        summary
    }

    /// Adds a hash; true if a bit changed (the page needs writing).
    pub fn insert(&mut self, hash: u64) -> bool {
        let mut changed = false;
        for p in positions(hash) {
            let (byte, mask) = (p / 8, 1u8 << (p % 8));
            changed |= self.bits[byte] & mask == 0;
            self.bits[byte] |= mask;
        }
        changed
    }

    /// False only if no entry with this hash was ever added.
    pub fn may_contain(&self, hash: u64) -> bool {
        positions(hash).all(|p| self.bits[p / 8] & (1u8 << (p % 8)) != 0)
    }

    /// Every bit of `other` is set here too.
    pub fn covers(&self, other: &Summary) -> bool {
        self.bits.iter().zip(&other.bits).all(|(a, b)| a & b == *b)
    }

    pub fn union_with(&mut self, other: &Summary) -> bool {
        let mut changed = false;
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            changed |= *b & !*a != 0;
            *a |= b;
        }
        changed
    }

    pub fn bits_set(&self) -> u32 {
        self.bits.iter().map(|b| b.count_ones()).sum()
    }
}

/// An entry's filter hashes, read from the page only when asked for: scans without conditions
/// never decode them.
#[derive(Debug, Clone, Copy)]
pub struct EntryHashes<'a> {
    bytes: &'a [u8],
}

impl<'a> EntryHashes<'a> {
    /// `bytes` holds the hashes back to back, little-endian, 8 bytes each.
    pub fn new(bytes: &'a [u8]) -> Self {
        debug_assert!(bytes.len().is_multiple_of(8));
        Self { bytes }
    }

    pub fn len(&self) -> usize {
        self.bytes.len() / 8
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn get(&self, column: usize) -> Option<u64> {
        let bytes = self.bytes.get(column * 8..column * 8 + 8)?;
        Some(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    pub fn iter(&self) -> impl Iterator<Item = u64> + 'a {
        self.bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    pub fn to_vec(&self) -> Vec<u64> {
        self.iter().collect()
    }
}

/// What a query asks of the filter columns: for each constrained column, the hashes it accepts
/// (one for `=`, several for `= ANY(...)`; none means nothing can match, e.g. `= NULL`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterQuery {
    /// (filter column, accepted hashes sorted), every column at most once.
    conditions: Vec<(usize, Vec<u64>)>,
}

impl FilterQuery {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Adds a condition on `column`; several conditions on one column intersect.
    pub fn require(&mut self, column: usize, mut hashes: Vec<u64>) {
        hashes.sort_unstable();
        hashes.dedup();
        match self.conditions.iter_mut().find(|(c, _)| *c == column) {
            Some((_, existing)) => existing.retain(|h| hashes.binary_search(h).is_ok()),
            None => self.conditions.push((column, hashes)),
        }
    }

    /// No row can match (a condition accepts no value).
    pub fn is_unsatisfiable(&self) -> bool {
        self.conditions.iter().any(|(_, hashes)| hashes.is_empty())
    }

    /// Whether an entry with these filter hashes (one per filter column) may match.
    pub fn matches(&self, entry: EntryHashes<'_>) -> bool {
        self.conditions.iter().all(|(column, accepted)| {
            entry
                .get(*column)
                .is_some_and(|h| accepted.binary_search(&h).is_ok())
        })
    }

    /// Whether a list with this summary may hold a matching entry.
    pub fn list_may_match(&self, summary: &Summary) -> bool {
        self.conditions
            .iter()
            .all(|(_, accepted)| accepted.iter().any(|&h| summary.may_contain(h)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn hashes_separate_columns_values_and_lengths() {
        assert_eq!(hash_value(0, b"books"), hash_value(0, b"books"));
        assert_ne!(hash_value(0, b"books"), hash_value(1, b"books"));
        assert_ne!(hash_value(0, b"books"), hash_value(0, b"book"));
        assert_ne!(hash_value(0, b""), hash_value(0, b"\0"));
        assert_eq!(hash_integer(2, 42), hash_integer(2, 42));
        assert_ne!(hash_integer(2, 42), hash_integer(2, 43));
        assert_ne!(hash_integer(0, 0), NULL_HASH);
    }

    #[test]
    fn summary_has_no_false_negatives_and_few_false_positives() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut summary = Summary::default();
        let present: Vec<u64> = (0..200).map(|i| hash_integer(0, i)).collect();
        for &h in &present {
            summary.insert(h);
        }
        assert!(present.iter().all(|&h| summary.may_contain(h)));
        let false_positives = (0..10_000)
            .filter(|_| summary.may_contain(hash_integer(0, rng.gen_range(1_000_000..i64::MAX))))
            .count();
        assert!(false_positives < 500, "{false_positives} of 10,000");
        // Inserting again changes nothing.
        assert!(!summary.insert(present[0]));
        let mut other = Summary::default();
        assert!(other.insert(hash_integer(1, 5)));
        let mut union = summary.clone();
        assert!(union.union_with(&other));
        assert!(union.covers(&summary) && union.covers(&other) && !summary.covers(&other));
    }

    fn entry(hashes: &[u64]) -> Vec<u8> {
        hashes.iter().flat_map(|h| h.to_le_bytes()).collect()
    }

    #[test]
    fn queries_match_entries_and_lists() {
        let books = hash_value(0, b"books");
        let music = hash_value(0, b"music");
        let games = hash_value(0, b"games");
        let tenant_7 = hash_integer(1, 7);
        let mut query = FilterQuery::new();
        assert!(query.is_empty() && query.matches(EntryHashes::new(&entry(&[books, tenant_7]))));
        query.require(0, vec![books, music, books]);
        query.require(1, vec![tenant_7]);
        assert!(query.matches(EntryHashes::new(&entry(&[books, tenant_7]))));
        assert!(query.matches(EntryHashes::new(&entry(&[music, tenant_7]))));
        assert!(!query.matches(EntryHashes::new(&entry(&[games, tenant_7]))));
        assert!(!query.matches(EntryHashes::new(&entry(&[books, hash_integer(1, 8)]))));
        assert!(!query.matches(EntryHashes::new(&entry(&[books]))));

        let mut list = Summary::default();
        list.insert(games);
        list.insert(tenant_7);
        assert!(!query.list_may_match(&list));
        list.insert(music);
        assert!(query.list_may_match(&list));

        // Two conditions on one column intersect; an empty intersection matches nothing.
        let mut narrow = FilterQuery::new();
        narrow.require(0, vec![books, music]);
        narrow.require(0, vec![music, games]);
        assert!(
            narrow.matches(EntryHashes::new(&entry(&[music])))
                && !narrow.matches(EntryHashes::new(&entry(&[books])))
        );
        narrow.require(0, vec![games]);
        assert!(narrow.is_unsatisfiable() && !narrow.matches(EntryHashes::new(&entry(&[games]))));
    }
}
