//! Request worker threads: one single-threaded runtime per CPU. Each accepted connection lives on
//! one worker for its whole life, together with the upstream connections its requests use, so a
//! proxied request never hops between threads (the way nginx's worker processes run).

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// How long a stopping worker waits for its blocking tasks before it lets them go.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

thread_local! {
    static WORKER_INDEX: Cell<Option<usize>> = const { Cell::new(None) };
    /// On a worker thread: the runtime that started the workers (the gateway's main runtime).
    static HOME: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

/// The index of the worker running the calling thread, `None` off the workers (the main
/// runtime, tests, background tasks).
pub fn current() -> Option<usize> {
    WORKER_INDEX.with(Cell::get)
}

/// On a worker thread, the runtime that started the workers; `None` elsewhere (there the
/// current runtime already is the right one).
pub fn home() -> Option<Handle> {
    HOME.with(|home| home.borrow().clone())
}

/// Spawns `task` off the request workers: on the main runtime when called from a worker, on the
/// current runtime otherwise. For work that must not hold up a worker's requests (parsing a
/// finished stream) and for work whose I/O resources outlive the request that started it
/// (connections a pool keeps are then registered with the main runtime's reactor).
pub fn spawn_background<F>(task: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match home() {
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
    /// Starts `count` workers (at least one), threads named `mnemom-worker-<i>`. Called on the
    /// main runtime, which becomes the workers' [`home`].
    pub fn start(count: usize) -> std::io::Result<Self> {
        let home = Handle::try_current().ok();
        let mut workers = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let home = home.clone();
            std::thread::Builder::new()
                .name(format!("mnemom-worker-{index}"))
                .spawn(move || {
                    WORKER_INDEX.with(|cell| cell.set(Some(index)));
                    HOME.with(|cell| *cell.borrow_mut() = home);
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn background_work_from_a_worker_runs_on_the_runtime_that_started_it() {
        let workers = Workers::start(1).unwrap();
        let (tx, rx) = oneshot::channel();
        workers.spawn(async move {
            let on_worker = current();
            let background = spawn_background(async { (current(), home().is_some()) })
                .await
                .unwrap();
            let _ = tx.send((on_worker, background));
        });
        // On the worker: index 0. The background task ran off the workers, where there is no
        // home to defer to.
        assert_eq!(rx.await.unwrap(), (Some(0), (None, false)));
        // Off the workers it runs on the current runtime.
        assert_eq!(spawn_background(async { current() }).await.unwrap(), None);
    }
}
