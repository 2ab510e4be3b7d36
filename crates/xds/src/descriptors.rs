//! The descriptors of the Envoy protos Bosun reads, compiled at build time.

use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;

use prost_reflect::{DescriptorPool, MessageDescriptor};

static ENCODED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin"));

/// How many [`PoolGuard`]s exist, and the pool they keep decoded.
static KEPT: Mutex<(usize, Option<Kept>)> = Mutex::new((0, None));

/// A pool kept decoded, and the thread whose allocator arena holds it.
///
/// Decoded, the pool is ~3.5 MB in ~50,000 small allocations. Made and freed on the main
/// thread, they leave a heap glibc keeps resident for good (free chunks between live ones are
/// only returned by `malloc_trim`). Made and freed on a thread of its own, they fill and empty
/// that thread's arena, which glibc shrinks once the thread is gone (taking its cache of freed
/// chunks back into the arena) and one large free makes it merge its free chunks: a proxy that
/// read its bootstrap gives the memory back. Only if nothing else still holds the pool (a
/// `DescriptorPool` or `MessageDescriptor` clone) when the last guard goes: the last reference
/// frees it, on whichever thread drops it.
struct Kept {
    pool: DescriptorPool,
    /// None when no thread could be started: then the pool lives on this thread's heap.
    owner: Option<Owner>,
}

/// The thread that decoded a kept pool and drops it last.
struct Owner {
    /// Dropping it tells the owner to drop its pool and finish.
    release: mpsc::Sender<()>,
    /// Returns a buffer from the owner's arena: freeing it makes the arena coalesce and trim.
    thread: JoinHandle<Vec<u8>>,
}

fn kept() -> std::sync::MutexGuard<'static, (usize, Option<Kept>)> {
    KEPT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decodes the embedded set on the calling thread.
fn decode() -> DescriptorPool {
    match DescriptorPool::decode(ENCODED) {
        Ok(pool) => pool,
        // The set is produced by our build script from pinned protos; failing to decode it
        // is a build defect, not a runtime condition.
        Err(error) => panic!("embedded Envoy descriptors are corrupt: {error}"),
    }
}

/// Above glibc's threshold for merging free chunks (64 KiB), below the size it would map on
/// its own (128 KiB), so that it comes from the owner's arena.
const COALESCE_TRIGGER: usize = 96 * 1024;

/// Decodes the pool on a thread that keeps it until released (see [`Kept`]).
fn decode_owned() -> Option<Kept> {
    let (pool_tx, pool_rx) = mpsc::sync_channel(1);
    let (release, released) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("descriptors".into())
        .spawn(move || {
            // Allocated first, below the pool, while the arena has room for it.
            let trigger = vec![1u8; COALESCE_TRIGGER];
            let pool = decode();
            if pool_tx.send(pool.clone()).is_ok() {
                // Returns when the sender is dropped.
                let _ = released.recv();
            }
            drop(pool);
            trigger
        })
        .ok()?;
    let pool = pool_rx.recv().ok()?;
    Some(Kept {
        pool,
        owner: Some(Owner { release, thread }),
    })
}

impl Kept {
    /// Drops this thread's reference and lets the owner drop its own. Waiting for the owner to
    /// finish (it frees ~50,000 allocations) and then freeing the buffer that makes its arena
    /// shrink happen on a short-lived thread: the caller may be a proxy's only runtime thread.
    fn release(self) {
        let Kept { pool, owner } = self;
        drop(pool);
        let Some(Owner { release, thread }) = owner else {
            return;
        };
        drop(release);
        let reap = move || {
            if let Ok(trigger) = thread.join() {
                drop(trigger);
            }
        };
        // Without a reaper the owner finishes alone: its arena then keeps what its cache held.
        let _ = std::thread::Builder::new()
            .name("descriptors-reaper".into())
            .spawn(reap);
    }
}

/// The descriptor pool. Decoded, it takes a few megabytes, so it stays decoded only while a
/// [`PoolGuard`] exists: a proxy with static configuration needs it while it reads its
/// bootstrap, one with xDS while responses come in. Without a guard, each call decodes.
///
/// The first call under a guard decodes (~5 ms) and waits for it; the last guard's drop does
/// not wait for the memory to be returned.
pub fn pool() -> DescriptorPool {
    let mut state = kept();
    if let Some(owned) = &state.1 {
        return owned.pool.clone();
    }
    if state.0 == 0 {
        return decode();
    }
    let owned = decode_owned().unwrap_or_else(|| Kept {
        pool: decode(),
        owner: None,
    });
    let pool = owned.pool.clone();
    state.1 = Some(owned);
    pool
}

/// Keeps the decoded pool in memory while it lives.
#[derive(Debug)]
pub struct PoolGuard(());

impl PoolGuard {
    /// Keeps the pool decoded until this guard (and every other) is dropped.
    pub fn new() -> Self {
        kept().0 += 1;
        PoolGuard(())
    }
}

impl Default for PoolGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        let last = {
            let mut state = kept();
            state.0 -= 1;
            if state.0 == 0 { state.1.take() } else { None }
        };
        if let Some(owned) = last {
            owned.release();
        }
    }
}

/// The descriptor of a message by its full name (`envoy.config.cluster.v3.Cluster`).
pub fn message(full_name: &str) -> Option<MessageDescriptor> {
    pool().get_message_by_name(full_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_holds_the_resources_we_read() {
        for name in [
            "envoy.config.bootstrap.v3.Bootstrap",
            "envoy.config.listener.v3.Listener",
            "envoy.config.cluster.v3.Cluster",
            "envoy.config.route.v3.RouteConfiguration",
            "envoy.config.endpoint.v3.ClusterLoadAssignment",
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "envoy.service.discovery.v3.DiscoveryRequest",
        ] {
            assert!(message(name).is_some(), "{name}");
        }
    }

    fn threads_named(name: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(Result::ok)
                    .filter(|task| {
                        std::fs::read_to_string(task.path().join("comm"))
                            .is_ok_and(|comm| comm.trim() == name)
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    #[test]
    fn a_guard_keeps_one_pool_on_an_owner_thread_that_ends_with_the_last_guard() {
        let guard = PoolGuard::new();
        let first = pool();
        let second = PoolGuard::new();
        assert!(first == pool(), "guarded calls share one decoded pool");
        assert_eq!(threads_named("descriptors"), 1);
        drop(guard);
        assert_eq!(threads_named("descriptors"), 1, "a guard is left");
        drop(second);
        // The owner finishes on its own time (a thread leaves /proc/self/task after it is
        // joined, too).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while threads_named("descriptors") != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the owner thread never finished"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // The pool handed out stays usable after its owner is gone.
        assert!(
            first
                .get_message_by_name("envoy.config.cluster.v3.Cluster")
                .is_some()
        );
        assert!(first != pool(), "unguarded calls decode anew");
    }
}
