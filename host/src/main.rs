//! The `mnemom-gateway` binary: parses the command line, validates configuration (exit 64 with
//! `invalid configuration: <what>` on a bad value), builds the app and runs it until a signal.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mnemom_gateway::app::{App, BuildError};
use mnemom_gateway::config::{Config, EnvSource};
use mnemom_gateway::proxy::exchange::LogObserver;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for configuration errors (EX_CONFIG-style usage error, as sysexits' EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "mnemom-gateway",
    version,
    about = "Self-hosted LLM gateway with WebAssembly adapters and AIP integrity checks"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway (the default). Configuration comes from the environment.
    Serve,
    /// Apply pending database migrations to DATABASE_URL (or the embedded SQLite file), then exit.
    /// Idempotent; safe to run from several pods at once (one applies, the others wait).
    Migrate,
    /// License tools.
    License {
        #[command(subcommand)]
        command: LicenseCommand,
    },
    /// Plugin tools.
    #[command(alias = "plugins")]
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand, Debug)]
enum LicenseCommand {
    /// Verify a license token; print what it grants and why it is (in)valid.
    Inspect {
        /// The token; `-` reads standard input. Defaults to MNEMOM_LICENSE_JWT.
        token: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum PluginCommand {
    /// Print a component's world, imports, exports and sha256, and whether the gateway accepts it.
    Inspect {
        /// The `.wasm` file.
        file: PathBuf,
        /// Config entries for the smoke call (`key=value`), as a manifest's `[config]` would give.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write the embedded default plugins (component + manifest with sha256) into DIR.
    Export {
        /// Target directory (created if missing).
        dir: PathBuf,
    },
    /// Run an AIP policy component against a cases file (inputs, scripted analysis-LLM
    /// answers, expected reports); exits non-zero when a case fails.
    Test {
        /// The policy's `.wasm` file.
        file: PathBuf,
        /// The cases file (JSON).
        #[arg(long)]
        cases: PathBuf,
        /// The policy's manifest (limits, failure mode, config); by default a policy manifest
        /// whose world is read from the component's imports.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
        Command::Migrate => migrate(),
        Command::License {
            command: LicenseCommand::Inspect { token, json },
        } => {
            let out = mnemom_gateway::license::inspect_command(token.as_deref(), &EnvSource, json);
            let _ = std::io::stdout().write_all(out.text.as_bytes());
            ExitCode::from(out.exit_code)
        }
        Command::Plugin { command } => match run_plugin_command(command) {
            Ok(code) => code,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn serve() -> ExitCode {
    let config = match Config::from_source(&EnvSource) {
        Ok(config) => config,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    mnemom_gateway::logging::init(config.log_level, config.role.as_str());
    // Requests are served on their own worker threads (MNEMOM_WORKER_THREADS); this runtime
    // accepts connections and runs the background work.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        builder.worker_threads(1);
    }
    let main_runtime = builder
        .thread_name("mnemom-main")
        .enable_all()
        .build()
        .context("starting the async runtime");
    let result = main_runtime.and_then(|rt| rt.block_on(run(config)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let config_error = e
                .downcast_ref::<BuildError>()
                .is_some_and(|b| matches!(b, BuildError::PluginDir(_) | BuildError::Config(_)));
            tracing::error!(error = %format!("{e:#}"), "gateway stopped");
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            if config_error {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn migrate() -> ExitCode {
    let config = match Config::from_source(&EnvSource) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let store_config =
        match mnemom_gateway::store::StoreConfig::from_source(&EnvSource, &config.data_dir) {
            Ok(c) => c,
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "{e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
    mnemom_gateway::logging::init(config.log_level, "migrate");
    match runtime().map(|rt| rt.block_on(mnemom_gateway::store::run_migrate(&store_config))) {
        Ok(Ok(report)) => {
            let _ = writeln!(std::io::stdout(), "{report}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let address = std::net::SocketAddr::new(config.host, config.port);
    let role = config.role;
    let app = App::build_from(&EnvSource, Arc::new(LogObserver)).await?;
    for (plugin, reason) in &app.initial_load.failed {
        tracing::warn!(plugin = %plugin, reason = %reason, "plugin not loaded at start-up");
    }
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {address}"))?;
    tracing::info!(
        address = %address,
        role = role.as_str(),
        version = %app.config.version,
        plugins = app.registry.current().adapters().len(),
        startup_ms = app.lifecycle.boot.elapsed().as_millis() as u64,
        "mnemom-gateway listening"
    );
    app.serve(listener, shutdown_signal()).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}

fn run_plugin_command(command: PluginCommand) -> anyhow::Result<ExitCode> {
    let mut stdout = std::io::stdout();
    match command {
        PluginCommand::Export { dir } => {
            let written = mnemom_gateway::plugin::source::export_embedded(&dir)?;
            for path in written {
                writeln!(stdout, "{}", path.display())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Test {
            file,
            cases,
            manifest,
            json,
        } => {
            use mnemom_gateway::plugin::harness;
            let wasm =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let cases_text = std::fs::read_to_string(&cases)
                .with_context(|| format!("reading {}", cases.display()))?;
            let cases_file = harness::parse_cases(&cases_text)
                .with_context(|| format!("in {}", cases.display()))?;
            let manifest_text = match &manifest {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                ),
                None => None,
            };
            let results = runtime()?
                .block_on(harness::run_cases(
                    &wasm,
                    manifest_text.as_deref(),
                    &cases_file,
                ))
                .with_context(|| format!("testing {}", file.display()))?;
            if json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&results)?)?;
            } else {
                write!(stdout, "{}", harness::render(&results))?;
            }
            Ok(if results.iter().all(|r| r.passed) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        PluginCommand::Inspect { file, config, json } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let mut entries = std::collections::BTreeMap::new();
            for entry in config {
                let (key, value) = entry
                    .split_once('=')
                    .with_context(|| format!("--config `{entry}` must be KEY=VALUE"))?;
                entries.insert(key.to_owned(), value.to_owned());
            }
            let name = file.display().to_string();
            let inspection = runtime()?.block_on(mnemom_gateway::plugin::inspect::inspect(
                &name, &bytes, entries,
            ));
            if json {
                writeln!(stdout, "{}", serde_json::to_string_pretty(&inspection)?)?;
            } else {
                write!(stdout, "{}", inspection.render())?;
            }
            Ok(if inspection.accepted {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
