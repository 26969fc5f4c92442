//! The program's allocator: jemalloc, with one arena.
//!
//! An event allocates and frees a few hundred small blocks, many of them
//! on another thread than the one that allocated them (tokio moves tasks
//! between workers; the store's writer answers the requests' futures).
//! glibc's malloc paid for that with its arena locks (a third of the
//! sink's `futex` calls, and a context switch when one was taken) and with
//! `malloc_consolidate`, which every allocation of 1 KiB or more runs while
//! small freed blocks wait in its fast bins: together about 17% of the
//! CPU of an event (BENCHMARKS.md, profiling notes). jemalloc's
//! thread caches take most allocations and frees without a lock.
//!
//! One arena (`narenas:1`) instead of four per CPU: the sink runs a
//! worker thread per core and a few others, the thread caches absorb
//! nearly every call, and each further arena keeps pages of its own, about
//! 1.5 MiB more at the peak of 16 requests in flight on two cores
//! (`_RJEM_MALLOC_CONF` in the environment still overrides it, for an
//! experiment). `tests/process.rs` checks that jemalloc reads this.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's compile-time options, read at its first allocation: a C
/// string under the name the prefixed build (`_rjem_`) looks for.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 10] = b"narenas:1\0";
