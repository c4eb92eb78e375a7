//! The observer role end to end: two observer processes on one PostgreSQL database run each
//! scheduled run once between them, and expose their job metrics.

use std::time::Duration;

use super::support::*;

const SUCCESS: &str = r#"gateway_cron_runs_total{job="nudge_expiry",result="success"}"#;
const SKIPPED: &str = r#"gateway_cron_runs_total{job="nudge_expiry",result="skipped"}"#;
const LAST: &str = r#"gateway_cron_last_success_timestamp_seconds{job="nudge_expiry"}"#;

/// Waits for the next minute boundary (up to a minute): slow, but it is the real scheduler.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_observers_on_one_database_run_each_minute_once() {
    let db = PgDatabase::create().await;
    let mock = mock().await;
    let settings = [
        ("SMOLTBOT_ROLE", "observer"),
        ("DATABASE_URL", db.url.as_str()),
        // Only the minutely job, so the test sees one kind of run.
        ("MNEMOM_JOB_USAGE_ROLLUP_SCHEDULE", "off"),
        ("MNEMOM_JOB_RETENTION_SCHEDULE", "off"),
        ("MNEMOM_JOB_WEBHOOK_REDELIVERY_SCHEDULE", "off"),
        ("MNEMOM_JOB_INTEGRITY_SUMMARY_SCHEDULE", "off"),
    ];
    let a = TestGateway::start(&mock, &settings).await;
    let b = TestGateway::start(&mock, &settings).await;
    for gateway in [&a, &b] {
        assert_eq!(gateway.metric(SUCCESS).await, Some(0.0));
        assert_eq!(gateway.metric(LAST).await, Some(0.0));
        assert_eq!(get(&gateway.url("/health/ready")).await.status, 200);
    }
    eventually(
        "claimed nudge_expiry runs",
        Duration::from_secs(75),
        1,
        || async {
            db.count("SELECT count(*) FROM observer_runs WHERE job = 'nudge_expiry'")
                .await
                .min(1)
        },
    )
    .await;
    // Both replicas have settled the first minute: one ran it, the other skipped it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let total = |series| {
            let (a, b) = (&a, &b);
            async move { a.metric(series).await.unwrap_or(0.0) + b.metric(series).await.unwrap_or(0.0) }
        };
        let (success, skipped) = (total(SUCCESS).await, total(SKIPPED).await);
        let claimed = db.count("SELECT count(*) FROM observer_runs").await as f64;
        if success + skipped >= 2.0 * claimed && claimed >= 1.0 {
            assert_eq!(success, claimed, "each claimed minute ran once");
            assert_eq!(skipped, claimed, "and was skipped by the other replica");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "success {success}, skipped {skipped}, claimed {claimed}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for gateway in [&a, &b] {
        let ready = get(&gateway.url("/health/ready")).await.json();
        let result = &ready["checks"]["jobs"]["nudge_expiry"]["result"];
        assert!(result == "success" || result == "skipped", "{ready}");
    }
    let last = a.metric(LAST).await.unwrap_or(0.0) + b.metric(LAST).await.unwrap_or(0.0);
    assert!(last > 0.0, "the last-success gauge is set");
    a.stop().await;
    b.stop().await;
}
