//! The database file as redb sees it: redb's own file backend, behind a
//! switch that makes every write fail as on a full disk. Nothing but a test
//! turns it on ([`Opened::fail_writes`](crate::store::Opened::fail_writes),
//! under the `testing` feature): it is how the tests fill the disk under a
//! running store without a disk to fill.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// Turns the injected write failures on and off; shared by every database
/// opened on one store (the store reopens its file after an I/O error).
pub(super) type FaultSwitch = Arc<AtomicBool>;

/// redb's file backend, whose writes fail while the switch is on.
#[derive(Debug)]
pub(super) struct SwitchedFile {
    inner: FileBackend,
    failing: FaultSwitch,
}

impl SwitchedFile {
    /// Opens (or creates) `path` as redb's own `create` does.
    pub(super) fn open(path: &Path, failing: FaultSwitch) -> Result<Self, redb::DatabaseError> {
        let file: File = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|err| redb::DatabaseError::Storage(redb::StorageError::Io(err)))?;
        Ok(Self {
            inner: FileBackend::new(file)?,
            failing,
        })
    }

    fn check(&self) -> io::Result<()> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (injected by a test)",
            ));
        }
        Ok(())
    }
}

impl StorageBackend for SwitchedFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.check()?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
