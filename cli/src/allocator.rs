//! The process's allocator: mimalloc, told to hand freed memory back to the system at once.
//!
//! glibc's malloc spent over half of a busy worker's CPU (batches of many small allocations freed
//! together); mimalloc keeps that to a few percent. Its version 3 keeps freed pages for a second
//! before returning them, so a worker that frees a batch and allocates the next within that
//! second holds both: the analytics worker's full-speed drain of 300,000 events peaked at
//! 228–229 MiB RSS with that delay, 166–168 MiB with none, at the same drain rate and CPU (two
//! runs each, `sluice bench --workers 1`). `MIMALLOC_PURGE_DELAY` in the environment still wins.

use std::ffi::c_int;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mi_option_e` (milliseconds; 0 = at once).
const PURGE_DELAY: c_int = 15;

#[allow(unsafe_code, reason = "the one call into mimalloc's C API that its Rust crate does not wrap")]
mod ffi {
    use std::ffi::{c_int, c_long};

    unsafe extern "C" {
        pub(super) fn mi_option_set(option: c_int, value: c_long);
        #[cfg(test)]
        pub(super) fn mi_option_get(option: c_int) -> c_long;
        #[cfg(target_env = "gnu")]
        pub(super) fn malloc_trim(pad: usize) -> c_int;
    }

    /// Hands the C heap's free pages back to the system.
    #[cfg(target_env = "gnu")]
    pub(super) fn trim_c_heap() {
        // SAFETY: malloc_trim only releases free memory of glibc's heaps, under their locks; it
        // may be called at any time from any thread.
        unsafe {
            malloc_trim(0);
        }
    }

    /// Sets a mimalloc option.
    pub(super) fn set(option: c_int, value: c_long) {
        // SAFETY: mi_option_set stores the value of an option (any id is bounds-checked by
        // mimalloc); it may be called at any time from any thread.
        unsafe { mi_option_set(option, value) }
    }

    /// Reads a mimalloc option.
    #[cfg(test)]
    pub(super) fn get(option: c_int) -> c_long {
        // SAFETY: as above: a read of an option's value.
        unsafe { mi_option_get(option) }
    }
}

/// Freed memory goes back to the system at once, unless `MIMALLOC_PURGE_DELAY` says otherwise;
/// and what the C libraries free goes back within [`TRIM_EVERY`].
pub(crate) fn return_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        ffi::set(PURGE_DELAY, 0);
    }
    trim_c_heap_periodically();
}

/// How often the C heap's free pages are handed back.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// librdkafka allocates with the C library's malloc, not mimalloc: every record it fetches is a
/// few small allocations (the fetched message set, decompressed, and an op per record). glibc
/// keeps what is freed in its heaps for reuse and returns it only from a heap's top, so a worker
/// that drained a backlog kept ~70 MiB of free C heap for good (a 64 MiB arena of librdkafka's
/// broker thread, fully resident while idle: `malloc_trim` brought the process from 96 to
/// 26 MiB of anonymous memory). A thread of its own trims it every [`TRIM_EVERY`].
fn trim_c_heap_periodically() {
    #[cfg(target_env = "gnu")]
    {
        let spawned = std::thread::Builder::new().name("malloc-trim".into()).spawn(|| {
            loop {
                std::thread::sleep(TRIM_EVERY);
                ffi::trim_c_heap();
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the thread that hands the C heap's free memory back");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::c_long;

    /// The purge delay in force, in milliseconds.
    fn purge_delay() -> c_long {
        ffi::get(PURGE_DELAY)
    }

    #[test]
    fn the_option_set_is_mimallocs_purge_delay() {
        // Version 3's default purge delay is 1000 ms, a value no neighbouring option has: the id
        // is the right one (this test process never calls `return_freed_memory_at_once`).
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(purge_delay(), 1000);
        }
        ffi::set(PURGE_DELAY, 0);
        assert_eq!(purge_delay(), 0);
    }
}
