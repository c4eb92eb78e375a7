//! Webhook tests: real HTTP receivers on 127.0.0.1:0, real PostgreSQL and SQLite databases, the
//! background writer in between.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::*;
use crate::config::MapSource;
use crate::metrics::Metrics;
use crate::store::tests::{TestDb, checkpoint, hash_of, scalar_i64};
use crate::store::{Verdict, WebhookDeliveryRecord};
use crate::writer::WriterSettings;

// ---------------------------------------------------------------------------------------------
// A receiver.

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: http::HeaderMap,
    body: Bytes,
    path: String,
}

/// What the receiver answers to its n-th request (0-based): a status after a delay.
type Script = Arc<dyn Fn(usize) -> (u16, Duration) + Send + Sync>;

struct Receiver {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(script: impl Fn(usize) -> (u16, Duration) + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script: Script = Arc::new(script);
        let counter = Arc::new(AtomicUsize::new(0));
        let task = {
            let log = log.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (log, script, counter) = (log.clone(), script.clone(), counter.clone());
                    tokio::spawn(async move {
                        let service =
                            service_fn(move |request: http::Request<hyper::body::Incoming>| {
                                let (log, script, counter) =
                                    (log.clone(), script.clone(), counter.clone());
                                async move {
                                    let (parts, body) = request.into_parts();
                                    let body = body.collect().await.unwrap().to_bytes();
                                    let n = counter.fetch_add(1, Ordering::SeqCst);
                                    log.lock().unwrap().push(Received {
                                        headers: parts.headers,
                                        body,
                                        path: parts.uri.to_string(),
                                    });
                                    let (status, delay) = script(n);
                                    tokio::time::sleep(delay).await;
                                    Ok::<_, Infallible>(
                                        http::Response::builder()
                                            .status(status)
                                            .body(Full::new(Bytes::from_static(b"ok")))
                                            .unwrap(),
                                    )
                                }
                            });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        Self { addr, log, task }
    }

    /// Always answers `status` at once.
    async fn answering(status: u16) -> Self {
        Self::start(move |_| (status, Duration::ZERO)).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

fn settings(pairs: &[(&str, &str)]) -> WebhookSettings {
    let mut all = vec![
        ("MNEMOM_WEBHOOK_ALLOW_PRIVATE", "true"),
        ("MNEMOM_WEBHOOK_RETRY_DELAYS_MS", "10,10,10"),
        ("MNEMOM_WEBHOOK_TIMEOUT_MS", "2000"),
    ];
    all.extend_from_slice(pairs);
    WebhookSettings::from_source(&MapSource::from_pairs(all.iter().copied())).unwrap()
}

struct Env {
    db: TestDb,
    webhooks: Webhooks,
    writer: Writer,
    metrics: Metrics,
    agent_id: String,
    agent_hash: String,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn new(db: TestDb, settings: WebhookSettings) -> Self {
        db.store.migrate().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut writer_settings = WriterSettings::defaults(dir.path());
        writer_settings.flush_interval = Duration::from_millis(10);
        let metrics = Metrics::new().unwrap();
        let writer =
            Writer::start(db.store.clone(), false, writer_settings, &metrics, None).unwrap();
        let webhooks = Webhooks::new(settings, db.store.clone(), writer.clone(), &metrics).unwrap();
        let agent_hash = hash_of(0xabc);
        let agent = db
            .store
            .get_or_create_agent(&agent_hash, &format!("smolt-{}", &agent_hash[..8]))
            .await
            .unwrap();
        Self {
            db,
            webhooks,
            writer,
            metrics,
            agent_id: agent.id,
            agent_hash,
            _dir: dir,
        }
    }

    async fn register(&self, url: &str, secret: &str, types: &[&str]) -> String {
        let types: Vec<String> = types.iter().map(|t| (*t).to_owned()).collect();
        self.db
            .store
            .insert_webhook_registration(&self.agent_id, url, secret, &types)
            .await
            .unwrap()
    }

    /// Stores a checkpoint and returns its event.
    async fn checkpoint(&self, id: &str, verdict: Verdict) -> CheckpointEvent {
        let mut record = checkpoint(id, &self.agent_id, "s", 0);
        record.verdict = verdict;
        record.concerns = serde_json::json!([{"category": "test", "severity": "low",
            "description": format!("concern of {id}")}]);
        self.db
            .store
            .insert_checkpoints(&[record.clone()])
            .await
            .unwrap();
        CheckpointEvent {
            agent_id: self.agent_id.clone(),
            agent_hash: self.agent_hash.clone(),
            checkpoint_id: id.to_owned(),
            verdict,
            concerns: record.concerns,
            reasoning_summary: record.reasoning_summary,
            timestamp: record.timestamp,
        }
    }

    /// Dispatches and waits for the outcome to be settled and written.
    async fn deliver(
        &self,
        event: CheckpointEvent,
        expected_rows: usize,
    ) -> Vec<WebhookDeliveryRecord> {
        let id = event.checkpoint_id.clone();
        self.webhooks.dispatch(event);
        self.webhooks.idle().await;
        self.rows(&id, expected_rows).await
    }

    /// The delivery rows of a checkpoint, once there are `n`.
    async fn rows(&self, checkpoint_id: &str, n: usize) -> Vec<WebhookDeliveryRecord> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let rows = self
                .db
                .store
                .webhook_deliveries_of_checkpoint(checkpoint_id)
                .await
                .unwrap();
            if rows.len() >= n || tokio::time::Instant::now() > deadline {
                assert_eq!(rows.len(), n, "delivery rows of {checkpoint_id}: {rows:?}");
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `(failure_count, enabled, disabled_at set, last_failure_at set)`.
    async fn registration(&self, id: &str) -> (i64, bool, bool, bool) {
        let store = &self.db.store;
        let failures = scalar_i64(
            store,
            &format!(
                "SELECT CAST(failure_count AS BIGINT) FROM aip_webhook_registrations \
                 WHERE id = '{id}'"
            ),
        )
        .await;
        let holds = |condition: &str| {
            format!(
                "SELECT count(*) FROM aip_webhook_registrations WHERE id = '{id}' AND {condition}"
            )
        };
        (
            failures,
            scalar_i64(store, &holds("enabled")).await == 1,
            scalar_i64(store, &holds("disabled_at IS NOT NULL")).await == 1,
            scalar_i64(store, &holds("last_failure_at IS NOT NULL")).await == 1,
        )
    }

    fn deliveries(&self, result: &str) -> u64 {
        self.webhooks
            .metrics()
            .deliveries_total
            .with_label_values(&[result])
            .get()
    }

    fn attempts(&self, result: &str) -> u64 {
        self.webhooks
            .metrics()
            .attempts_total
            .with_label_values(&[result])
            .get()
    }

    async fn finish(self) {
        self.webhooks
            .drain(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
        self.writer
            .shutdown(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
        self.db.finish().await;
    }
}

fn header<'a>(received: &'a Received, name: &str) -> &'a str {
    received
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Pure parts.

#[test]
fn settings_have_defaults_and_name_bad_variables() {
    let d = WebhookSettings::from_source(&MapSource::default()).unwrap();
    assert_eq!(d, WebhookSettings::default());
    assert!(!d.allow_private);
    assert_eq!(
        d.retry_delays,
        [1000, 4000, 16000].map(Duration::from_millis).to_vec()
    );
    assert_eq!(d.attempts_per_delivery(), 4);
    assert_eq!(d.attempt_timeout, Duration::from_secs(5));
    assert_eq!(d.disable_after, 10);
    assert_eq!(d.max_concurrency, 64);
    assert_eq!(d.redelivery_max_attempts, 8);
    assert_eq!(d.redelivery_max_age, Duration::from_secs(24 * 3600));

    let custom = settings(&[
        ("MNEMOM_WEBHOOK_RETRY_DELAYS_MS", " 5, 50 "),
        ("MNEMOM_WEBHOOK_DISABLE_AFTER", "0"),
        ("MNEMOM_WEBHOOK_MAX_CONCURRENCY", "3"),
        ("MNEMOM_WEBHOOK_REDELIVERY_MAX_ATTEMPTS", "5"),
        ("MNEMOM_WEBHOOK_REDELIVERY_MAX_AGE_HOURS", "2"),
    ]);
    assert!(custom.allow_private);
    assert_eq!(
        custom.retry_delays,
        [5, 50].map(Duration::from_millis).to_vec()
    );
    assert_eq!(custom.disable_after, 0);
    assert_eq!(custom.max_concurrency, 3);
    assert_eq!(custom.redelivery_max_attempts, 5);
    assert_eq!(custom.redelivery_max_age, Duration::from_secs(7200));
    assert!(
        settings(&[("MNEMOM_WEBHOOK_RETRY_DELAYS_MS", "none")])
            .retry_delays
            .is_empty()
    );

    for (variable, value) in [
        ("MNEMOM_WEBHOOK_ALLOW_PRIVATE", "maybe"),
        ("MNEMOM_WEBHOOK_RETRY_DELAYS_MS", "1000,soon"),
        ("MNEMOM_WEBHOOK_RETRY_DELAYS_MS", "-1"),
        ("MNEMOM_WEBHOOK_TIMEOUT_MS", "0"),
        ("MNEMOM_WEBHOOK_TIMEOUT_MS", "fast"),
        ("MNEMOM_WEBHOOK_DISABLE_AFTER", "-3"),
        ("MNEMOM_WEBHOOK_MAX_CONCURRENCY", "0"),
        ("MNEMOM_WEBHOOK_REDELIVERY_MAX_ATTEMPTS", "0"),
        ("MNEMOM_WEBHOOK_REDELIVERY_MAX_AGE_HOURS", "0"),
    ] {
        let error =
            WebhookSettings::from_source(&MapSource::from_pairs([(variable, value)])).unwrap_err();
        assert_eq!(error.variable, variable, "{value}");
        assert!(error.to_string().contains(variable));
    }
}

#[test]
fn signatures_verify_in_constant_time_and_reject_tampering() {
    let body = br#"{"event":"verdict.clear"}"#;
    let header = sign("s3cret", body);
    assert!(header.starts_with("sha256="));
    assert_eq!(header.len(), "sha256=".len() + 64);
    // An independent HMAC computation agrees.
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
    let expected = hex::encode(ring::hmac::sign(&key, body).as_ref());
    assert_eq!(header, format!("sha256={expected}"));
    assert!(verify_signature("s3cret", body, &header));
    assert!(verify_signature("s3cret", body, &expected));
    assert!(verify_signature(
        "s3cret",
        body,
        &header.to_uppercase().replace("SHA256=", "sha256=")
    ));
    assert!(!verify_signature("other", body, &header));
    assert!(!verify_signature(
        "s3cret",
        br#"{"event":"verdict.clear" }"#,
        &header
    ));
    assert!(!verify_signature("s3cret", body, "sha256=zz"));
    assert!(!verify_signature("s3cret", body, "sha256="));
    assert!(!verify_signature(
        "s3cret",
        body,
        &header[..header.len() - 2]
    ));
}

#[test]
fn event_types_match_star_family_and_exact() {
    let types = |t: &[&str]| t.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert!(matches_event(&types(&["*"]), "verdict.clear"));
    assert!(matches_event(
        &types(&["verdict.*"]),
        "verdict.boundary_violation"
    ));
    assert!(matches_event(
        &types(&["verdict.clear", "verdict.review_needed"]),
        "verdict.review_needed"
    ));
    assert!(!matches_event(
        &types(&["verdict.clear"]),
        "verdict.boundary_violation"
    ));
    assert!(!matches_event(&types(&["verdict"]), "verdict.clear"));
    assert!(!matches_event(&types(&[]), "verdict.clear"));
    assert_eq!(event_type(Verdict::ReviewNeeded), "verdict.review_needed");
}

#[test]
fn payload_is_compact_json_in_the_original_field_order() {
    let event = CheckpointEvent {
        agent_id: "smolt-1".to_owned(),
        agent_hash: "h".to_owned(),
        checkpoint_id: "ic-1".to_owned(),
        verdict: Verdict::BoundaryViolation,
        concerns: serde_json::json!([{"category": "deception"}]),
        reasoning_summary: "why".to_owned(),
        timestamp: DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678901Z")
            .unwrap()
            .with_timezone(&Utc),
    };
    assert_eq!(
        String::from_utf8(event.payload()).unwrap(),
        r#"{"event":"verdict.boundary_violation","timestamp":"2026-01-02T03:04:05.678Z","checkpoint":{"checkpoint_id":"ic-1","agent_id":"smolt-1","verdict":"boundary_violation","concerns":[{"category":"deception"}],"reasoning_summary":"why"}}"#
    );
    let id = new_delivery_id();
    assert_eq!(id.len(), 16);
    assert!(id.starts_with("del-"));
    assert!(
        id[4..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_ne!(id, new_delivery_id());
}

#[test]
fn the_guard_refuses_every_non_public_address() {
    let refused = [
        "127.0.0.1",
        "127.255.0.9",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.0.1",
        "0.0.0.0",
        "0.1.2.3",
        "255.255.255.255",
        "224.0.0.1",
        "239.1.1.1",
        "100.64.0.1",
        "100.127.255.254",
        "192.0.0.8",
        "192.0.2.1",
        "198.51.100.7",
        "203.0.113.9",
        "198.18.0.1",
        "198.19.255.1",
        "240.0.0.1",
        "::",
        "::1",
        "fe80::1",
        "febf::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::1",
        "2002:c0a8:101::1",
        "2001:db8::1",
        "2001:2::1",
        "3fff::1",
        "fec0::1",
        "100::1",
    ];
    for ip in refused {
        let ip: IpAddr = ip.parse().unwrap();
        assert!(refusal(ip, false).is_some(), "{ip} must be refused");
    }
    let public = [
        "8.8.8.8",
        "1.1.1.1",
        "172.15.255.255",
        "172.32.0.1",
        "100.63.255.255",
        "100.128.0.1",
        "192.169.0.1",
        "169.253.255.255",
        "2606:4700:4700::1111",
        "2a00:1450:4001::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ];
    for ip in public {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(refusal(ip, false), None, "{ip} must be allowed");
    }
    // Allowed private destinations, but never unspecified, broadcast or multicast ones.
    for ip in ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "fd00::1"] {
        assert_eq!(refusal(ip.parse().unwrap(), true), None, "{ip}");
    }
    for ip in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "::", "ff02::1"] {
        assert!(refusal(ip.parse().unwrap(), true).is_some(), "{ip}");
    }
}

#[test]
fn callback_urls_are_parsed_strictly() {
    let t = Target::parse("https://Example.COM/hook?x=1").unwrap();
    assert!(t.https);
    assert_eq!((t.host.as_str(), t.port), ("example.com", 443));
    assert_eq!(t.host_header, "example.com");
    assert_eq!(t.path_and_query, "/hook?x=1");
    let t = Target::parse("http://[::1]:8080").unwrap();
    assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
    assert_eq!(t.host_header, "[::1]:8080");
    assert_eq!(t.path_and_query, "/");
    assert_eq!(Target::parse("http://h:80/").unwrap().host_header, "h");
    for bad in [
        "ftp://example.com/",
        "example.com/hook",
        "/hook",
        "https://user:pw@example.com/",
        "file:///etc/passwd",
        "http://h:0/",
    ] {
        assert!(Target::parse(bad).is_err(), "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery.

/// The receiver gets the documented headers and a body it can verify with the shared secret;
/// the delivery row carries the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_signed_and_shaped_as_documented() {
    let env = Env::new(TestDb::sqlite(), settings(&[])).await;
    let receiver = Receiver::answering(204).await;
    let registration = env
        .register(&receiver.url("/aip?x=1"), "whsec-1", &["*"])
        .await;
    let event = env.checkpoint("ic-shape", Verdict::ReviewNeeded).await;
    let rows = env.deliver(event, 1).await;

    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let request = &got[0];
    assert_eq!(request.path, "/aip?x=1");
    assert_eq!(header(request, "content-type"), "application/json");
    assert_eq!(header(request, "x-aip-version"), "0.1.0");
    assert_eq!(header(request, "x-aip-event"), "verdict.review_needed");
    assert_eq!(header(request, "host"), receiver.addr.to_string());
    assert_eq!(
        header(request, "user-agent"),
        format!("mnemom-gateway/{}", env!("CARGO_PKG_VERSION"))
    );
    let signature = header(request, "x-aip-signature");
    assert!(verify_signature("whsec-1", &request.body, signature));
    assert!(!verify_signature("whsec-2", &request.body, signature));
    // Recomputed independently.
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"whsec-1");
    assert_eq!(
        signature,
        format!(
            "sha256={}",
            hex::encode(ring::hmac::sign(&key, &request.body).as_ref())
        )
    );
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["event"], "verdict.review_needed");
    assert_eq!(body["checkpoint"]["checkpoint_id"], "ic-shape");
    assert_eq!(body["checkpoint"]["agent_id"], env.agent_id.as_str());
    assert_eq!(body["checkpoint"]["verdict"], "review_needed");
    assert_eq!(body["checkpoint"]["concerns"][0]["category"], "test");
    assert_eq!(
        body["checkpoint"]["reasoning_summary"],
        "summary of ic-shape"
    );
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(
        !String::from_utf8_lossy(&request.body).contains(": "),
        "compact JSON"
    );

    let row = &rows[0];
    assert_eq!(header(request, "x-aip-delivery"), row.id);
    assert_eq!(row.registration_id, registration);
    assert_eq!(row.event_type, "verdict.review_needed");
    assert!(row.delivered);
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_status, Some(204));
    assert_eq!(row.last_error, None);
    assert_eq!(env.deliveries("delivered"), 1);
    assert_eq!(env.attempts("success"), 1);
    assert_eq!(
        env.metrics
            .background_tasks_total
            .with_label_values(&["webhook"])
            .get(),
        1
    );
    env.finish().await;
}

/// 500 then 200: delivered with the true attempt count, and a success resets the failure count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_success_records_the_real_attempts() {
    let env = Env::new(TestDb::postgres().await, settings(&[])).await;
    let receiver = Receiver::start(|n| (if n == 0 { 500 } else { 200 }, Duration::ZERO)).await;
    let registration = env.register(&receiver.url("/"), "s", &["verdict.*"]).await;
    for _ in 0..3 {
        env.db
            .store
            .record_webhook_outcome(&registration, false, 10, Utc::now())
            .await
            .unwrap();
    }
    assert_eq!(env.registration(&registration).await.0, 3);
    let rows = env
        .deliver(env.checkpoint("ic-retry", Verdict::Clear).await, 1)
        .await;
    assert_eq!(receiver.count(), 2);
    assert!(rows[0].delivered);
    assert_eq!(rows[0].attempts, 2);
    assert_eq!(rows[0].last_status, Some(200));
    assert_eq!(env.registration(&registration).await.0, 0);
    assert_eq!(
        (env.attempts("http_error"), env.attempts("success")),
        (1, 1)
    );
    // Both attempts carried the same delivery id and signature.
    let got = receiver.received();
    assert_eq!(
        header(&got[0], "x-aip-delivery"),
        header(&got[1], "x-aip-delivery")
    );
    env.finish().await;
}

/// Every attempt fails: 1 + 3 attempts, a failed record, one more consecutive failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_total_failure_is_recorded_and_counted() {
    let env = Env::new(TestDb::postgres().await, settings(&[])).await;
    let receiver = Receiver::answering(503).await;
    let registration = env.register(&receiver.url("/"), "s", &["*"]).await;
    let rows = env
        .deliver(
            env.checkpoint("ic-fail", Verdict::BoundaryViolation).await,
            1,
        )
        .await;
    assert_eq!(receiver.count(), 4);
    let row = &rows[0];
    assert!(!row.delivered);
    assert_eq!(row.attempts, 4);
    assert_eq!(row.last_status, Some(503));
    assert_eq!(row.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(row.event_type, "verdict.boundary_violation");
    assert_eq!(
        env.registration(&registration).await,
        (1, true, false, true)
    );
    assert_eq!(env.deliveries("failed"), 1);
    assert_eq!(env.attempts("http_error"), 4);
    assert_eq!(
        env.webhooks
            .metrics()
            .delivery_duration
            .with_label_values(&["failed"])
            .get_sample_count(),
        1
    );
    env.finish().await;
}

/// A 4xx other than 408/429 is final; 429 is retried; a connection refused is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_final_but_429_and_connect_errors_are_retried() {
    let env = Env::new(TestDb::sqlite(), settings(&[])).await;
    let not_found = Receiver::answering(404).await;
    let limited = Receiver::start(|n| (if n < 2 { 429 } else { 200 }, Duration::ZERO)).await;
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let r404 = env.register(&not_found.url("/"), "s", &["*"]).await;
    let r429 = env.register(&limited.url("/"), "s", &["*"]).await;
    let rclosed = env
        .register(&format!("http://{closed}/"), "s", &["*"])
        .await;
    let rows = env
        .deliver(env.checkpoint("ic-4xx", Verdict::Clear).await, 3)
        .await;
    let row = |id: &str| {
        rows.iter()
            .find(|r| r.registration_id == id)
            .unwrap()
            .clone()
    };
    assert_eq!(not_found.count(), 1);
    assert_eq!(
        (row(&r404).attempts, row(&r404).last_status),
        (1, Some(404))
    );
    assert!(!row(&r404).delivered);
    assert_eq!(limited.count(), 3);
    assert!(row(&r429).delivered);
    assert_eq!(row(&r429).attempts, 3);
    let refused = row(&rclosed);
    assert_eq!(
        (refused.attempts, refused.last_status, refused.delivered),
        (4, None, false)
    );
    assert!(
        refused.last_error.as_deref().unwrap().contains("onnect"),
        "{:?}",
        refused.last_error
    );
    assert_eq!(env.attempts("connect_error"), 4);
    env.finish().await;
}

/// A receiver slower than the attempt timeout fails with a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_time_out() {
    let env = Env::new(
        TestDb::sqlite(),
        settings(&[
            ("MNEMOM_WEBHOOK_TIMEOUT_MS", "100"),
            ("MNEMOM_WEBHOOK_RETRY_DELAYS_MS", "none"),
        ]),
    )
    .await;
    let receiver = Receiver::start(|_| (200, Duration::from_secs(3))).await;
    env.register(&receiver.url("/"), "s", &["*"]).await;
    let started = std::time::Instant::now();
    let rows = env
        .deliver(env.checkpoint("ic-slow", Verdict::Clear).await, 1)
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!((rows[0].attempts, rows[0].delivered), (1, false));
    assert_eq!(
        rows[0].last_error.as_deref(),
        Some("timed out after 100 ms")
    );
    assert_eq!(env.attempts("timeout"), 1);
    env.finish().await;
}

/// After `disable_after` consecutive failed deliveries the registration is disabled (atomically,
/// with `disabled_at`) and receives nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_registration_is_disabled_after_the_limit() {
    let env = Env::new(
        TestDb::postgres().await,
        settings(&[
            ("MNEMOM_WEBHOOK_DISABLE_AFTER", "3"),
            ("MNEMOM_WEBHOOK_RETRY_DELAYS_MS", "none"),
        ]),
    )
    .await;
    let receiver = Receiver::answering(500).await;
    let healthy = Receiver::answering(200).await;
    let registration = env.register(&receiver.url("/"), "s", &["*"]).await;
    env.register(&healthy.url("/"), "s", &["*"]).await;
    for n in 0..3 {
        env.deliver(env.checkpoint(&format!("ic-d{n}"), Verdict::Clear).await, 2)
            .await;
        let (failures, enabled, disabled_at, _) = env.registration(&registration).await;
        assert_eq!(failures, n + 1);
        assert_eq!(enabled, n < 2, "after {} failures", n + 1);
        assert_eq!(disabled_at, n == 2);
    }
    assert_eq!(env.deliveries("disabled"), 1);
    // The cache forgot it at once: the next checkpoint goes to the healthy one only.
    env.deliver(env.checkpoint("ic-d3", Verdict::Clear).await, 1)
        .await;
    assert_eq!(receiver.count(), 3);
    assert_eq!(healthy.count(), 4);
    assert!(
        env.db
            .store
            .webhook_registrations(&env.agent_id)
            .await
            .unwrap()
            .len()
            == 1
    );
    // Re-enabling resets the count.
    assert!(
        env.db
            .store
            .enable_webhook_registration(&registration)
            .await
            .unwrap()
    );
    assert_eq!(
        env.registration(&registration).await,
        (0, true, false, true)
    );
    env.finish().await;
}

/// With the guard on, loopback, private, metadata and IPv6 loopback destinations, and a name
/// resolving to loopback, are refused before any connection: the receiver sees nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_destinations_are_refused_without_a_request() {
    let env = Env::new(
        TestDb::sqlite(),
        settings(&[("MNEMOM_WEBHOOK_ALLOW_PRIVATE", "false")]),
    )
    .await;
    let receiver = Receiver::answering(200).await;
    let port = receiver.addr.port();
    let urls = [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::1]:{port}/"),
        "http://10.0.0.1/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
    ];
    for url in &urls {
        env.register(url, "s", &["*"]).await;
    }
    let started = std::time::Instant::now();
    let rows = env
        .deliver(env.checkpoint("ic-ssrf", Verdict::Clear).await, urls.len())
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no retries, no connection attempts"
    );
    assert_eq!(receiver.count(), 0);
    for row in &rows {
        assert!(!row.delivered);
        assert_eq!(row.attempts, 1);
        assert_eq!(row.last_status, None);
        let error = row.last_error.as_deref().unwrap();
        assert!(error.starts_with("refused destination"), "{error}");
    }
    assert_eq!(env.deliveries("refused"), urls.len() as u64);
    assert_eq!(
        env.attempts("success")
            + env.attempts("connect_error")
            + env.attempts("http_error")
            + env.attempts("timeout"),
        0
    );
    // Refusals count as failures of the registration.
    let registrations = env
        .db
        .store
        .webhook_registrations(&env.agent_id)
        .await
        .unwrap();
    assert_eq!(registrations.len(), urls.len());
    assert!(registrations.iter().all(|r| r.failure_count == 1));
    env.finish().await;
}

/// Allowed private destinations work by name too: the connection goes to a vetted address, and
/// the Host header keeps the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostname_is_resolved_once_and_sent_as_host() {
    let env = Env::new(TestDb::sqlite(), settings(&[])).await;
    let receiver = Receiver::answering(200).await;
    let port = receiver.addr.port();
    env.register(&format!("http://localhost:{port}/named"), "s", &["*"])
        .await;
    let rows = env
        .deliver(env.checkpoint("ic-name", Verdict::Clear).await, 1)
        .await;
    // `localhost` may resolve to ::1 first, where nobody listens: the retry rotates addresses.
    assert!(rows[0].delivered, "{rows:?}");
    let got = receiver.received();
    assert_eq!(header(&got[0], "host"), format!("localhost:{port}"));
    assert_eq!(got[0].path, "/named");
    env.finish().await;
}

/// `*`, `verdict.*` and the exact type match; another exact type does not; disabled
/// registrations get nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_matching_enabled_registrations_receive_the_event() {
    let env = Env::new(TestDb::postgres().await, settings(&[])).await;
    let receivers = [
        Receiver::answering(200).await,
        Receiver::answering(200).await,
        Receiver::answering(200).await,
        Receiver::answering(200).await,
        Receiver::answering(200).await,
    ];
    env.register(&receivers[0].url("/"), "s", &["*"]).await;
    env.register(&receivers[1].url("/"), "s", &["verdict.*"])
        .await;
    env.register(
        &receivers[2].url("/"),
        "s",
        &["verdict.clear", "verdict.boundary_violation"],
    )
    .await;
    env.register(&receivers[3].url("/"), "s", &["verdict.review_needed"])
        .await;
    let disabled = env.register(&receivers[4].url("/"), "s", &["*"]).await;
    env.db
        .store
        .record_webhook_outcome(&disabled, false, 1, Utc::now())
        .await
        .unwrap();
    let rows = env
        .deliver(
            env.checkpoint("ic-match", Verdict::BoundaryViolation).await,
            3,
        )
        .await;
    let counts: Vec<usize> = receivers.iter().map(Receiver::count).collect();
    assert_eq!(counts, [1, 1, 1, 0, 0]);
    assert!(rows.iter().all(|r| r.delivered));
    env.finish().await;
}

/// Deliveries to several registrations run concurrently, not one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_delivered_concurrently() {
    let env = Env::new(TestDb::sqlite(), settings(&[])).await;
    let mut receivers = Vec::new();
    for _ in 0..4 {
        let receiver = Receiver::start(|_| (200, Duration::from_millis(500))).await;
        env.register(&receiver.url("/"), "s", &["*"]).await;
        receivers.push(receiver);
    }
    let started = std::time::Instant::now();
    env.deliver(env.checkpoint("ic-par", Verdict::Clear).await, 4)
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "4 × 500 ms took {:?}",
        started.elapsed()
    );
    assert!(receivers.iter().all(|r| r.count() == 1));
    env.finish().await;
}

/// Beyond `MNEMOM_WEBHOOK_MAX_CONCURRENCY` deliveries in flight, a delivery is recorded as not
/// attempted (for the redelivery job), not queued, and not counted against the registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_beyond_the_concurrency_limit_are_deferred() {
    let env = Env::new(
        TestDb::sqlite(),
        settings(&[("MNEMOM_WEBHOOK_MAX_CONCURRENCY", "1")]),
    )
    .await;
    let slow = Receiver::start(|_| (200, Duration::from_millis(300))).await;
    let other = Receiver::start(|_| (200, Duration::from_millis(300))).await;
    let a = env.register(&slow.url("/"), "s", &["*"]).await;
    let b = env.register(&other.url("/"), "s", &["*"]).await;
    let rows = env
        .deliver(env.checkpoint("ic-cap", Verdict::Clear).await, 2)
        .await;
    assert_eq!(slow.count() + other.count(), 1);
    let deferred: Vec<_> = rows.iter().filter(|r| !r.delivered).collect();
    assert_eq!(deferred.len(), 1);
    assert_eq!(deferred[0].attempts, 1);
    assert!(
        deferred[0]
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("not attempted"),
        "{deferred:?}"
    );
    assert_eq!(
        (env.deliveries("delivered"), env.deliveries("deferred")),
        (1, 1)
    );
    for id in [a, b] {
        assert_eq!(env.registration(&id).await.0, 0);
    }
    env.finish().await;
}

/// N concurrent failures of one registration count N (no lost update), through the store on
/// both backends and through concurrent dispatches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_failures_are_all_counted() {
    for db in [TestDb::postgres().await, TestDb::sqlite()] {
        let env = Env::new(db, settings(&[("MNEMOM_WEBHOOK_RETRY_DELAYS_MS", "none")])).await;
        let registration = env.register("http://127.0.0.1:9/", "s", &["*"]).await;
        const N: usize = 24;
        let calls = (0..N).map(|_| {
            let store = env.db.store.clone();
            let id = registration.clone();
            tokio::spawn(async move {
                store
                    .record_webhook_outcome(&id, false, 0, Utc::now())
                    .await
                    .unwrap()
                    .unwrap()
            })
        });
        let mut seen: Vec<u32> = Vec::new();
        for call in futures_util::future::join_all(calls).await {
            seen.push(call.unwrap().failure_count);
        }
        seen.sort_unstable();
        assert_eq!(
            seen,
            (1..=N as u32).collect::<Vec<_>>(),
            "{}",
            env.db.store.backend_name()
        );
        assert_eq!(env.registration(&registration).await.0, N as i64);

        // And through the deliverer: 8 checkpoints at once to a failing receiver.
        let receiver = Receiver::answering(500).await;
        let failing = env.register(&receiver.url("/"), "s", &["*"]).await;
        env.webhooks.invalidate(&env.agent_id);
        let mut events = Vec::new();
        for n in 0..8 {
            events.push(env.checkpoint(&format!("ic-c{n}"), Verdict::Clear).await);
        }
        for event in events {
            env.webhooks.dispatch(event);
        }
        env.webhooks.idle().await;
        assert_eq!(receiver.count(), 8);
        assert_eq!(env.registration(&failing).await.0, 8);
        env.finish().await;
    }
}

/// Draining stops retry waits at once and records the delivery as undelivered for the
/// redelivery job; at the deadline, attempts in progress are abandoned the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_records_interrupted_deliveries() {
    let env = Env::new(
        TestDb::sqlite(),
        settings(&[("MNEMOM_WEBHOOK_RETRY_DELAYS_MS", "30000")]),
    )
    .await;
    let failing = Receiver::answering(502).await;
    let hanging = Receiver::start(|_| (200, Duration::from_secs(60))).await;
    let a = env.register(&failing.url("/"), "s", &["*"]).await;
    let b = env.register(&hanging.url("/"), "s", &["*"]).await;
    env.webhooks
        .dispatch(env.checkpoint("ic-drain", Verdict::Clear).await);
    while failing.count() + hanging.count() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = std::time::Instant::now();
    let report = env
        .webhooks
        .drain(tokio::time::Instant::now() + Duration::from_millis(300))
        .await;
    assert!(!report.completed);
    assert_eq!(report.abandoned, 0);
    assert!(started.elapsed() < Duration::from_secs(2));
    let rows = env.rows("ic-drain", 2).await;
    for row in &rows {
        assert!(!row.delivered);
        assert_eq!(row.attempts, 1);
        assert!(
            row.last_error
                .as_deref()
                .unwrap()
                .starts_with("interrupted"),
            "{row:?}"
        );
    }
    let failed = rows.iter().find(|r| r.registration_id == a).unwrap();
    assert_eq!(failed.last_status, Some(502));
    assert!(rows.iter().any(|r| r.registration_id == b));
    // Not counted against the registrations.
    assert_eq!(env.registration(&a).await.0, 0);
    assert_eq!(env.deliveries("deferred"), 2);
    // After the drain nothing is attempted.
    env.webhooks
        .dispatch(env.checkpoint("ic-late", Verdict::Clear).await);
    env.webhooks.idle().await;
    let late = env.rows("ic-late", 2).await;
    assert!(
        late.iter()
            .all(|r| r.last_error.as_deref().unwrap().contains("shutting down"))
    );
    assert_eq!(failing.count(), 1);
    env.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Redelivery.

/// Inserts a delivery row as the writer would have.
async fn stored_delivery(
    env: &Env,
    id: &str,
    registration: &str,
    checkpoint_id: &str,
    attempts: i32,
    created_at: DateTime<Utc>,
) {
    env.db
        .store
        .upsert_webhook_deliveries(&[WebhookDeliveryRecord {
            id: id.to_owned(),
            registration_id: registration.to_owned(),
            checkpoint_id: checkpoint_id.to_owned(),
            event_type: "verdict.clear".to_owned(),
            delivered: false,
            attempts,
            last_status: Some(503),
            last_error: Some("HTTP 503".to_owned()),
            created_at,
        }])
        .await
        .unwrap();
}

async fn redelivery_job_sends_due_deliveries_once(db: TestDb) {
    let env = Env::new(db, settings(&[("MNEMOM_WEBHOOK_DISABLE_AFTER", "2")])).await;
    let backend = env.db.store.backend_name();
    let ok = Receiver::answering(200).await;
    let down = Receiver::answering(503).await;
    let good = env.register(&ok.url("/ok"), "secret-ok", &["*"]).await;
    let bad = env
        .register(&down.url("/down"), "secret-down", &["*"])
        .await;
    let now = Utc::now();
    let hours = |h: i64| now - chrono::Duration::hours(h);
    let minutes = |m: i64| now - chrono::Duration::minutes(m);
    let mut checkpoints = Vec::new();
    for name in ["due", "exhausted", "old", "early", "down", "done"] {
        let event = env.checkpoint(&format!("ic-{name}"), Verdict::Clear).await;
        checkpoints.push(event);
    }
    // Due: 4 attempts, created 2 hours ago.
    stored_delivery(&env, "del-000000000001", &good, "ic-due", 4, hours(2)).await;
    // Budget spent (8 attempts).
    stored_delivery(&env, "del-000000000002", &good, "ic-exhausted", 8, hours(2)).await;
    // Too old (25 hours).
    stored_delivery(&env, "del-000000000003", &good, "ic-old", 4, hours(25)).await;
    // Not due yet: 4 attempts wait 8 minutes.
    stored_delivery(&env, "del-000000000004", &good, "ic-early", 4, minutes(3)).await;
    // Due (1 attempt waits 1 minute), but the receiver is still down.
    let seconds = |s: i64| now - chrono::Duration::seconds(s);
    stored_delivery(&env, "del-000000000005", &bad, "ic-down", 1, seconds(90)).await;
    // Delivered already.
    env.db
        .store
        .upsert_webhook_deliveries(&[WebhookDeliveryRecord {
            id: "del-000000000006".to_owned(),
            registration_id: good.clone(),
            checkpoint_id: "ic-done".to_owned(),
            event_type: "verdict.clear".to_owned(),
            delivered: true,
            attempts: 1,
            last_status: Some(200),
            last_error: None,
            created_at: hours(1),
        }])
        .await
        .unwrap();

    let settings = crate::observer::ObserverSettings::default();
    let jobs = settings.jobs_with_webhooks(&env.db.store, &env.webhooks);
    let (job, schedule) = jobs
        .into_iter()
        .find(|(job, _)| job.name() == "webhook_redelivery")
        .expect("the redelivery job is scheduled");
    assert_eq!(schedule.to_string(), "* * * * *");
    let lease = crate::observer::Lease::Local;
    let outcome = crate::observer::run_scheduled(
        &job,
        now,
        crate::observer::Clock::System,
        &lease,
        &env.metrics,
        "test",
    )
    .await;
    assert_eq!(outcome, crate::observer::RunOutcome::Success, "{backend}");
    assert_eq!(
        env.metrics
            .cron_runs_total
            .with_label_values(&["webhook_redelivery", "success"])
            .get(),
        1
    );

    // The due delivery, with its original id and a valid signature.
    let got = ok.received();
    assert_eq!(got.len(), 1, "{backend}");
    assert_eq!(header(&got[0], "x-aip-delivery"), "del-000000000001");
    assert_eq!(got[0].path, "/ok");
    assert!(verify_signature(
        "secret-ok",
        &got[0].body,
        header(&got[0], "x-aip-signature")
    ));
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["checkpoint"]["checkpoint_id"], "ic-due");
    assert_eq!(body["checkpoint"]["concerns"], checkpoints[0].concerns);
    let original = String::from_utf8(checkpoints[0].payload()).unwrap();
    assert_eq!(String::from_utf8(got[0].body.to_vec()).unwrap(), original);
    let row = &env.rows("ic-due", 1).await[0];
    assert_eq!(
        (
            row.delivered,
            row.attempts,
            row.last_status,
            row.last_error.clone()
        ),
        (true, 5, Some(200), None),
        "{backend}"
    );
    for (checkpoint, attempts) in [("ic-exhausted", 8), ("ic-old", 4), ("ic-early", 4)] {
        let row = &env.rows(checkpoint, 1).await[0];
        assert_eq!(
            (row.delivered, row.attempts),
            (false, attempts),
            "{checkpoint}"
        );
    }
    let row = &env.rows("ic-done", 1).await[0];
    assert_eq!((row.delivered, row.attempts), (true, 1));

    // The failing one: one more attempt, one more failure.
    assert_eq!(down.count(), 1);
    let row = &env.rows("ic-down", 1).await[0];
    assert_eq!(
        (row.delivered, row.attempts, row.last_status),
        (false, 2, Some(503))
    );
    assert_eq!(env.registration(&bad).await.0, 1);
    assert_eq!(env.registration(&good).await.0, 0);

    // Running again at the same time sends nothing: the failing delivery's backoff (2 minutes
    // for 2 attempts) has not passed.
    let report = env.webhooks.redeliver(now, 100).await.unwrap();
    assert_eq!(report.sent, 0, "{backend}");
    assert_eq!((ok.count(), down.count()), (1, 1));

    // Later it is due again; this second consecutive failure disables the registration, after
    // which nothing of it is redelivered.
    let later = now + chrono::Duration::minutes(3);
    let report = env.webhooks.redeliver(later, 100).await.unwrap();
    assert_eq!((report.sent, report.delivered), (1, 0), "{backend}");
    assert_eq!(env.registration(&bad).await.0, 2);
    assert!(!env.registration(&bad).await.1);
    assert_eq!(env.deliveries("disabled"), 1);
    // An hour later the early one is due (and delivered); the old, exhausted and disabled ones
    // are not.
    let report = env
        .webhooks
        .redeliver(now + chrono::Duration::hours(1), 100)
        .await
        .unwrap();
    assert_eq!(
        (report.due, report.sent, report.delivered),
        (1, 1, 1),
        "{backend}"
    );
    assert_eq!((ok.count(), down.count()), (2, 2));
    let row = &env.rows("ic-early", 1).await[0];
    assert_eq!((row.delivered, row.attempts), (true, 5));
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_job_on_postgres() {
    redelivery_job_sends_due_deliveries_once(TestDb::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_job_on_sqlite() {
    redelivery_job_sends_due_deliveries_once(TestDb::sqlite()).await;
}

/// Two runs racing for the same due delivery send it once: the attempt is claimed first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_redelivery_runs_send_each_attempt_once() {
    let env = Env::new(TestDb::postgres().await, settings(&[])).await;
    let receiver = Receiver::start(|_| (503, Duration::from_millis(100))).await;
    let registration = env.register(&receiver.url("/"), "s", &["*"]).await;
    let now = Utc::now();
    for n in 0..5 {
        let id = format!("ic-race{n}");
        env.checkpoint(&id, Verdict::Clear).await;
        stored_delivery(
            &env,
            &format!("del-00000000010{n}"),
            &registration,
            &id,
            4,
            // Due for a 5th attempt (8 minutes), not for a 6th (16 minutes).
            now - chrono::Duration::minutes(10),
        )
        .await;
    }
    let (a, b) = tokio::join!(
        env.webhooks.redeliver(now, 100),
        env.webhooks.redeliver(now, 100)
    );
    assert_eq!(a.unwrap().sent + b.unwrap().sent, 5);
    assert_eq!(receiver.count(), 5);
    assert_eq!(
        scalar_i64(
            &env.db.store,
            "SELECT CAST(sum(attempts) AS BIGINT) FROM aip_webhook_deliveries"
        )
        .await,
        25
    );
    assert_eq!(env.registration(&registration).await.0, 5);
    env.finish().await;
}

/// Registrations are validated when they are created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_validated() {
    let env = Env::new(TestDb::sqlite(), settings(&[])).await;
    let store = &env.db.store;
    let all = vec!["*".to_owned()];
    for (url, secret, types) in [
        ("ftp://example.com/", "s", all.clone()),
        ("https://u:p@example.com/", "s", all.clone()),
        ("https://example.com/", "", all.clone()),
        ("https://example.com/", "s", vec![]),
        (
            "https://example.com/",
            "s",
            vec!["verdict.maybe".to_owned()],
        ),
    ] {
        let error = store
            .insert_webhook_registration(&env.agent_id, url, secret, &types)
            .await
            .unwrap_err();
        assert!(
            matches!(error, crate::store::webhooks::RegistrationError::Invalid(_)),
            "{error}"
        );
    }
    let id = store
        .insert_webhook_registration(
            &env.agent_id,
            "https://example.com/hook",
            "s",
            &["verdict.clear".to_owned(), "verdict.*".to_owned()],
        )
        .await
        .unwrap();
    assert!(id.starts_with("wh-"));
    let registrations = store.webhook_registrations(&env.agent_id).await.unwrap();
    assert_eq!(registrations.len(), 1);
    assert_eq!(registrations[0].event_types, ["verdict.clear", "verdict.*"]);
    assert!(registrations[0].enabled);
    // The same URL twice for one agent is a constraint violation.
    let duplicate = store
        .insert_webhook_registration(&env.agent_id, "https://example.com/hook", "s", &all)
        .await
        .unwrap_err();
    assert!(matches!(
        duplicate,
        crate::store::webhooks::RegistrationError::Store(ref e) if e.is_constraint_violation()
    ));
    env.finish().await;
}
