//! Request worker threads: one single-threaded runtime per CPU. Each accepted connection lives on
//! one worker for its whole life, together with the upstream connections its requests use, so a
//! proxied request never hops between threads (the way nginx's worker processes run).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// How long a stopping worker waits for its blocking tasks before it lets them go.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

thread_local! {
    static WORKER_INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the worker running the calling thread, `None` off the workers (the main
/// runtime, tests, background tasks).
pub fn current() -> Option<usize> {
    WORKER_INDEX.with(Cell::get)
}

/// Spawns `task` on `home` (the gateway's main runtime) when given, else on the current runtime.
/// For work whose I/O resources outlive the request that started it (database connections a
/// pool keeps): they are then registered with the main runtime, not a request worker.
pub fn spawn_home<F>(home: Option<&Handle>, task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match home {
        Some(home) => home.spawn(task),
        None => tokio::spawn(task),
    }
}

/// One worker: its runtime's handle and what stops it.
#[derive(Debug)]
struct Worker {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

/// The running workers. Dropping them stops every worker: tasks still on a worker are dropped
/// (the server drains connections before that).
#[derive(Debug)]
pub struct Workers {
    workers: Vec<Worker>,
    next: AtomicUsize,
}

/// The worker count used when none is configured: the CPUs this process may use (cgroup quota
/// included), at least one.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl Workers {
    /// Starts `count` workers (at least one), threads named `mnemom-worker-<i>`.
    pub fn start(count: usize) -> std::io::Result<Self> {
        let mut workers = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("mnemom-worker-{index}"))
                .spawn(move || {
                    WORKER_INDEX.with(|cell| cell.set(Some(index)));
                    runtime.block_on(async {
                        // A dropped sender (the server went away) stops the worker too.
                        let _ = stopped.await;
                    });
                    runtime.shutdown_timeout(STOP_TIMEOUT);
                })?;
            workers.push(Worker {
                handle,
                stop: Some(stop),
            });
        }
        Ok(Self {
            workers,
            next: AtomicUsize::new(0),
        })
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Always false: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Runs `task` on the next worker, round robin.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        drop(self.workers[index].handle.spawn(task));
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            if let Some(stop) = worker.stop.take() {
                let _ = stop.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_workers_round_robin() {
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.len(), 2);
        let mut seen = Vec::new();
        for _ in 0..4 {
            let (tx, rx) = oneshot::channel();
            workers.spawn(async move {
                let name = std::thread::current().name().map(str::to_owned);
                let _ = tx.send((current(), name));
            });
            seen.push(rx.await.unwrap());
        }
        let indexes: Vec<_> = seen.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, [Some(0), Some(1), Some(0), Some(1)]);
        assert_eq!(seen[1].1.as_deref(), Some("mnemom-worker-1"));
        assert_eq!(current(), None, "the test's own thread is not a worker");
    }

    #[tokio::test]
    async fn dropping_the_workers_stops_their_tasks() {
        let workers = Workers::start(1).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        workers.spawn(async move {
            // Never completes on its own; holds the sender until the runtime drops the task.
            std::future::pending::<()>().await;
            drop(tx);
        });
        drop(workers);
        // The runtime drops the pending task, and with it the sender.
        assert!(
            tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .unwrap()
                .is_err()
        );
    }
}
