//! Opening the connector's store: the backend the configuration names, and
//! [`Opened`], the handle of whoever opened it (the runtime, a command-line
//! tool that runs a sink's code itself, a test). It hands out [`Store`]s,
//! each a namespace of it, and it alone probes and closes the store: a
//! sink, which is only ever given a `Store`, cannot close the runtime's
//! store under the runtime.

use std::fmt;
use std::sync::Arc;

use super::{
    Backend, Clock, Embedded, OpenError, Redis, Store, StoreConfig, StoreError, SystemClock,
};

/// The namespace of the store the runtime hands the sink.
const SINK_SCOPE: &str = "sink";

/// The connector's store as its opener holds it: the namespaces handed out
/// from it, and what probes and closes it. Cheap to clone.
#[derive(Clone)]
pub struct Opened {
    backend: Arc<dyn Backend>,
    /// The embedded store's switch that fails its file's writes.
    #[cfg(feature = "testing")]
    faults: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("backend", &self.backend.name())
            .finish()
    }
}

impl Opened {
    /// The store over `backend`, for a program or a test that brings its
    /// own (an [`Embedded::in_memory`] one, say).
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            #[cfg(feature = "testing")]
            faults: None,
        }
    }

    /// Makes every write of the embedded database's file fail, as on a
    /// full disk, while `failing` (reads go on): what tests fill the disk
    /// with. False when the store has no such switch (not opened by
    /// [`open`] on `store.path`).
    #[cfg(feature = "testing")]
    pub fn fail_writes(&self, failing: bool) -> bool {
        let Some(faults) = &self.faults else {
            return false;
        };
        faults.store(failing, std::sync::atomic::Ordering::Relaxed);
        true
    }

    /// A namespace of the store: keys under `name/`.
    pub fn scope(&self, name: &str) -> Store {
        Store::new(Arc::clone(&self.backend)).scope(name)
    }

    /// The sink's namespace: what the runtime hands the sink in
    /// [`Context::store`](crate::Context::store). A program that runs the
    /// sink's code outside the runtime hands it the same, so both see one
    /// state (a destination's send budget, say).
    pub fn sink(&self) -> Store {
        self.scope(SINK_SCOPE)
    }

    /// The backend's name: `embedded` or `redis`.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Ok when the backend answers (see [`Backend::health`]).
    pub async fn health(&self) -> Result<(), StoreError> {
        self.backend.health().await
    }

    /// Finishes pending writes and releases the backend: every [`Store`]
    /// handed out from it fails with [`StoreError::Closed`] from then on.
    pub async fn close(&self) {
        self.backend.close().await;
    }
}

/// Opens the store `config` names: Redis when `store.redis` is set (keys
/// under its `key_prefix`, else `default_prefix`, the sink's name), else
/// the embedded database in `store.path`.
pub fn open(config: &StoreConfig, default_prefix: &str) -> Result<Opened, OpenError> {
    open_with_clock(config, default_prefix, Arc::new(SystemClock))
}

/// [`open`], with the embedded database reading the time from `clock`
/// (Redis follows its own `TIME`).
pub(crate) fn open_with_clock(
    config: &StoreConfig,
    default_prefix: &str,
    clock: Arc<dyn Clock>,
) -> Result<Opened, OpenError> {
    if let Some(redis) = &config.redis {
        let backend = Redis::connect(redis, default_prefix)?;
        tracing::info!(url = %redis.masked_url(), "store: Redis, shared by every replica");
        return Ok(Opened::new(Arc::new(backend)));
    }
    let embedded = Embedded::open_with_clock(&config.path, config.max_records, clock)?;
    tracing::info!(path = %config.path.display(), "store: embedded");
    #[cfg(feature = "testing")]
    let faults = Some(embedded.fault_switch());
    Ok(Opened {
        backend: Arc::new(embedded),
        #[cfg(feature = "testing")]
        faults,
    })
}
