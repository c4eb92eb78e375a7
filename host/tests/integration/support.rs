//! Test harness: an in-process gateway wired to a mock provider, an exchange collector, an HTTP
//! client, and helpers to lay out plugin directories the way the kubelet does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mnemom_gateway::app::App;
use mnemom_gateway::config::MapSource;
use mnemom_gateway::proxy::exchange::{Exchange, ExchangeObserver};
use mnemom_mock_provider::{MockOptions, MockProvider};

pub const ANTHROPIC_KEY: &str = "sk-ant-test-key";
pub const GEMINI_KEY: &str = "gemini-test-key";

/// Collects exchanges delivered by the gateway.
#[derive(Debug, Default)]
pub struct Collector {
    exchanges: Mutex<Vec<Exchange>>,
    notify: tokio::sync::Notify,
    /// Set: says it reads no content, like the gateway's own observers (usage rows, logs).
    counts_only: std::sync::atomic::AtomicBool,
}

impl ExchangeObserver for Collector {
    fn observe(&self, exchange: Exchange) {
        self.exchanges.lock().unwrap().push(exchange);
        self.notify.notify_waiters();
    }

    fn needs_content(&self) -> bool {
        !self.counts_only.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Collector {
    /// From now on, tells the gateway that no content is read (see `needs_content`).
    pub fn set_counts_only(&self) {
        self.counts_only
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Waits until at least `n` exchanges arrived (panics after 10 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Exchange> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.notify.notified();
            {
                let all = self.exchanges.lock().unwrap();
                if all.len() >= n {
                    return all.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let have = self.exchanges.lock().unwrap().len();
                panic!("expected {n} exchanges, got {have}");
            }
        }
    }
}

/// A gateway running in this process.
pub struct TestGateway {
    _data: tempfile::TempDir,
    /// `MNEMOM_DATA_DIR` (a temporary directory unless the test set one).
    pub data_dir: PathBuf,
    pub app: Arc<App>,
    pub addr: SocketAddr,
    pub collector: Arc<Collector>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Shared compiled-plugin cache so every test does not recompile the adapters.
pub fn plugin_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")
}

impl TestGateway {
    /// Starts a gateway whose three providers point at `mock`, plus `extra` settings.
    pub async fn start(mock: &MockProvider, extra: &[(&str, &str)]) -> Self {
        let base = mock.base_url();
        let cache = plugin_cache_dir();
        let mut pairs: Vec<(String, String)> = vec![
            ("ANTHROPIC_BASE_URL".into(), base.clone()),
            ("OPENAI_BASE_URL".into(), base.clone()),
            ("GEMINI_BASE_URL".into(), base.clone()),
            (
                "MNEMOM_PLUGIN_CACHE_DIR".into(),
                cache.display().to_string(),
            ),
            ("MNEMOM_PLUGIN_RELOAD_DEBOUNCE_MS".into(), "100".into()),
        ];
        for (k, v) in extra {
            pairs.retain(|(key, _)| key != k);
            pairs.push(((*k).into(), (*v).into()));
        }
        Self::start_with(pairs).await
    }

    /// Starts a gateway with exactly these settings.
    pub async fn start_with(pairs: Vec<(String, String)>) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut pairs = pairs;
        if !pairs.iter().any(|(k, _)| k == "MNEMOM_DATA_DIR") {
            pairs.push(("MNEMOM_DATA_DIR".into(), data.path().display().to_string()));
        }
        let data_dir = pairs
            .iter()
            .find(|(k, _)| k == "MNEMOM_DATA_DIR")
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| data.path().to_owned());
        let source = MapSource::from_pairs(pairs);
        let collector = Arc::new(Collector::default());
        let app = App::build_from(&source, collector.clone())
            .await
            .expect("gateway builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.clone().serve(listener, async move {
            let _ = rx.await;
        }));
        // The server marks itself started before accepting; wait for that.
        while !app.lifecycle.started() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Self {
            _data: data,
            data_dir,
            app,
            addr,
            collector,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Begins a graceful shutdown and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// The value of a metric line (exact series text before the value), if present.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let response = get(&self.url("/metrics")).await;
        let text = String::from_utf8(response.body.to_vec()).unwrap();
        text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts a mock provider with default options.
pub async fn mock() -> MockProvider {
    MockProvider::start(MockOptions::default()).await.unwrap()
}

/// A collected HTTP response.
#[derive(Debug)]
pub struct Collected {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Collected {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request and collects the response.
pub async fn send(request: Request<Full<Bytes>>) -> Collected {
    let response = client()
        .request(request)
        .await
        .expect("request reaches the gateway");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body completes").to_bytes();
    Collected {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str) -> Collected {
    send(Request::get(url).body(Full::new(Bytes::new())).unwrap()).await
}

/// POST with headers.
pub async fn post(url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Collected {
    let mut builder = Request::post(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    send(builder.body(Full::new(body.into())).unwrap()).await
}

/// The path of a fixture file.
pub fn fixture_path(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/fixtures")
        .join(path)
}

/// Reads a fixture file.
pub fn fixture(path: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/fixtures")
        .join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The testkit component (a test program, never embedded in the gateway).
pub fn testkit_wasm() -> Vec<u8> {
    std::fs::read(env!("MNEMOM_PLUGIN_WASM_TESTKIT")).unwrap()
}

/// The embedded OpenAI adapter component.
pub fn openai_wasm() -> Vec<u8> {
    std::fs::read(env!("MNEMOM_PLUGIN_WASM_OPENAI")).unwrap()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    mnemom_gateway::plugin::engine::sha256_hex(bytes)
}

/// A manifest for a plugin file `<file_stem>.wasm`.
pub fn manifest(
    name: &str,
    file_stem: &str,
    wasm: &[u8],
    failure_mode: &str,
    timeout_ms: u64,
    config: &[(&str, &str)],
) -> String {
    let mut text = format!(
        "name = \"{name}\"\nworld = \"provider-adapter\"\nwasm = \"{file_stem}.wasm\"\nsha256 = \"{}\"\nfailure_mode = \"{failure_mode}\"\n[limits]\ntimeout_ms = {timeout_ms}\nmemory_mb = 64\n[config]\n",
        sha256_hex(wasm)
    );
    for (k, v) in config {
        text.push_str(&format!("\"{k}\" = \"{v}\"\n"));
    }
    text
}

/// A plugin directory laid out as the kubelet lays out a ConfigMap volume:
/// `DIR/..<timestamp>/files`, `DIR/..data -> ..<timestamp>`, and `DIR/<file> -> ..data/<file>`.
pub struct ConfigMapDir {
    pub dir: tempfile::TempDir,
    generation: u32,
    files: Vec<String>,
}

impl ConfigMapDir {
    pub fn new(files: &[(&str, &[u8])]) -> Self {
        let mut this = Self {
            dir: tempfile::tempdir().unwrap(),
            generation: 0,
            files: Vec::new(),
        };
        this.update(files);
        this
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Publishes a new version atomically, like the kubelet: write a new timestamped
    /// directory, point `..data_tmp` at it, rename it over `..data`, fix the top-level links,
    /// then remove the old directory.
    pub fn update(&mut self, files: &[(&str, &[u8])]) {
        use std::os::unix::fs::symlink;
        let root = self.dir.path().to_owned();
        self.generation += 1;
        let versioned = format!(
            "..2026_11_26_00_00_{:02}.{}",
            self.generation,
            1000 + self.generation
        );
        std::fs::create_dir(root.join(&versioned)).unwrap();
        for (name, bytes) in files {
            std::fs::write(root.join(&versioned).join(name), bytes).unwrap();
        }
        let old_target = std::fs::read_link(root.join("..data")).ok();
        symlink(&versioned, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        for (name, _) in files {
            let link = root.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(Path::new("..data").join(name), &link).unwrap();
            }
        }
        for old in &self.files {
            if !files.iter().any(|(n, _)| n == old) {
                let _ = std::fs::remove_file(root.join(old));
            }
        }
        self.files = files.iter().map(|(n, _)| (*n).to_owned()).collect();
        if let Some(old) = old_target {
            let _ = std::fs::remove_dir_all(root.join(old));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Databases and dependencies for the persistence tests.

/// The server the tests create their databases on (`MNEMOM_TEST_POSTGRES_URL`, default
/// `postgres://postgres@127.0.0.1:5432/test`).
pub fn postgres_admin_url() -> String {
    std::env::var("MNEMOM_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh, migrated PostgreSQL database, dropped when this goes out of scope.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
    pub pool: sqlx::PgPool,
}

impl PgDatabase {
    pub async fn create() -> Self {
        use sqlx::Connection;
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let admin = postgres_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("these tests need PostgreSQL at {admin}: {e}"));
        let name = format!(
            "mnemom_it_{}_{}_{}",
            std::process::id(),
            chrono::Utc::now().timestamp_subsec_nanos(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut attempts = 0;
        loop {
            // CREATE DATABASE fails while another session uses template1: retry.
            match sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut conn)
                .await
            {
                Ok(_) => break,
                Err(_) if attempts < 20 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("CREATE DATABASE {name}: {e}"),
            }
        }
        let _ = conn.close().await;
        let (root, _) = admin.rsplit_once('/').unwrap();
        let url = format!("{root}/{name}");
        let config =
            mnemom_gateway::store::StoreConfig::from_url(Some(&url), Path::new(".")).unwrap();
        mnemom_gateway::store::run_migrate(&config)
            .await
            .expect("migrations apply");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap();
        Self { name, url, pool }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            use sqlx::Connection;
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// Counts rows in the embedded SQLite database under `data_dir`.
pub async fn sqlite_count(data_dir: &Path, sql: &str) -> i64 {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("mnemom.db"))
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let n = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
    n
}

/// Polls `probe` every 50 ms until it returns `want` (panics after `limit`).
pub async fn eventually<F, Fut>(what: &str, limit: Duration, want: i64, probe: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let got = probe().await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: expected {want}, got {got}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a request and collects the response; `None` if the gateway could not be reached or the
/// body did not complete (for load that runs into a shutdown).
pub async fn try_post(
    url: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> Option<Collected> {
    let mut builder = Request::post(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .ok()?;
    let response = client().request(request).await.ok()?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.ok()?.to_bytes();
    Some(Collected {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// One proxied request of a rotating kind (providers, streaming or not) for caller `key`;
/// whether the gateway answered it completely with 200.
pub async fn one_request(base: &str, key: &str, n: usize) -> bool {
    let bearer = format!("Bearer {key}");
    let response = match n % 4 {
        0 => {
            try_post(
                &format!("{base}/anthropic/v1/messages"),
                &[("x-api-key", key), ("anthropic-version", "2023-06-01")],
                r#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#,
            )
            .await
        }
        1 => {
            try_post(
                &format!("{base}/anthropic/v1/messages"),
                &[("x-api-key", key), ("anthropic-version", "2023-06-01")],
                r#"{"model":"claude-sonnet-4-5","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
            )
            .await
        }
        2 => {
            try_post(
                &format!("{base}/openai/v1/chat/completions"),
                &[("authorization", bearer.as_str())],
                r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
            )
            .await
        }
        _ => {
            try_post(
                &format!("{base}/openai/v1/chat/completions"),
                &[("authorization", bearer.as_str())],
                r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
            )
            .await
        }
    };
    response.is_some_and(|r| r.status == StatusCode::OK)
}

/// A TCP relay to `target` that can be cut: closing it refuses new connections and drops the
/// open ones (what clients see when a server goes away).
pub struct TcpRelay {
    pub addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TcpRelay {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self {
            addr,
            task: Some(task),
        }
    }

    /// Stops listening and drops every relayed connection.
    pub async fn close(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A port nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
