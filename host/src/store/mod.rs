//! Persistence: one [`Store`] over PostgreSQL (`DATABASE_URL=postgres://…`) or the embedded
//! SQLite file (`DATABASE_URL` unset), with the schema owned in `migrations/` and embedded in
//! the binary.
//!
//! The store is an enum over the two pools rather than a trait object: every operation is written
//! once per backend (their SQL differs: `UNNEST` batches and `jsonb` on PostgreSQL, chunked
//! `VALUES` and JSON text on SQLite) and dispatched with a `match`, so callers see one type, the
//! futures stay `Send` without boxing, and one test suite runs against both.
//!
//! Every write the background writer retries is idempotent: records carry a client-generated
//! id and are inserted with `ON CONFLICT (<id>) DO NOTHING`. Errors say whether a retry can help
//! ([`StoreError::is_retryable`]). See `docs/storage.md`.

#[macro_use]
mod macros;

mod aip;
mod config;
mod jobs;
mod postgres;
mod postgres_aip;
mod records;
mod schema;
mod sqlite;
mod sqlite_aip;
pub mod webhooks;

#[cfg(test)]
mod aip_tests;
#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{PgPool, SqlitePool};

pub use config::{Backend, DATABASE_URL, EMBEDDED_FILE_NAME, StoreConfig};
pub use records::{
    ActiveCard, Agent, AgentSettings, Attestation, CheckpointRecord, CheckpointSource,
    ClaimedNudge, ContainmentRecord, ContainmentStatus, DriftAlertRecord, EnforcementMode,
    NudgeRecord, NudgeStrategy, UnknownValue, UsageEventRecord, Verdict, WebhookDeliveryRecord,
    WebhookRegistration, default_card, default_card_id, thinking_hash,
};
pub use schema::{MigrationReport, OpenError, SchemaStatus, run_migrate};

/// How long [`Store::ping`] waits for an answer: a readiness probe must answer quickly, and a
/// database slower than this is as good as down for the writer's purposes.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The database, behind one interface. Cheap to clone (the pools are shared).
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    config: Arc<StoreConfig>,
}

#[derive(Clone)]
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend_name())
            .field("target", &self.config.target)
            .finish()
    }
}

impl Store {
    /// Builds the pool without opening a connection (the first operation connects). For SQLite
    /// this creates the database's directory. Call it inside a Tokio runtime: the pool starts
    /// its idle-connection reaper.
    pub fn connect_lazy(config: &StoreConfig) -> Result<Self, StoreError> {
        let pool = match &config.backend {
            Backend::Postgres(options) => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(config.acquire_timeout)
                    .connect_lazy_with(options.clone()),
            ),
            Backend::Sqlite { options, path, .. } => {
                if let Some(dir) = path.as_deref().and_then(|p| p.parent())
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                        path: dir.to_path_buf(),
                        source,
                    })?;
                }
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(config.max_connections)
                        .acquire_timeout(config.acquire_timeout)
                        // An in-memory database lives as long as one connection does.
                        .min_connections(u32::from(path.is_none()))
                        .idle_timeout(path.as_ref().map(|_| Duration::from_secs(600)))
                        .max_lifetime(path.as_ref().map(|_| Duration::from_secs(1800)))
                        .connect_lazy_with(options.clone()),
                )
            }
        };
        Ok(Self {
            pool,
            config: Arc::new(config.clone()),
        })
    }

    /// Builds the pool and checks that the database answers.
    pub async fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        let store = Self::connect_lazy(config)?;
        store.check_connect().await?;
        Ok(store)
    }

    /// Opens the store for `serve`:
    /// - SQLite (the embedded default, or a `sqlite:` URL) migrates itself and is returned ready;
    /// - PostgreSQL must already be migrated: a schema that is behind is
    ///   [`OpenError::SchemaBehind`] (run `mnemom-gateway migrate`); a schema that is ahead (a
    ///   newer release migrated it; migrations only add) is served with a warning;
    /// - PostgreSQL that cannot be reached is [`OpenError::Unavailable`], which carries a lazy
    ///   store: `serve` may start degraded with it (writes are buffered) and should call
    ///   [`Store::verify_schema`] once the database answers.
    ///
    /// Anything else (bad credentials, a database that does not exist, a broken schema) is an
    /// error that should stop the process.
    pub async fn open_for_serve(config: &StoreConfig) -> Result<Self, OpenError> {
        schema::open_for_serve(config).await
    }

    /// `postgres` or `sqlite`.
    pub fn backend_name(&self) -> &'static str {
        match self.pool {
            Pool::Postgres(_) => "postgres",
            Pool::Sqlite(_) => "sqlite",
        }
    }

    /// The configuration this store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Applies pending migrations. Idempotent. On PostgreSQL concurrent callers (other pods)
    /// serialize on an advisory lock: one applies, the others wait and then find nothing to do.
    /// On SQLite a lock file next to the database does the same between processes.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        schema::migrate(self).await
    }

    /// Compares the applied migrations with the ones embedded in this binary. Read-only.
    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        schema::status(self).await
    }

    /// Checks that the schema can be served (up to date, or ahead); used by
    /// [`Store::open_for_serve`] and again by a degraded `serve` once the database answers.
    pub async fn verify_schema(&self) -> Result<SchemaStatus, OpenError> {
        schema::verify_for_serve(self).await
    }

    /// One round trip (`SELECT 1`), for readiness: the latency, or why the database is not
    /// answering (within 2 s).
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        let result = tokio::time::timeout(PING_TIMEOUT, async {
            match &self.pool {
                Pool::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
                Pool::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()),
            }
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(self.error("ping", e)),
            Err(_) => Err(StoreError::Unavailable {
                target: self.config.describe(),
                cause: format!("no answer within {} s", PING_TIMEOUT.as_secs()),
                source: None,
            }),
        }
    }

    /// The agent with this hash, created on first sight (an upsert: any number of concurrent
    /// first calls create one row and all succeed), with its default alignment card created in
    /// the same transaction (once: later calls never rewrite it). Existing agents cost one read.
    ///
    /// `agent_id` is the derived `smolt-<8 hex>`. If another key already owns that id (a 32-bit
    /// collision), the agent gets `smolt-<agent_hash>` instead: always use the returned id.
    pub async fn get_or_create_agent(
        &self,
        agent_hash: &str,
        agent_id: &str,
    ) -> Result<Agent, StoreError> {
        match &self.pool {
            Pool::Postgres(pool) => {
                postgres::get_or_create_agent(self, pool, agent_hash, agent_id).await
            }
            Pool::Sqlite(pool) => {
                sqlite::get_or_create_agent(self, pool, agent_hash, agent_id).await
            }
        }
    }

    /// The settings of an agent, or `None` for an unknown id.
    pub async fn agent_settings(
        &self,
        agent_id: &str,
    ) -> Result<Option<AgentSettings>, StoreError> {
        Ok(self.agent(agent_id).await?.map(|a| a.settings))
    }

    /// The agent with this id.
    pub async fn agent(&self, agent_id: &str) -> Result<Option<Agent>, StoreError> {
        match &self.pool {
            Pool::Postgres(pool) => postgres::agent_by_id(self, pool, agent_id).await,
            Pool::Sqlite(pool) => sqlite::agent_by_id(self, pool, agent_id).await,
        }
    }

    /// Records when agents were last seen: one transaction per batch (one statement on
    /// PostgreSQL), never one write per request. Several entries for one
    /// agent collapse to the latest; `last_seen` never moves backwards (a replayed batch is
    /// harmless); unknown ids are ignored. Returns the number of agents updated.
    pub async fn touch_last_seen<S>(&self, batch: &[(S, DateTime<Utc>)]) -> Result<u64, StoreError>
    where
        S: AsRef<str> + Sync,
    {
        let mut latest: std::collections::BTreeMap<&str, DateTime<Utc>> = Default::default();
        for (id, at) in batch {
            let slot = latest.entry(id.as_ref()).or_insert(*at);
            if *at > *slot {
                *slot = *at;
            }
        }
        if latest.is_empty() {
            return Ok(0);
        }
        match &self.pool {
            Pool::Postgres(pool) => postgres::touch_last_seen(self, pool, &latest).await,
            Pool::Sqlite(pool) => sqlite::touch_last_seen(self, pool, &latest).await,
        }
    }

    /// Inserts checkpoints; ones whose `checkpoint_id` is already stored are skipped, so a batch
    /// can be retried as a whole. Returns how many were new. The batch is one transaction: a
    /// record that violates a constraint fails it all (not retryable: split the batch to find
    /// it). Agents must exist first.
    pub async fn insert_checkpoints(&self, batch: &[CheckpointRecord]) -> Result<u64, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        match &self.pool {
            Pool::Postgres(pool) => postgres::insert_checkpoints(self, pool, batch).await,
            Pool::Sqlite(pool) => sqlite::insert_checkpoints(self, pool, batch).await,
        }
    }

    /// Inserts usage events, skipping ids already stored (as [`Store::insert_checkpoints`]).
    pub async fn insert_usage_events(&self, batch: &[UsageEventRecord]) -> Result<u64, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        match &self.pool {
            Pool::Postgres(pool) => postgres::insert_usage_events(self, pool, batch).await,
            Pool::Sqlite(pool) => sqlite::insert_usage_events(self, pool, batch).await,
        }
    }

    /// The last `limit` checkpoints of an agent's session, oldest first (the analysis window).
    pub async fn recent_checkpoints(
        &self,
        agent_id: &str,
        session_id: &str,
        limit: u32,
    ) -> Result<Vec<CheckpointRecord>, StoreError> {
        let mut rows = match &self.pool {
            Pool::Postgres(pool) => {
                postgres::recent_checkpoints(self, pool, agent_id, session_id, limit).await?
            }
            Pool::Sqlite(pool) => {
                sqlite::recent_checkpoints(self, pool, agent_id, session_id, limit).await?
            }
        };
        rows.reverse();
        Ok(rows)
    }

    /// Closes every connection (waits for checked-out ones to come back).
    pub async fn close(&self) {
        match &self.pool {
            Pool::Postgres(pool) => pool.close().await,
            Pool::Sqlite(pool) => pool.close().await,
        }
    }

    /// Opens (or borrows) one connection, so configuration problems surface now.
    async fn check_connect(&self) -> Result<(), StoreError> {
        match &self.pool {
            Pool::Postgres(pool) => {
                let conn = schema::connect_postgres(self, pool).await?;
                // A clean goodbye, so the server does not log an unexpected EOF.
                let _ = sqlx::Connection::close(conn).await;
                Ok(())
            }
            Pool::Sqlite(pool) => pool
                .acquire()
                .await
                .map(drop)
                .map_err(|e| self.error("connect", e)),
        }
    }

    /// Wraps a driver error with the database's description and a cause a person can act on.
    fn error(&self, operation: &'static str, source: sqlx::Error) -> StoreError {
        StoreError::from_sqlx(&self.config, operation, source)
    }
}

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now (refused, unreachable, TLS failure, timed out,
    /// shutting down). Retrying later can succeed.
    #[error("cannot connect to {target}: {cause}")]
    Unavailable {
        /// The database (`DATABASE_URL (postgres://user@host:port/db)`, password omitted).
        target: String,
        /// What went wrong, with a hint.
        cause: String,
        /// The driver's error.
        #[source]
        source: Option<sqlx::Error>,
    },
    /// The database answered but refused us: bad credentials, a database that does not exist,
    /// a file that cannot be opened. A configuration problem: retrying will not help.
    #[error("{target} refused the connection: {cause}")]
    Rejected {
        /// The database.
        target: String,
        /// What the server said, with a hint.
        cause: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A statement failed (a constraint, a missing table, a lock timeout…).
    #[error("{target}: {operation} failed: {source}")]
    Query {
        /// The database.
        target: String,
        /// What we were doing.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Applying migrations failed.
    #[error("{target}: migration failed: {source}")]
    Migrate {
        /// The database.
        target: String,
        /// sqlx's migration error (which migration, why).
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A stored value this binary cannot interpret (e.g. written by a newer release).
    #[error("{target}: {operation}: {reason}")]
    Decode {
        /// The database.
        target: String,
        /// What we were doing.
        operation: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The embedded database's directory cannot be created.
    #[error("cannot create the database directory {}: {source}", path.display())]
    DataDir {
        /// The directory (under `MNEMOM_DATA_DIR`).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Neither the derived agent id nor its long form could be claimed for this hash.
    #[error("{target}: no agent id available for agent hash {agent_hash}")]
    AgentIdConflict {
        /// The database.
        target: String,
        /// The hash.
        agent_hash: String,
    },
}

impl StoreError {
    /// Whether retrying the same operation later can succeed: the database was unreachable or
    /// busy, or the transaction lost a serialization race. Constraint violations, missing
    /// tables and configuration problems are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } => true,
            StoreError::Query { source, .. } => is_transient(source),
            StoreError::Migrate {
                source:
                    sqlx::migrate::MigrateError::Execute(e)
                    | sqlx::migrate::MigrateError::ExecuteMigration(e, _),
                ..
            } => is_transient(e),
            _ => false,
        }
    }

    /// Whether the database could not be reached (as opposed to refusing or failing a query).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// Whether a record broke a constraint (unique, foreign key, check, not null): the record,
    /// not the database, is at fault.
    pub fn is_constraint_violation(&self) -> bool {
        match self {
            StoreError::Query {
                source: sqlx::Error::Database(db),
                ..
            } => !matches!(db.kind(), sqlx::error::ErrorKind::Other),
            _ => false,
        }
    }

    /// Whether the record itself is at fault, so that retrying it can never succeed: a
    /// constraint violation ([`StoreError::is_constraint_violation`]) or a value the database
    /// cannot store (PostgreSQL class 22, data exception; SQLite `SQLITE_CONSTRAINT`,
    /// `SQLITE_MISMATCH`, `SQLITE_TOOBIG`, `SQLITE_RANGE`). The background writer sets such a
    /// record aside; any other failure (an unreachable database, a missing table) is the
    /// database's, and the records wait for it.
    pub fn is_record_error(&self) -> bool {
        if self.is_constraint_violation() {
            return true;
        }
        let StoreError::Query {
            source: sqlx::Error::Database(db),
            ..
        } = self
        else {
            return false;
        };
        let Some(code) = db.code() else {
            return false;
        };
        if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
            code.parse::<i64>()
                .is_ok_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25))
        } else {
            code.starts_with("22")
        }
    }

    fn from_sqlx(config: &StoreConfig, operation: &'static str, source: sqlx::Error) -> Self {
        let target = config.describe();
        if let Some(cause) = unavailable_cause(&source) {
            return StoreError::Unavailable {
                target,
                cause: with_hint(config, cause),
                source: Some(source),
            };
        }
        if let Some(cause) = rejected_cause(&source) {
            return StoreError::Rejected {
                target,
                cause,
                source,
            };
        }
        StoreError::Query {
            target,
            operation,
            source,
        }
    }
}

/// The cause, when the error means the database cannot be reached right now.
fn unavailable_cause(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Io(io) if tls_failure(io) => None,
        sqlx::Error::Io(io) => Some(match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            std::io::ErrorKind::TimedOut => "connection timed out".to_owned(),
            std::io::ErrorKind::NotFound => format!("not found ({io})"),
            _ => io.to_string(),
        }),
        sqlx::Error::PoolTimedOut => Some("timed out waiting for a connection".to_owned()),
        sqlx::Error::PoolClosed => Some("the connection pool is closed".to_owned()),
        sqlx::Error::WorkerCrashed => Some("the SQLite worker thread stopped".to_owned()),
        sqlx::Error::Protocol(message) => Some(format!("protocol error ({message})")),
        sqlx::Error::Database(db) => {
            let code = db.code()?;
            // PostgreSQL: class 08 connection exception; 57P01-57P03 shutdown / not yet up;
            // 53300 too many connections.
            let down = code.starts_with("08")
                || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300");
            down.then(|| format!("{} ({code})", db.message()))
        }
        _ => None,
    }
}

/// rustls reports handshake and certificate failures as `InvalidData` I/O errors.
fn tls_failure(io: &std::io::Error) -> bool {
    io.kind() == std::io::ErrorKind::InvalidData && io.raw_os_error().is_none()
}

/// The cause, when the server answered but will not let us in: bad credentials, a missing
/// database, a TLS mismatch or an untrusted certificate, an unusable SQLite file.
fn rejected_cause(error: &sqlx::Error) -> Option<String> {
    const TLS_HINT: &str = "check sslmode, and sslrootcert for a private CA, in DATABASE_URL";
    match error {
        sqlx::Error::Tls(tls) => return Some(format!("TLS failed: {tls} ({TLS_HINT})")),
        sqlx::Error::Io(io) if tls_failure(io) => {
            return Some(format!("TLS failed: {io} ({TLS_HINT})"));
        }
        _ => {}
    }
    let sqlx::Error::Database(db) = error else {
        return None;
    };
    let code = db.code()?;
    let hint = match code.as_ref() {
        // invalid_authorization_specification, invalid_password
        "28000" | "28P01" => "check the user and password in DATABASE_URL",
        // invalid_catalog_name
        "3D000" => "create the database, or fix its name in DATABASE_URL",
        // SQLite SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_READONLY, SQLITE_NOTADB
        "14" | "3" | "8" | "26" => "check the path and its permissions",
        _ => return None,
    };
    Some(format!("{} ({hint})", db.message()))
}

/// Errors that a retry of the same statement can get past.
fn is_transient(error: &sqlx::Error) -> bool {
    if unavailable_cause(error).is_some() {
        return true;
    }
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    let Some(code) = db.code() else {
        return false;
    };
    match code.as_ref() {
        // PostgreSQL serialization_failure, deadlock_detected, lock_not_available.
        "40001" | "40P01" | "55P03" => true,
        // SQLite: SQLITE_BUSY and SQLITE_LOCKED with their extended codes.
        other => other
            .parse::<i64>()
            .is_ok_and(|c| matches!(c & 0xff, 5 | 6)),
    }
}

fn with_hint(config: &StoreConfig, cause: String) -> String {
    if config.is_sqlite() {
        cause
    } else {
        format!("{cause}; is PostgreSQL running and reachable at that address?")
    }
}
