//! `mock-provider`: runs the mock Anthropic / OpenAI / Gemini API as a standalone server (for benchmarks and
//! manual checks) until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use mnemom_mock_provider::{ChunkMode, MockOptions, MockProvider};

const USAGE: &str = "\
usage: mock-provider [--listen ADDR] [--fixtures DIR] [--latency-ms N] [--chunk-delay-ms N] [--chunk MODE] [--record]

  --listen ADDR        address to bind (default 127.0.0.1:8900; port 0 picks a free one)
  --fixtures DIR       fixtures directory holding <provider>/<file> (default: the repository's plugins/fixtures)
  --latency-ms N       delay before the response headers (default 0; x-mock-delay-ms overrides)
  --chunk-delay-ms N   delay between body frames (default 0; x-mock-chunk-delay-ms overrides)
  --chunk MODE         event | whole | bytes:N (default: event for SSE, whole for JSON; x-mock-chunk overrides)
  --record             keep received requests in memory (off by default: the binary never reads them)

Prints `listening on ADDR` once ready.";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "mock-provider: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let mut options = MockOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 8900)),
        record_requests: false,
        ..MockOptions::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--listen" => {
                let v = value()?;
                options.listen = v.parse().map_err(|err| format!("--listen {v:?}: {err}"))?;
            }
            "--fixtures" => options.fixtures_dir = PathBuf::from(value()?),
            "--latency-ms" => options.latency = millis("--latency-ms", &value()?)?,
            "--chunk-delay-ms" => options.chunk_delay = millis("--chunk-delay-ms", &value()?)?,
            "--chunk" => options.chunk = Some(value()?.parse::<ChunkMode>()?),
            "--record" => options.record_requests = true,
            "-h" | "--help" => {
                let _ = writeln!(std::io::stdout(), "{USAGE}");
                return Ok(());
            }
            _ => return Err(format!("unknown argument {arg:?}\n{USAGE}")),
        }
    }
    if !options.fixtures_dir.is_dir() {
        return Err(format!(
            "fixtures directory {} does not exist",
            options.fixtures_dir.display()
        ));
    }

    let mock = MockProvider::start(options)
        .await
        .map_err(|err| format!("cannot listen: {err}"))?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {}", mock.addr()).map_err(|err| err.to_string())?;
        stdout.flush().map_err(|err| err.to_string())?;
    }
    wait_for_signal().await?;
    mock.shutdown().await;
    Ok(())
}

fn millis(flag: &str, value: &str) -> Result<Duration, String> {
    value
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("{flag}: invalid number {value:?}"))
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).map_err(|err| err.to_string())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.map_err(|err| err.to_string()),
        _ = terminate.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<(), String> {
    tokio::signal::ctrl_c().await.map_err(|err| err.to_string())
}
