//! The database outage test: with requests flowing through the real gateway, the machine's
//! PostgreSQL itself is stopped for 30 s (`pg_ctlcluster … stop`) and started again; every usage
//! record the gateway accepted is in the database afterwards, exactly once.
//!
//! It is its own test binary, with this one test: cargo runs test binaries one after another, so
//! no other test of this workspace runs while PostgreSQL is down. A guard starts PostgreSQL again
//! however the test ends.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed unwrap is a failed test"
)]

#[expect(dead_code, reason = "the shared harness; this binary uses part of it")]
#[path = "integration/support.rs"]
mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::Connection;
use support::*;

/// How long PostgreSQL stays down.
const OUTAGE: Duration = Duration::from_secs(30);

/// The machine's PostgreSQL cluster (`/etc/postgresql/<version>/main`), started again on drop if
/// the test stopped it.
struct Cluster {
    version: String,
    stopped: bool,
}

impl Cluster {
    fn find() -> Self {
        let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
            .expect("/etc/postgresql (a Debian-style PostgreSQL install)")
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        versions.sort();
        Self {
            version: versions.pop().expect("a PostgreSQL version directory"),
            stopped: false,
        }
    }

    fn ctl(&self, action: &str) -> std::io::Result<std::process::ExitStatus> {
        Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &self.version, "main", action])
            .status()
    }

    fn stop(&mut self) {
        self.stopped = true;
        let status = self.ctl("stop").unwrap();
        assert!(status.success(), "pg_ctlcluster stop: {status}");
    }

    fn start(&mut self) {
        let status = self.ctl("start").unwrap();
        assert!(status.success(), "pg_ctlcluster start: {status}");
        self.stopped = false;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.stopped {
            match self.ctl("start") {
                Ok(status) if status.success() => {}
                other => {
                    use std::io::Write as _;
                    let _ = writeln!(
                        std::io::stderr(),
                        "could not start PostgreSQL again: {other:?}"
                    );
                }
            }
        }
    }
}

async fn postgres_answers() -> bool {
    match tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::PgConnection::connect(&postgres_admin_url()),
    )
    .await
    {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            true
        }
        _ => false,
    }
}

async fn wait_for_postgres(up: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while postgres_answers().await != up {
        assert!(
            tokio::time::Instant::now() < deadline,
            "PostgreSQL did not come {}",
            if up { "up" } else { "down" }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_postgres_for_thirty_seconds_loses_no_usage_record() {
    let mut cluster = Cluster::find();
    assert!(
        postgres_answers().await,
        "PostgreSQL must be up before the test"
    );
    let db = PgDatabase::create().await;
    let mock = mock().await;
    let gateway = TestGateway::start(
        &mock,
        &[
            ("DATABASE_URL", db.url.as_str()),
            // Small, so the outage overflows memory into the journal.
            ("MNEMOM_WRITER_QUEUE_CAPACITY", "100"),
            ("MNEMOM_WRITER_FLUSH_INTERVAL_MS", "20"),
            ("MNEMOM_WRITER_RETRY_MAX_MS", "1000"),
            ("MNEMOM_WRITER_SPILL_AFTER_MS", "2000"),
            ("MNEMOM_WRITER_LAST_SEEN_INTERVAL_MS", "500"),
        ],
    )
    .await;
    let base = gateway.url("");

    let served = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for worker in 0..3 {
        let (base, served, failed, stop) =
            (base.clone(), served.clone(), failed.clone(), stop.clone());
        load.spawn(async move {
            let key = format!("sk-outage-{worker}");
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                if one_request(&base, &key, n).await {
                    served.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    eventually(
        "rows before the outage",
        Duration::from_secs(10),
        1,
        || async { i64::from(db.count("SELECT count(*) FROM usage_events").await > 0) },
    )
    .await;

    // PostgreSQL goes down for 30 s; requests keep flowing.
    let before = served.load(Ordering::SeqCst);
    let stopped_at = tokio::time::Instant::now();
    cluster.stop();
    wait_for_postgres(false).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let ready = get(&gateway.url("/health/ready")).await;
    assert_eq!(ready.status, 200, "still in service");
    let body = ready.json();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["database"]["status"], "degraded");
    assert_eq!(body["checks"]["writer"]["status"], "degraded");
    tokio::time::sleep_until(stopped_at + OUTAGE).await;
    let during = served.load(Ordering::SeqCst) - before;
    let journaled = gateway
        .metric("gateway_writer_journal_records")
        .await
        .unwrap();

    cluster.start();
    wait_for_postgres(true).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    while load.join_next().await.is_some() {}
    let accepted = served.load(Ordering::SeqCst);
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "every request is served during the outage"
    );
    assert!(during > 100, "only {during} requests during the outage");
    assert!(
        journaled > 100.0,
        "the outage overflowed into the journal ({journaled})"
    );
    eprintln!(
        "outage: {accepted} requests answered, {during} of them while PostgreSQL was down; \
         {journaled} records in the journal when it came back"
    );

    // Every accepted record arrives, once.
    eventually(
        "usage rows after the outage",
        Duration::from_secs(60),
        accepted as i64,
        || db.count("SELECT count(*) FROM usage_events"),
    )
    .await;
    assert_eq!(db.count("SELECT count(*) FROM agents").await, 3);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gateway.metric("gateway_writer_journal_records").await != Some(0.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "journal not emptied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gateway
            .metric("gateway_background_tasks_total{task=\"journal_replay\"}")
            .await
            .unwrap()
            > 0.0
    );
    for series in [
        "gateway_writer_records_rejected_total{kind=\"usage_event\"}",
        "gateway_writer_records_dropped_total{reason=\"journal_full\"}",
        "gateway_writer_records_dropped_total{reason=\"journal_io\"}",
        "gateway_writer_records_dropped_total{reason=\"journal_corrupt\"}",
    ] {
        assert_eq!(gateway.metric(series).await, Some(0.0), "{series}");
    }
    let ready = get(&gateway.url("/health/ready")).await.json();
    assert_eq!(ready["checks"]["writer"]["status"], "ok");
    gateway.stop().await;
    assert_eq!(
        db.count("SELECT count(*) FROM usage_events").await,
        accepted as i64,
        "nothing doubled"
    );
    assert!(postgres_answers().await, "PostgreSQL is up after the test");
}
