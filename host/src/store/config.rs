//! Where the database is: `DATABASE_URL` (PostgreSQL, or a `sqlite:` URL), or, when it is unset,
//! the embedded SQLite file `<MNEMOM_DATA_DIR>/mnemom.db`. Parsed and validated at start-up; a
//! malformed value is a [`ConfigError`] naming `DATABASE_URL`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

use crate::config::{ConfigError, ConfigSource};

/// The variable naming the database.
pub const DATABASE_URL: &str = "DATABASE_URL";

/// File name of the embedded database inside the data directory.
pub const EMBEDDED_FILE_NAME: &str = "mnemom.db";

/// Connections per process to PostgreSQL. The request path never waits on the database (reads
/// come from the cache, writes are the background writer's batches), so a few suffice; 8 per pod
/// keeps ten pods under PostgreSQL's default `max_connections` of 100.
const PG_MAX_CONNECTIONS: u32 = 8;

/// Connections to SQLite. Writers serialize on the file lock anyway; readers run beside them
/// (WAL), so a handful is plenty.
const SQLITE_MAX_CONNECTIONS: u32 = 4;

/// How long an operation waits for a pooled connection (and a new connection to open) before it
/// fails as unavailable. The background writer retries, so failing fast is the right trade.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a SQLite statement waits for another connection's write lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Which database, with its connect options.
#[derive(Clone)]
pub enum Backend {
    /// A PostgreSQL server.
    Postgres(PgConnectOptions),
    /// A SQLite file (or `sqlite::memory:`).
    Sqlite {
        /// Connect options, pragmas included.
        options: SqliteConnectOptions,
        /// The file, for creating its directory; `None` for an in-memory database.
        path: Option<PathBuf>,
        /// Whether this is the default (`DATABASE_URL` unset).
        embedded: bool,
    },
}

impl fmt::Debug for Backend {
    // Connect options hold the password: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Postgres(_) => f.write_str("Postgres"),
            Backend::Sqlite { embedded, .. } => f
                .debug_struct("Sqlite")
                .field("embedded", embedded)
                .finish(),
        }
    }
}

/// The validated storage configuration.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The database and how to reach it.
    pub backend: Backend,
    /// The database for messages and logs, without its password
    /// (`postgres://user@host:5432/db`, `sqlite:///data/mnemom.db`).
    pub target: String,
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long an operation waits for a connection.
    pub acquire_timeout: Duration,
}

impl StoreConfig {
    /// Reads `DATABASE_URL`; when unset, the embedded database lives in `data_dir` (the
    /// gateway's `MNEMOM_DATA_DIR`, already validated by [`crate::config::Config`]).
    pub fn from_source(source: &dyn ConfigSource, data_dir: &Path) -> Result<Self, ConfigError> {
        Self::from_url(source.get(DATABASE_URL).as_deref(), data_dir)
    }

    /// Builds the configuration from a `DATABASE_URL` value (`None`: the embedded default).
    pub fn from_url(url: Option<&str>, data_dir: &Path) -> Result<Self, ConfigError> {
        let url = url.map(str::trim).filter(|u| !u.is_empty());
        let Some(url) = url else {
            return Ok(Self::embedded(data_dir));
        };
        let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("postgres") | Some("postgresql") => Self::postgres(url),
            Some("sqlite") => Self::sqlite(url),
            _ => Err(invalid(
                "expected postgres://…, postgresql://… or sqlite:…, or leave it unset for the \
                 embedded SQLite database"
                    .to_owned(),
            )),
        }
    }

    /// The embedded default: `<data_dir>/mnemom.db`.
    pub fn embedded(data_dir: &Path) -> Self {
        let path = data_dir.join(EMBEDDED_FILE_NAME);
        let options = sqlite_options(SqliteConnectOptions::new().filename(&path));
        Self {
            target: format!("sqlite://{}", path.display()),
            backend: Backend::Sqlite {
                options,
                path: Some(path),
                embedded: true,
            },
            max_connections: SQLITE_MAX_CONNECTIONS,
            acquire_timeout: ACQUIRE_TIMEOUT,
        }
    }

    fn postgres(url: &str) -> Result<Self, ConfigError> {
        // sqlx reads libpq's PG* variables for anything the URL leaves out; that is fine, but the
        // URL is the documented interface, so it must at least parse as one.
        if let Some(mode) = query_param(url, &["sslmode", "ssl-mode"]) {
            // sqlx accepts the libpq modes; say which ones when the value is something else.
            if PgSslMode::from_str(&mode).is_err() {
                return Err(invalid(format!(
                    "sslmode `{mode}` is not one of disable, allow, prefer, require, verify-ca, \
                     verify-full"
                )));
            }
        }
        let parsed = PgConnectOptions::from_str(url).map_err(|e| invalid(describe_parse(&e)))?;
        let options = if parsed.get_application_name().is_none() {
            parsed.application_name("mnemom-gateway")
        } else {
            parsed
        };
        let target = format!(
            "postgres://{}@{}:{}/{}",
            options.get_username(),
            options
                .get_socket()
                .map(|s| s.display().to_string())
                .unwrap_or_else(|| options.get_host().to_owned()),
            options.get_port(),
            options.get_database().unwrap_or(options.get_username()),
        );
        Ok(Self {
            backend: Backend::Postgres(options),
            target,
            max_connections: PG_MAX_CONNECTIONS,
            acquire_timeout: ACQUIRE_TIMEOUT,
        })
    }

    fn sqlite(url: &str) -> Result<Self, ConfigError> {
        let parsed =
            SqliteConnectOptions::from_str(url).map_err(|e| invalid(describe_parse(&e)))?;
        let file = parsed.get_filename().to_path_buf();
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory && file.as_os_str().is_empty() {
            return Err(invalid("the sqlite: URL names no file".to_owned()));
        }
        let options = sqlite_options(parsed.create_if_missing(true));
        let (path, target) = if in_memory {
            (None, "sqlite::memory:".to_owned())
        } else {
            let target = format!("sqlite://{}", file.display());
            (Some(file), target)
        };
        Ok(Self {
            backend: Backend::Sqlite {
                options,
                path,
                embedded: false,
            },
            target,
            max_connections: SQLITE_MAX_CONNECTIONS,
            acquire_timeout: ACQUIRE_TIMEOUT,
        })
    }

    /// Whether the database is SQLite (embedded in this process: `serve` migrates it itself).
    pub fn is_sqlite(&self) -> bool {
        matches!(self.backend, Backend::Sqlite { .. })
    }

    /// Whether this is the default embedded database (`DATABASE_URL` unset).
    pub fn is_embedded_default(&self) -> bool {
        matches!(self.backend, Backend::Sqlite { embedded: true, .. })
    }

    /// Where the database is, for messages: the `DATABASE_URL` without its password, or the
    /// embedded file.
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Postgres(_) => format!("DATABASE_URL ({})", self.target),
            Backend::Sqlite { embedded: true, .. } => {
                format!(
                    "the embedded SQLite database ({}; DATABASE_URL is unset)",
                    self.target
                )
            }
            Backend::Sqlite { .. } => format!("DATABASE_URL ({})", self.target),
        }
    }
}

/// Pragmas every SQLite connection gets: WAL so readers never block the writer, NORMAL sync
/// (durable across process crashes, at most the last transaction lost on power loss, the usual
/// WAL pairing), enforced foreign keys, and a busy timeout instead of immediate SQLITE_BUSY.
fn sqlite_options(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
}

fn invalid(reason: String) -> ConfigError {
    ConfigError {
        variable: DATABASE_URL.to_owned(),
        reason,
    }
}

/// sqlx's parse errors can echo the URL (password included): keep only the cause.
fn describe_parse(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Configuration(source) => {
            format!("not a valid database URL ({source})")
        }
        _ => "not a valid database URL".to_owned(),
    }
}

/// The first value of any of `names` in the URL's query string.
fn query_param(url: &str, names: &[&str]) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| names.contains(&k.as_ref()))
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MapSource;

    fn parse(url: &str) -> Result<StoreConfig, ConfigError> {
        StoreConfig::from_url(Some(url), Path::new("/var/lib/mnemom"))
    }

    #[test]
    fn unset_means_the_embedded_file_in_the_data_dir() {
        let config =
            StoreConfig::from_source(&MapSource::default(), Path::new("/var/lib/mnemom")).unwrap();
        assert!(config.is_embedded_default());
        assert!(config.is_sqlite());
        assert_eq!(config.target, "sqlite:///var/lib/mnemom/mnemom.db");
        match &config.backend {
            Backend::Sqlite { path, .. } => {
                assert_eq!(
                    path.as_deref(),
                    Some(Path::new("/var/lib/mnemom/mnemom.db"))
                );
            }
            Backend::Postgres(_) => panic!("expected sqlite"),
        }
        let blank = MapSource::from_pairs([(DATABASE_URL, "  ")]);
        assert!(
            StoreConfig::from_source(&blank, Path::new("data"))
                .unwrap()
                .is_embedded_default()
        );
        assert!(
            StoreConfig::from_url(None, Path::new("data"))
                .unwrap()
                .describe()
                .contains("embedded SQLite")
        );
    }

    #[test]
    fn postgres_urls_keep_their_tls_mode_and_hide_the_password() {
        for scheme in ["postgres", "postgresql", "POSTGRES"] {
            let config = parse(&format!(
                "{scheme}://app:s3cret@db.internal:6543/mnemom?sslmode=verify-full"
            ))
            .unwrap();
            let Backend::Postgres(options) = &config.backend else {
                panic!("expected postgres");
            };
            assert!(matches!(options.get_ssl_mode(), PgSslMode::VerifyFull));
            assert_eq!(options.get_host(), "db.internal");
            assert_eq!(options.get_port(), 6543);
            assert_eq!(options.get_database(), Some("mnemom"));
            assert_eq!(options.get_application_name(), Some("mnemom-gateway"));
            assert_eq!(config.target, "postgres://app@db.internal:6543/mnemom");
            assert!(!config.describe().contains("s3cret"));
            assert!(!format!("{config:?}").contains("s3cret"));
            assert!(!config.is_sqlite());
        }
        let config = parse("postgres://app@db/mnemom?sslmode=require").unwrap();
        let Backend::Postgres(options) = &config.backend else {
            panic!("expected postgres");
        };
        assert!(matches!(options.get_ssl_mode(), PgSslMode::Require));
        let config = parse("postgres://app@db/mnemom?sslmode=disable").unwrap();
        let Backend::Postgres(options) = &config.backend else {
            panic!("expected postgres");
        };
        assert!(matches!(options.get_ssl_mode(), PgSslMode::Disable));
    }

    #[test]
    fn sqlite_urls_are_accepted() {
        let config = parse("sqlite:///tmp/x/gateway.db").unwrap();
        assert!(config.is_sqlite());
        assert!(!config.is_embedded_default());
        assert_eq!(config.target, "sqlite:///tmp/x/gateway.db");
        let config = parse("sqlite:relative.db").unwrap();
        assert_eq!(config.target, "sqlite://relative.db");
        let config = parse("sqlite::memory:").unwrap();
        assert_eq!(config.target, "sqlite::memory:");
    }

    #[test]
    fn malformed_urls_name_the_variable_and_never_echo_the_password() {
        for bad in [
            "mysql://root:pw@localhost/db",
            "localhost:5432",
            "not a url",
            "postgres://user:pw@host:notaport/db",
            "postgres://user:pw@host/db?sslmode=sometimes",
            "http://example.com",
        ] {
            let error = parse(bad).unwrap_err();
            assert_eq!(error.variable, DATABASE_URL, "{bad}");
            let message = error.to_string();
            assert!(message.contains("DATABASE_URL"), "{message}");
            assert!(!message.contains(":pw@"), "{message}");
        }
        let error = parse("postgres://u@h/db?sslmode=sometimes").unwrap_err();
        assert!(error.reason.contains("verify-full"), "{}", error.reason);
    }
}
