//! The ledger's marks, in generations, so that remembering an event costs
//! the same whether the ledger is empty or holds `store.max_records`.
//!
//! A mark's key starts with its generation's number: a write lands among
//! the newest marks (a few B-tree pages that stay in redb's cache), not at
//! a random place in the whole table, and forgetting the oldest or expired
//! marks drops a whole generation's key range at once. Each generation has
//! a Bloom filter in memory, so the lookup of an event the ledger has never
//! seen (nearly every event) reads no page at all; only a filter's "maybe"
//! costs a B-tree lookup, in that generation alone.
//!
//! The filters are built from the table when the store opens, and a write
//! sets its mark's bits before its transaction commits: a filter never
//! misses a committed mark (a mark whose transaction failed only costs a
//! wasted lookup).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

use redb::{ReadableTable, TableDefinition};

/// generation (high 32 bits) | the mark's first 96 bits -> expires at
/// (whole seconds).
pub(super) const MARKS: TableDefinition<u128, u32> = TableDefinition::new("ledger_generations");

/// Marks a generation holds at most, when `max_records` does not make it
/// smaller (a sixteenth of it, so eviction drops a sixteenth at a time).
const GENERATION_MARKS: u64 = 65_536;
/// Generations a ledger's time to live is cut into at least: one spans at
/// most a sixteenth of it, so expired marks go within that of expiring.
const GENERATIONS_PER_TTL: u32 = 16;
/// Filter bits per mark, and probes per lookup: about 0.05% false
/// positives a generation when it is full.
const BITS_PER_MARK: u64 = 16;
const PROBES: u64 = 11;

/// The bits of a mark a key keeps: its first 96 (of 128).
fn kept(mark: u128) -> u128 {
    mark >> 32
}

/// The key of `mark` in `generation`.
pub(super) fn key(generation: u32, mark: u128) -> u128 {
    (u128::from(generation) << 96) | kept(mark)
}

/// The kept bits of a mark from its key.
fn kept_of_key(key: u128) -> u128 {
    key & ((1u128 << 96) - 1)
}

/// Every key of `generation`.
pub(super) fn generation_keys(generation: u32) -> std::ops::RangeInclusive<u128> {
    key(generation, 0)..=key(generation, u128::MAX)
}

fn generation_of(key: u128) -> u32 {
    // The high 32 bits of a 128-bit key: always fits.
    u32::try_from(key >> 96).unwrap_or(u32::MAX)
}

/// A Bloom filter over a mark's kept bits, which are already a hash
/// (SHA-256): the probes are taken from them by double hashing, with no
/// hashing of their own. Its size is a power of two, so a probe is a mask.
#[derive(Debug)]
struct Filter {
    words: Vec<u64>,
    mask: u64,
}

impl Filter {
    fn for_marks(marks: u64) -> Self {
        let bits = marks
            .saturating_mul(BITS_PER_MARK)
            .next_power_of_two()
            .max(64);
        Self {
            words: vec![0; usize::try_from(bits / 64).unwrap_or(usize::MAX)],
            mask: bits - 1,
        }
    }

    /// The word and bit of each probe of `kept` in a filter of `mask + 1`
    /// bits.
    fn probes(mask: u64, kept: u128) -> impl Iterator<Item = (usize, u64)> {
        // The low 64 bits, and the high 32 spread out (odd, so every
        // probe differs).
        let first = kept as u64;
        let step = ((kept >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..PROBES).map(move |i| {
            let bit = first.wrapping_add(i.wrapping_mul(step)) & mask;
            (usize::try_from(bit / 64).unwrap_or(0), 1u64 << (bit % 64))
        })
    }

    fn insert(&mut self, kept: u128) {
        for (word, bit) in Self::probes(self.mask, kept) {
            self.words[word] |= bit;
        }
    }

    fn may_contain(&self, kept: u128) -> bool {
        Self::probes(self.mask, kept).all(|(word, bit)| self.words[word] & bit != 0)
    }
}

#[derive(Debug)]
struct Generation {
    number: u32,
    marks: u64,
    /// The earliest and latest expiry of its marks (seconds).
    first_expiry: u32,
    last_expiry: u32,
    filter: Filter,
}

#[derive(Debug, Default)]
struct Generations {
    /// Oldest first; the last is the one written to.
    all: VecDeque<Generation>,
    marks: u64,
}

/// The generations of the ledger's marks: their filters, sizes and
/// expiries. Shared by the writer thread (which places and forgets marks)
/// and the readers (which ask where a mark may be).
#[derive(Debug)]
pub(super) struct MarkIndex {
    max_records: u64,
    generation_marks: u64,
    generations: RwLock<Generations>,
    /// The table of the previous release (a mark -> its expiry, no
    /// generations) still holds marks: they are looked up too until its
    /// sweep has removed the last.
    legacy_marks: AtomicBool,
    /// The records table may hold ledger records of the release before
    /// that (a record holding `done`): looked up too, for as long as this
    /// process runs.
    legacy_records: AtomicBool,
}

impl MarkIndex {
    pub(super) fn new(max_records: u64) -> Self {
        Self {
            max_records,
            generation_marks: (max_records / 16).clamp(1, GENERATION_MARKS),
            generations: RwLock::default(),
            legacy_marks: AtomicBool::new(false),
            legacy_records: AtomicBool::new(false),
        }
    }

    /// Marks (and records) the store keeps at most.
    pub(super) fn max_records(&self) -> u64 {
        self.max_records
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Generations> {
        self.generations
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Generations> {
        self.generations
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Builds the generations from the marks in `table` (at open).
    pub(super) fn load(&self, table: &impl ReadableTable<u128, u32>) -> Result<(), redb::Error> {
        let mut loaded = Generations::default();
        for entry in table.iter()? {
            let (key, expires) = entry?;
            let (key, expires) = (key.value(), expires.value());
            let number = generation_of(key);
            if loaded.all.back().is_none_or(|last| last.number != number) {
                loaded.all.push_back(self.generation(number, expires));
            }
            if let Some(generation) = loaded.all.back_mut() {
                add(generation, kept_of_key(key), expires);
            }
            loaded.marks += 1;
        }
        *self.write() = loaded;
        Ok(())
    }

    fn generation(&self, number: u32, expires: u32) -> Generation {
        Generation {
            number,
            marks: 0,
            first_expiry: expires,
            last_expiry: expires,
            filter: Filter::for_marks(self.generation_marks),
        }
    }

    /// Where `mark`, expiring at `expires` (seconds, `now` seconds now),
    /// is written: the key in the newest generation, or in a new one when
    /// that is full or spans its share of the time to live already. Its
    /// filter knows the mark from here on.
    pub(super) fn place(&self, mark: u128, expires: u32, now: u32) -> u128 {
        let span = expires.saturating_sub(now) / GENERATIONS_PER_TTL;
        let mut generations = self.write();
        let full = generations.all.back().is_none_or(|newest| {
            newest.marks >= self.generation_marks
                || expires > newest.first_expiry.saturating_add(span)
        });
        if full {
            let number = generations
                .all
                .back()
                .map_or(0, |newest| newest.number.saturating_add(1));
            let generation = self.generation(number, expires);
            generations.all.push_back(generation);
        }
        generations.marks += 1;
        let Some(newest) = generations.all.back_mut() else {
            // Never: there is one, or one was pushed above.
            return key(0, mark);
        };
        add(newest, kept(mark), expires);
        key(newest.number, mark)
    }

    /// The generations that may hold `mark`, newest first. Empty for
    /// nearly every mark never written.
    pub(super) fn candidates(&self, mark: u128) -> Vec<u32> {
        let kept = kept(mark);
        self.read()
            .all
            .iter()
            .rev()
            .filter(|generation| generation.filter.may_contain(kept))
            .map(|generation| generation.number)
            .collect()
    }

    /// The oldest generation, when it is to go at `now` (seconds): every
    /// mark in it expired, or the ledger holds more than `max_records` and
    /// it is not the only one.
    pub(super) fn to_forget(&self, now: u32) -> Option<u32> {
        let generations = self.read();
        let oldest = generations.all.front()?;
        let expired = oldest.last_expiry <= now;
        let excess = generations.marks > self.max_records && generations.all.len() > 1;
        (expired || excess).then_some(oldest.number)
    }

    /// The oldest generation, `number`, was removed from the table.
    pub(super) fn forgot(&self, number: u32) {
        let mut generations = self.write();
        if generations
            .all
            .front()
            .is_some_and(|oldest| oldest.number == number)
            && let Some(oldest) = generations.all.pop_front()
        {
            generations.marks = generations.marks.saturating_sub(oldest.marks);
        }
    }

    pub(super) fn set_legacy_marks(&self, present: bool) {
        self.legacy_marks.store(present, Ordering::Relaxed);
    }

    pub(super) fn has_legacy_marks(&self) -> bool {
        self.legacy_marks.load(Ordering::Relaxed)
    }

    pub(super) fn set_legacy_records(&self, present: bool) {
        self.legacy_records.store(present, Ordering::Relaxed);
    }

    pub(super) fn has_legacy_records(&self) -> bool {
        self.legacy_records.load(Ordering::Relaxed)
    }
}

fn add(generation: &mut Generation, kept: u128, expires: u32) {
    generation.filter.insert(kept);
    generation.marks += 1;
    generation.first_expiry = generation.first_expiry.min(expires);
    generation.last_expiry = generation.last_expiry.max(expires);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(i: u64) -> u128 {
        super::super::tables::mark_of(&format!("event-{i}"))
    }

    #[test]
    fn a_filter_never_misses_a_mark_it_was_given() {
        let mut filter = Filter::for_marks(1_000);
        for i in 0..1_000 {
            filter.insert(kept(mark(i)));
        }
        assert!((0..1_000).all(|i| filter.may_contain(kept(mark(i)))));
        let false_positives = (1_000..101_000)
            .filter(|&i| filter.may_contain(kept(mark(i))))
            .count();
        // About 0.05% expected; 0.5% would mean a broken filter.
        assert!(false_positives < 500, "{false_positives} of 100,000");
    }

    #[test]
    fn marks_fill_a_generation_then_the_next() {
        let index = MarkIndex::new(160); // 10 marks a generation
        let keys: Vec<u128> = (0..25).map(|i| index.place(mark(i), 1_000, 0)).collect();
        let generations: Vec<u32> = keys.iter().map(|&key| generation_of(key)).collect();
        assert_eq!(generations[..10], [0; 10]);
        assert_eq!(generations[10..20], [1; 10]);
        assert_eq!(generations[20..], [2; 5]);
        assert_eq!(index.candidates(mark(3)), vec![0]);
        assert_eq!(index.candidates(mark(24)), vec![2]);
        assert!(index.candidates(mark(999)).is_empty());
    }

    #[test]
    fn a_generation_spans_a_sixteenth_of_the_time_to_live() {
        let index = MarkIndex::new(1_000_000);
        let first = index.place(mark(0), 1_600, 0);
        let same = index.place(mark(1), 1_700, 100);
        let next = index.place(mark(2), 1_801, 201);
        assert_eq!(generation_of(first), generation_of(same));
        assert_eq!(generation_of(next), generation_of(first) + 1);
    }

    #[test]
    fn the_oldest_generation_goes_when_expired_or_past_the_limit() {
        let index = MarkIndex::new(32); // 2 marks a generation
        for i in 0..32 {
            index.place(mark(i), 1_000, 0);
        }
        assert_eq!(index.to_forget(999), None, "at the limit, none expired");
        index.place(mark(32), 1_000, 0);
        assert_eq!(index.to_forget(999), Some(0), "past the limit");
        index.forgot(0);
        assert_eq!(index.to_forget(999), None);
        assert!(index.candidates(mark(0)).is_empty(), "forgotten");
        assert_eq!(index.to_forget(1_000), Some(1), "expired");
    }
}
