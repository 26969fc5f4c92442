//! The embedded store's tables (records and their expiry order, the
//! ledger's marks, queues and their items, gate logs) and what one write transaction does to them:
//! the record, queue and gate operations, and the purge of expired and
//! excess records that ends every batch.

use std::time::Duration;

use redb::{
    Database, ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};

use super::marks::{MARKS, MarkIndex, generation_keys};
use crate::store::gate::GateLog;
use crate::store::{Pushed, QueueItem, REMEMBERED, millis};

/// key -> (expires at ms, value)
pub(super) const RECORDS: TableDefinition<&str, (u64, &[u8])> = TableDefinition::new("records");
/// (expires at ms, key): the records in expiry order, to purge and evict.
pub(super) const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("record_expiry");
/// The ledger's marks as the previous release kept them: a 128-bit hash of
/// the key -> expires at (whole seconds), with no generations. Read until
/// its sweep ([`Tables::purge_legacy_marks`]) has removed the last; the
/// ledger writes to [`MARKS`] now.
pub(super) const LEGACY_MARKS: TableDefinition<u128, u32> = TableDefinition::new("ledger_marks");
/// (queue, seq) -> item
pub(super) const ITEMS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_items");
/// queue -> (head seq, next seq)
pub(super) const QUEUES: TableDefinition<&str, (u64, u64)> = TableDefinition::new("queues");
/// gate -> encoded [`GateLog`]
pub(super) const GATES: TableDefinition<&str, &[u8]> = TableDefinition::new("gates");

/// Expired or excess records removed per write transaction at most, so
/// purging never stalls the requests waiting behind it.
const PURGE_PER_BATCH: usize = 256;
/// Legacy marks the sweep looks at per write transaction; more while
/// there are more than `max_records`, to evict the closest to expiry.
const SWEEP_PER_BATCH: usize = 256;
const SWEEP_WHEN_FULL: usize = 1024;
/// Records that expire sooner than this are never evicted to make room.
pub(super) const EVICTABLE_AFTER: Duration = Duration::from_secs(600);

pub(super) fn create_tables(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(RECORDS)?;
    txn.open_table(EXPIRY)?;
    txn.open_table(MARKS)?;
    txn.open_table(LEGACY_MARKS)?;
    txn.open_table(ITEMS)?;
    txn.open_table(QUEUES)?;
    txn.open_table(GATES)?;
    txn.commit()?;
    Ok(())
}

/// The value under `key` in `records`, unless absent or expired at `now`.
pub(super) fn record(
    records: &impl ReadableTable<&'static str, (u64, &'static [u8])>,
    key: &str,
    now: u64,
) -> Result<Option<Vec<u8>>, redb::Error> {
    Ok(records.get(key)?.and_then(|guard| {
        let (expires, value) = guard.value();
        (expires > now).then(|| value.to_vec())
    }))
}

/// The mark of `key`: the first 128 bits of its SHA-256 (a collision
/// among a million marks: about 1 in 10^27).
pub(super) fn mark_of(key: &str) -> u128 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(bytes)
}

/// An expiry in milliseconds as a mark keeps it: whole seconds, rounded up.
pub(super) fn mark_expiry(expires_ms: u64) -> u32 {
    u32::try_from(expires_ms.div_ceil(1000)).unwrap_or(u32::MAX)
}

/// A time in milliseconds in whole seconds, rounded down.
fn seconds(ms: u64) -> u32 {
    u32::try_from(ms / 1000).unwrap_or(u32::MAX)
}

fn mark_expired(expires_s: u32, now: u64) -> bool {
    u64::from(expires_s).saturating_mul(1000) <= now
}

/// True when `mark`, found under `key` in `marks` (if there), has not
/// expired at `now`.
pub(super) fn marked(
    marks: &impl ReadableTable<u128, u32>,
    key: u128,
    now: u64,
) -> Result<bool, redb::Error> {
    Ok(marks
        .get(key)?
        .is_some_and(|guard| !mark_expired(guard.value(), now)))
}

/// A queue's (head seq, next seq).
pub(super) fn bounds(
    queues: &impl ReadableTable<&'static str, (u64, u64)>,
    queue: &str,
) -> Result<(u64, u64), redb::Error> {
    Ok(queues.get(queue)?.map_or((0, 0), |guard| guard.value()))
}

/// Up to `max_items` items of `queue` from its head.
pub(super) fn head_items(
    items: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    queue: &str,
    (head, next): (u64, u64),
    max_items: usize,
) -> Result<Vec<QueueItem>, redb::Error> {
    let mut found = Vec::new();
    for entry in items.range((queue, head)..(queue, next))?.take(max_items) {
        let (key, value) = entry?;
        found.push(QueueItem {
            seq: key.value().1,
            data: value.value().to_vec(),
        });
    }
    Ok(found)
}

/// A gate's log (empty when it has none).
pub(super) fn gate_log(
    gates: &impl ReadableTable<&'static str, &'static [u8]>,
    gate: &str,
) -> Result<GateLog, redb::Error> {
    Ok(gates
        .get(gate)?
        .map(|guard| GateLog::decode(guard.value()))
        .unwrap_or_default())
}

/// The tables, open in one write transaction.
pub(super) struct Tables<'txn> {
    open: Option<OpenTables<'txn>>,
}

struct OpenTables<'txn> {
    records: Table<'txn, &'static str, (u64, &'static [u8])>,
    expiry: Table<'txn, (u64, &'static str), ()>,
    marks: Table<'txn, u128, u32>,
    legacy_marks: Table<'txn, u128, u32>,
    index: &'txn MarkIndex,
    items: Table<'txn, (&'static str, u64), &'static [u8]>,
    queues: Table<'txn, &'static str, (u64, u64)>,
    gates: Table<'txn, &'static str, &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    pub(super) fn open(
        txn: &'txn WriteTransaction,
        index: &'txn MarkIndex,
    ) -> Result<Self, redb::Error> {
        Ok(Self {
            open: Some(OpenTables {
                records: txn.open_table(RECORDS)?,
                expiry: txn.open_table(EXPIRY)?,
                marks: txn.open_table(MARKS)?,
                legacy_marks: txn.open_table(LEGACY_MARKS)?,
                index,
                items: txn.open_table(ITEMS)?,
                queues: txn.open_table(QUEUES)?,
                gates: txn.open_table(GATES)?,
            }),
        })
    }

    /// Stands in when the transaction could not be opened: every operation
    /// on it fails, so its caller is answered with the batch's error.
    pub(super) fn unusable() -> Self {
        Self { open: None }
    }

    fn tables(&mut self) -> Result<&mut OpenTables<'txn>, redb::Error> {
        self.open.as_mut().ok_or_else(|| {
            redb::Error::Io(std::io::Error::other("the transaction could not be opened"))
        })
    }

    /// Ok when the transaction's tables are open: the writer works.
    pub(super) fn usable(&mut self) -> Result<(), redb::Error> {
        self.tables().map(drop)
    }

    pub(super) fn get(&mut self, key: &str, now: u64) -> Result<Option<Vec<u8>>, redb::Error> {
        record(&self.tables()?.records, key, now)
    }

    pub(super) fn put(&mut self, key: &str, value: &[u8], expires: u64) -> Result<(), redb::Error> {
        let t = self.tables()?;
        if value == REMEMBERED {
            // A ledger record of an earlier release's kind: looked up too.
            t.index.set_legacy_records(true);
        }
        let replaced = t
            .records
            .insert(key, (expires, value))?
            .map(|old| old.value().0);
        if let Some(old_expires) = replaced {
            t.expiry.remove((old_expires, key))?;
        }
        t.expiry.insert((expires, key), ())?;
        Ok(())
    }

    pub(super) fn remove(&mut self, key: &str) -> Result<(), redb::Error> {
        let t = self.tables()?;
        let removed = t.records.remove(key)?.map(|old| old.value().0);
        if let Some(expires) = removed {
            t.expiry.remove((expires, key))?;
        }
        Ok(())
    }

    /// Sets `mark` until `expires` (ms), in the newest generation (`now`
    /// in ms).
    pub(super) fn remember(
        &mut self,
        mark: u128,
        expires: u64,
        now: u64,
    ) -> Result<(), redb::Error> {
        let t = self.tables()?;
        let expires = mark_expiry(expires);
        let key = t.index.place(mark, expires, seconds(now));
        t.marks.insert(key, expires)?;
        Ok(())
    }

    /// Removes the oldest generation of marks when all of it expired or
    /// the ledger holds more than `max_records`: one a transaction.
    pub(super) fn forget_generations(&mut self, now: u64) -> Result<(), redb::Error> {
        let t = self.tables()?;
        if let Some(oldest) = t.index.to_forget(seconds(now)) {
            t.marks.retain_in(generation_keys(oldest), |_, _| false)?;
            t.index.forgot(oldest);
        }
        Ok(())
    }

    /// While the previous release's table holds marks: sweeps the next
    /// after `cursor` (in key order, wrapping around), removing the
    /// expired; while there are more than `max_records`, also the closest
    /// to expiry among those it looked at. A bounded amount per
    /// transaction; `cursor` moves on past what it looked at.
    pub(super) fn purge_legacy_marks(
        &mut self,
        now: u64,
        max_records: u64,
        cursor: &mut u128,
    ) -> Result<(), redb::Error> {
        let t = self.tables()?;
        if !t.index.has_legacy_marks() {
            return Ok(());
        }
        let len = t.legacy_marks.len()?;
        let excess = len.saturating_sub(max_records);
        let window = if excess > 0 {
            SWEEP_WHEN_FULL
        } else {
            SWEEP_PER_BATCH
        };
        let mut seen: Vec<(u128, u32)> = Vec::with_capacity(window);
        for entry in t.legacy_marks.range(*cursor..)?.take(window) {
            let (mark, expires) = entry?;
            seen.push((mark.value(), expires.value()));
        }
        if seen.len() < window {
            for entry in t.legacy_marks.range(..*cursor)?.take(window - seen.len()) {
                let (mark, expires) = entry?;
                seen.push((mark.value(), expires.value()));
            }
        }
        *cursor = seen.last().map_or(0, |(mark, _)| mark.wrapping_add(1));
        let (mut doomed, mut rest): (Vec<_>, Vec<_>) = seen
            .into_iter()
            .partition(|(_, expires)| mark_expired(*expires, now));
        let evict = usize::try_from(excess)
            .unwrap_or(usize::MAX)
            .saturating_sub(doomed.len())
            .min(rest.len());
        if evict > 0 {
            rest.sort_unstable_by_key(|(_, expires)| *expires);
            doomed.extend(rest.drain(..evict));
        }
        for (mark, _) in doomed {
            t.legacy_marks.remove(mark)?;
        }
        if t.legacy_marks.is_empty()? {
            t.index.set_legacy_marks(false);
        }
        Ok(())
    }

    fn queue_bounds(&mut self, queue: &str) -> Result<(u64, u64), redb::Error> {
        bounds(&self.tables()?.queues, queue)
    }

    pub(super) fn push(
        &mut self,
        queue: &str,
        item: &[u8],
        max_len: u64,
    ) -> Result<Pushed, redb::Error> {
        let (head, next) = self.queue_bounds(queue)?;
        let len = next - head;
        if len >= max_len {
            return Ok(Pushed::Full { len });
        }
        let t = self.tables()?;
        t.items.insert((queue, next), item)?;
        t.queues.insert(queue, (head, next + 1))?;
        Ok(Pushed::Queued { len: len + 1 })
    }

    pub(super) fn pop_through(&mut self, queue: &str, seq: u64) -> Result<(), redb::Error> {
        let (head, next) = self.queue_bounds(queue)?;
        let end = seq.saturating_add(1).min(next);
        if end <= head {
            return Ok(());
        }
        let t = self.tables()?;
        for at in head..end {
            t.items.remove((queue, at))?;
        }
        t.queues.insert(queue, (end, next))?;
        Ok(())
    }

    pub(super) fn gate(&mut self, gate: &str) -> Result<GateLog, redb::Error> {
        let t = self.tables()?;
        Ok(t.gates
            .get(gate)?
            .map(|guard| GateLog::decode(guard.value()))
            .unwrap_or_default())
    }

    pub(super) fn save_gate(&mut self, gate: &str, log: &GateLog) -> Result<(), redb::Error> {
        let t = self.tables()?;
        t.gates.insert(gate, log.encode().as_slice())?;
        Ok(())
    }

    /// Removes expired records; then, while there are more than
    /// `max_records`, the long-lived ones closest to expiry (the oldest of
    /// the ledger's). Short-lived records (claims, leases) are never
    /// evicted: they guard work in progress, and go by themselves soon. A
    /// bounded amount per transaction.
    pub(super) fn purge(&mut self, now: u64, max_records: u64) -> Result<(), redb::Error> {
        let t = self.tables()?;
        let mut doomed: Vec<(u64, String)> = Vec::new();
        for entry in t
            .expiry
            .range(..(now.saturating_add(1), ""))?
            .take(PURGE_PER_BATCH)
        {
            let (key, _) = entry?;
            let (expires, name) = key.value();
            doomed.push((expires, name.to_owned()));
        }
        let excess = t
            .records
            .len()?
            .saturating_sub(max_records)
            .saturating_sub(u64::try_from(doomed.len()).unwrap_or(0));
        let long_lived = now.saturating_add(millis(EVICTABLE_AFTER));
        let room = PURGE_PER_BATCH.saturating_sub(doomed.len());
        for entry in t
            .expiry
            .range((long_lived, "")..)?
            .take(usize::try_from(excess).unwrap_or(usize::MAX).min(room))
        {
            let (key, _) = entry?;
            let (expires, name) = key.value();
            doomed.push((expires, name.to_owned()));
        }
        for (expires, key) in doomed {
            t.expiry.remove((expires, key.as_str()))?;
            t.records.remove(key.as_str())?;
        }
        Ok(())
    }
}
