//! `mnemom-bench`: the two load clients of the proxy benchmark (`tests/bench/run.sh`) that `wrk`
//! cannot be: time to the first body byte of a streamed response, and many streams held open at
//! once while the proxy's resident memory is sampled.
//!
//! ```text
//! mnemom-bench ttfb    --url URL [--header 'name: value']... [--body JSON | --body-file F]
//!                      [--requests 200] [--warmup 10] [--timeout-secs 30]
//! mnemom-bench streams --url URL [--header ...]... [--body ... ] [--count 1000] [--pid PID]...
//!                      [--hold-secs 5] [--open-parallel 64] [--open-timeout-secs 60]
//! ```
//!
//! Both print `key=value` lines on stdout (one fact per line) for the script to read; problems go
//! to stderr. Only plain `http://` URLs are supported: the benchmark runs on loopback.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};

const USAGE: &str = "\
usage: mnemom-bench ttfb    --url URL [--header 'name: value']... [--body JSON | --body-file FILE]
                            [--method POST] [--requests 200] [--warmup 10] [--timeout-secs 30]
       mnemom-bench streams --url URL [--header 'name: value']... [--body JSON | --body-file FILE]
                            [--method POST] [--count 1000] [--pid PID]... [--hold-secs 5]
                            [--open-parallel 64] [--open-timeout-secs 60]

ttfb     sends --requests streamed requests one after another on one keep-alive connection (after
         --warmup unmeasured ones), reads each response to its end, and reports the time from
         sending the request to the first non-empty body chunk (microseconds).
streams  opens --count streams at once (each on its own connection), waits until every one has
         its status and first body chunk, then samples the summed VmRSS of the --pid processes
         every 20 ms for --hold-secs while all stay open, and reports the peak.";

type Sender = http1::SendRequest<Full<Bytes>>;

/// What to send, and where.
#[derive(Debug, Clone)]
struct Target {
    /// `host:port` to connect to.
    address: String,
    /// The `Host` header value.
    authority: String,
    /// Path and query.
    path: String,
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Target {
    fn request(&self) -> Result<Request<Full<Bytes>>, String> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .header(HOST, self.authority.as_str());
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(self.body.clone()))
            .map_err(|e| format!("building the request: {e}"))
    }
}

/// Command-line options shared by both subcommands (the numeric ones each use a few).
#[derive(Debug)]
struct Options {
    target: Target,
    requests: usize,
    warmup: usize,
    timeout: Duration,
    count: usize,
    pids: Vec<u32>,
    hold: Duration,
    open_parallel: usize,
    open_timeout: Duration,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut url = None;
    let mut method = None;
    let mut headers = Vec::new();
    let mut body = Bytes::new();
    let mut options = Options {
        target: Target {
            address: String::new(),
            authority: String::new(),
            path: String::new(),
            method: Method::POST,
            headers: Vec::new(),
            body: Bytes::new(),
        },
        requests: 200,
        warmup: 10,
        timeout: Duration::from_secs(30),
        count: 1000,
        pids: Vec::new(),
        hold: Duration::from_secs(5),
        open_parallel: 64,
        open_timeout: Duration::from_secs(60),
    };
    let mut iter = args.iter();
    while let Some(flag) = iter.next() {
        let mut value = || {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--method" => method = Some(value()?),
            "--header" | "-H" => {
                let raw = value()?;
                let (name, val) = raw
                    .split_once(':')
                    .ok_or_else(|| format!("--header {raw:?}: expected 'name: value'"))?;
                let name = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|e| format!("--header {raw:?}: {e}"))?;
                let val = HeaderValue::from_str(val.trim())
                    .map_err(|e| format!("--header {raw:?}: {e}"))?;
                headers.push((name, val));
            }
            "--body" => body = Bytes::from(value()?),
            "--body-file" => {
                let path = value()?;
                body = Bytes::from(
                    std::fs::read(&path).map_err(|e| format!("--body-file {path}: {e}"))?,
                );
            }
            "--requests" => options.requests = number(flag, &value()?)?,
            "--warmup" => options.warmup = number(flag, &value()?)?,
            "--timeout-secs" => options.timeout = Duration::from_secs(number(flag, &value()?)?),
            "--count" => options.count = number(flag, &value()?)?,
            "--pid" => options.pids.push(number(flag, &value()?)?),
            "--hold-secs" => options.hold = Duration::from_secs(number(flag, &value()?)?),
            "--open-parallel" => options.open_parallel = number::<usize>(flag, &value()?)?.max(1),
            "--open-timeout-secs" => {
                options.open_timeout = Duration::from_secs(number(flag, &value()?)?)
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let url = url.ok_or("--url is required")?;
    let uri: Uri = url.parse().map_err(|e| format!("--url {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("--url {url:?}: only http:// is supported"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("--url {url:?}: no host"))?;
    let port = authority.port_u16().unwrap_or(80);
    options.target = Target {
        address: format!("{}:{port}", authority.host()),
        authority: authority.as_str().to_owned(),
        path: uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        method: match method {
            Some(m) => {
                Method::from_bytes(m.as_bytes()).map_err(|e| format!("--method {m:?}: {e}"))?
            }
            None if body.is_empty() => Method::GET,
            None => Method::POST,
        },
        headers,
        body,
    };
    Ok(options)
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: {value:?} is not a valid number"))
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        Some((command, rest)) if command == "ttfb" || command == "streams" => parse_options(rest)
            .and_then(|options| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("starting the runtime: {e}"))?;
                let lines = if command == "ttfb" {
                    runtime.block_on(ttfb(&options))?
                } else {
                    runtime.block_on(streams(&options))?
                };
                let mut stdout = std::io::stdout().lock();
                for line in lines {
                    writeln!(stdout, "{line}").map_err(|e| e.to_string())?;
                }
                Ok(())
            }),
        Some((command, _)) if command == "-h" || command == "--help" => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            Ok(())
        }
        _ => Err(format!("expected a subcommand\n{USAGE}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "mnemom-bench: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn connect(address: &str) -> Result<Sender, String> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connecting to {address}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP/1.1 handshake with {address}: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Whether a first body chunk looks like Server-Sent Events.
fn looks_like_sse(chunk: &[u8]) -> bool {
    chunk.starts_with(b"event:")
        || chunk.starts_with(b"data:")
        || chunk.starts_with(b":")
        || chunk.starts_with(b"id:")
}

/// The timings of one request.
#[derive(Debug)]
struct Timing {
    status: u16,
    headers: Duration,
    first_byte: Option<Duration>,
    total: Duration,
    sse: bool,
}

/// Sends one request on `sender` and reads the response to its end.
async fn timed_exchange(sender: &mut Sender, target: &Target) -> Result<Timing, String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection not ready: {e}"))?;
    let request = target.request()?;
    let start = Instant::now();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let headers = start.elapsed();
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut first_byte = None;
    let mut sse = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
        if let Ok(data) = frame.into_data()
            && !data.is_empty()
            && first_byte.is_none()
        {
            first_byte = Some(start.elapsed());
            sse = looks_like_sse(&data);
        }
    }
    Ok(Timing {
        status,
        headers,
        first_byte,
        total: start.elapsed(),
        sse,
    })
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn ttfb(options: &Options) -> Result<Vec<String>, String> {
    let target = &options.target;
    let mut sender: Option<Sender> = None;
    let mut first_bytes = Vec::with_capacity(options.requests);
    let mut headers = Vec::with_capacity(options.requests);
    let mut totals = Vec::with_capacity(options.requests);
    let (mut ok, mut errors, mut not_ok, mut not_sse, mut reconnects) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut last_error = String::new();
    // Bounded: at most warmup + requests attempts, each bounded by the timeout.
    for i in 0..options.warmup + options.requests {
        let measured = i >= options.warmup;
        let current = match sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => {
                if i > 0 {
                    reconnects += 1;
                }
                match connect(&target.address).await {
                    Ok(s) => s,
                    Err(e) => {
                        errors += 1;
                        last_error = e;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                }
            }
        };
        let mut current = current;
        match tokio::time::timeout(options.timeout, timed_exchange(&mut current, target)).await {
            Ok(Ok(timing)) => {
                sender = Some(current);
                if !measured {
                    continue;
                }
                if timing.status != 200 || timing.first_byte.is_none() {
                    not_ok += 1;
                    last_error = format!("status {}", timing.status);
                    continue;
                }
                if !timing.sse {
                    not_sse += 1;
                }
                ok += 1;
                first_bytes.push(micros(timing.first_byte.unwrap_or(timing.total)));
                headers.push(micros(timing.headers));
                totals.push(micros(timing.total));
            }
            Ok(Err(e)) => {
                errors += 1;
                last_error = e;
            }
            Err(_) => {
                errors += 1;
                last_error = format!("no complete response within {:?}", options.timeout);
            }
        }
    }
    for values in [&mut first_bytes, &mut headers, &mut totals] {
        values.sort_by(f64::total_cmp);
    }
    let mean = if first_bytes.is_empty() {
        f64::NAN
    } else {
        first_bytes.iter().sum::<f64>() / first_bytes.len() as f64
    };
    let mut lines = vec![
        format!("requests={}", options.requests),
        format!("ok={ok}"),
        format!("not_ok={not_ok}"),
        format!("errors={errors}"),
        format!("not_sse={not_sse}"),
        format!("reconnects={reconnects}"),
        format!("ttfb_p50_us={:.1}", percentile(&first_bytes, 50.0)),
        format!("ttfb_p90_us={:.1}", percentile(&first_bytes, 90.0)),
        format!("ttfb_p99_us={:.1}", percentile(&first_bytes, 99.0)),
        format!("ttfb_min_us={:.1}", percentile(&first_bytes, 0.0)),
        format!("ttfb_mean_us={mean:.1}"),
        format!("headers_p50_us={:.1}", percentile(&headers, 50.0)),
        format!("total_p50_ms={:.2}", percentile(&totals, 50.0) / 1000.0),
    ];
    if !last_error.is_empty() {
        lines.push(format!("last_error={last_error}"));
    }
    Ok(lines)
}

/// What a stream task reports.
#[derive(Debug)]
enum StreamEvent {
    Opened { status: u16, sse: bool },
    Failed(String),
    Ended,
}

/// Opens one stream: connects, sends, waits for the status and the first body chunk.
async fn open_stream(target: &Target) -> Result<(Sender, u16, bool, Incoming), String> {
    let mut sender = connect(&target.address).await?;
    sender
        .ready()
        .await
        .map_err(|e| format!("connection not ready: {e}"))?;
    let response = sender
        .send_request(target.request()?)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    loop {
        match body.frame().await {
            None => return Err(format!("status {status}: the body ended before any data")),
            Some(Err(e)) => return Err(format!("status {status}: reading the body: {e}")),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data()
                    && !data.is_empty()
                {
                    return Ok((sender, status, looks_like_sse(&data), body));
                }
            }
        }
    }
}

/// Summed `VmRSS` of `pids`, in KiB (processes that are gone count zero).
fn rss_kib(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .sum()
}

async fn streams(options: &Options) -> Result<Vec<String>, String> {
    let count = options.count;
    let rss_before = rss_kib(&options.pids);
    let (events_tx, mut events) = mpsc::unbounded_channel::<StreamEvent>();
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(options.open_parallel));
    let started = Instant::now();
    for _ in 0..count {
        let target = options.target.clone();
        let events_tx = events_tx.clone();
        let mut stop_rx = stop_rx.clone();
        let gate = gate.clone();
        let open_timeout = options.open_timeout;
        tokio::spawn(async move {
            let Ok(permit) = gate.acquire_owned().await else {
                return;
            };
            let opened = tokio::time::timeout(open_timeout, open_stream(&target)).await;
            drop(permit);
            let (sender, mut body) = match opened {
                Ok(Ok((sender, status, sse, body))) => {
                    let _ = events_tx.send(StreamEvent::Opened { status, sse });
                    (sender, body)
                }
                Ok(Err(e)) => {
                    let _ = events_tx.send(StreamEvent::Failed(e));
                    return;
                }
                Err(_) => {
                    let _ = events_tx.send(StreamEvent::Failed(format!(
                        "not open within {open_timeout:?}"
                    )));
                    return;
                }
            };
            // Keep reading (as a real client would) until told to stop or the body ends.
            let drain = async { while let Some(Ok(_)) = body.frame().await {} };
            tokio::select! {
                _ = stop_rx.wait_for(|stop| *stop) => {}
                () = drain => { let _ = events_tx.send(StreamEvent::Ended); }
            }
            drop(sender);
        });
    }
    drop(events_tx);

    let (mut opened, mut status_200, mut sse, mut failed, mut ended) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut first_failure = String::new();
    let mut peak_while_opening = rss_before;
    let open_deadline = Instant::now() + options.open_timeout + Duration::from_secs(5);
    let mut sample = tokio::time::interval(Duration::from_millis(20));
    while opened + failed < count && Instant::now() < open_deadline {
        tokio::select! {
            event = events.recv() => match event {
                Some(StreamEvent::Opened { status, sse: is_sse }) => {
                    opened += 1;
                    status_200 += usize::from(status == 200);
                    sse += usize::from(is_sse);
                }
                Some(StreamEvent::Failed(e)) => {
                    failed += 1;
                    if first_failure.is_empty() { first_failure = e; }
                }
                Some(StreamEvent::Ended) => ended += 1,
                None => break,
            },
            _ = sample.tick() => peak_while_opening = peak_while_opening.max(rss_kib(&options.pids)),
        }
    }
    let open_seconds = started.elapsed().as_secs_f64();

    // Every stream that opened is still open (unless it already ended): sample while they stay so.
    let mut peak_all_open = 0u64;
    let mut samples = 0usize;
    let mut ended_during_hold = 0usize;
    if opened > 0 {
        let hold_until = Instant::now() + options.hold;
        while Instant::now() < hold_until {
            tokio::select! {
                event = events.recv() => match event {
                    Some(StreamEvent::Ended) => ended_during_hold += 1,
                    Some(_) => {}
                    None => break,
                },
                _ = sample.tick() => {
                    peak_all_open = peak_all_open.max(rss_kib(&options.pids));
                    samples += 1;
                }
            }
        }
    }
    let rss_after_hold = rss_kib(&options.pids);
    let _ = stop_tx.send(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_after_close = rss_kib(&options.pids);

    let mut lines = vec![
        format!("count={count}"),
        format!("opened={opened}"),
        format!("status_200={status_200}"),
        format!("sse_first_chunk={sse}"),
        format!("failed={failed}"),
        format!("ended_before_hold={ended}"),
        format!("ended_during_hold={ended_during_hold}"),
        format!("open_seconds={open_seconds:.2}"),
        format!("hold_samples={samples}"),
        format!("rss_before_kib={rss_before}"),
        format!("rss_peak_opening_kib={peak_while_opening}"),
        format!("rss_peak_all_open_kib={peak_all_open}"),
        format!("rss_after_hold_kib={rss_after_hold}"),
        format!("rss_after_close_kib={rss_after_close}"),
    ];
    if !first_failure.is_empty() {
        lines.push(format!("first_failure={first_failure}"));
    }
    Ok(lines)
}
