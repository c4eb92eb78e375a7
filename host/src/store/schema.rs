//! The schema: migrations embedded from `migrations/{postgres,sqlite}`, applying them
//! (`mnemom-gateway migrate`, and the SQLite self-migration of `serve`), and comparing a database
//! with them (`serve`'s start-up check).
//!
//! On PostgreSQL `migrate` holds a session advisory lock (the one sqlx's migrator uses, keyed by
//! the database name) on a dedicated connection while it reads what is pending and applies it:
//! two pods migrating at once serialize, and the second finds nothing to do. The connection is
//! closed afterwards, so a failed run never leaves the lock held.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use sqlx::Connection;
use sqlx::PgPool;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::PgConnection;

use super::config::Backend;
use super::{Pool, Store, StoreConfig, StoreError};

/// The migrations for a backend. `ignore_missing`: a database migrated by a newer release
/// (versions this binary does not know) is not an error: migrations only add, so an older binary
/// can still run against it (and its `migrate` is then a no-op).
pub(super) fn migrator(pool: &Pool) -> Migrator {
    let mut migrator = match pool {
        Pool::Postgres(_) => sqlx::migrate!("../migrations/postgres"),
        Pool::Sqlite(_) => sqlx::migrate!("../migrations/sqlite"),
    };
    migrator.set_ignore_missing(true);
    migrator
}

/// How the database's schema compares with this binary's migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    /// Every migration is applied.
    UpToDate {
        /// The latest version.
        version: i64,
    },
    /// Migrations are pending: run `mnemom-gateway migrate`.
    Behind {
        /// The latest applied version (`None` for an empty database).
        current: Option<i64>,
        /// The versions not yet applied.
        pending: Vec<i64>,
    },
    /// The database has migrations this binary does not know (a newer release migrated it).
    Ahead {
        /// The latest applied version.
        version: i64,
        /// The versions this binary does not know.
        unknown: Vec<i64>,
    },
    /// The recorded migrations cannot be reconciled with this binary's: a migration failed half
    /// way, one was edited after it was applied, or the database has both unknown and pending
    /// versions.
    Broken {
        /// What is wrong.
        reason: String,
    },
}

impl SchemaStatus {
    /// Whether `serve` may run against it (up to date, or ahead).
    pub fn is_servable(&self) -> bool {
        matches!(
            self,
            SchemaStatus::UpToDate { .. } | SchemaStatus::Ahead { .. }
        )
    }
}

impl fmt::Display for SchemaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaStatus::UpToDate { version } => write!(f, "up to date (version {version})"),
            SchemaStatus::Behind { current, pending } => {
                match current {
                    Some(v) => write!(f, "behind (at version {v}")?,
                    None => write!(f, "behind (empty database")?,
                }
                write!(f, "; pending: {})", list(pending))
            }
            SchemaStatus::Ahead { version, unknown } => write!(
                f,
                "ahead (version {version}; unknown to this binary: {})",
                list(unknown)
            ),
            SchemaStatus::Broken { reason } => write!(f, "broken ({reason})"),
        }
    }
}

fn list(versions: &[i64]) -> String {
    versions
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The database (password omitted).
    pub target: String,
    /// Migrations applied by this run: `(version, description)`.
    pub applied: Vec<(i64, String)>,
    /// The schema afterwards.
    pub status: SchemaStatus,
}

impl fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.applied.is_empty() {
            write!(
                f,
                "{}: nothing to apply; schema {}",
                self.target, self.status
            )
        } else {
            let names: Vec<String> = self
                .applied
                .iter()
                .map(|(v, d)| format!("{v:04} {d}"))
                .collect();
            write!(
                f,
                "{}: applied {} migration{} ({}); schema {}",
                self.target,
                self.applied.len(),
                if self.applied.len() == 1 { "" } else { "s" },
                names.join(", "),
                self.status
            )
        }
    }
}

/// Why `serve` cannot use the database as it is.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// PostgreSQL could not be reached at start. `store` is a lazy store that connects when the
    /// database comes back: `serve` may start degraded with it (the writer buffers, readiness
    /// reports the database as down) and call [`Store::verify_schema`] once it answers.
    #[error("{source}")]
    Unavailable {
        /// The store to serve with, degraded.
        store: Store,
        /// Why it could not be reached.
        #[source]
        source: Box<StoreError>,
    },
    /// The schema is behind this binary: run `mnemom-gateway migrate`.
    #[error(
        "the database schema of {target} is {status}; run `mnemom-gateway migrate` (with the \
         same DATABASE_URL) before starting the gateway"
    )]
    SchemaBehind {
        /// The database.
        target: String,
        /// The status (always [`SchemaStatus::Behind`]).
        status: SchemaStatus,
    },
    /// The recorded migrations do not match this binary's.
    #[error("the database schema of {target} is {status}; repair it before starting the gateway")]
    SchemaBroken {
        /// The database.
        target: String,
        /// The status (always [`SchemaStatus::Broken`]).
        status: SchemaStatus,
    },
    /// Any other failure (bad credentials, a missing database, a query failure).
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl From<StoreError> for OpenError {
    fn from(error: StoreError) -> Self {
        OpenError::Store(Box::new(error))
    }
}

impl OpenError {
    /// The store to serve degraded with, when the only problem is that PostgreSQL is
    /// unreachable right now; the error otherwise.
    pub fn into_degraded(self) -> Result<(Store, StoreError), OpenError> {
        match self {
            OpenError::Unavailable { store, source } => Ok((store, *source)),
            other => Err(other),
        }
    }
}

/// `mnemom-gateway migrate`: connects to the configured database, applies what is pending, and
/// says what it did. Errors name the database and the cause (for a refused PostgreSQL
/// connection: `cannot connect to DATABASE_URL (postgres://…): connection refused; is PostgreSQL
/// running and reachable at that address?`).
pub async fn run_migrate(config: &StoreConfig) -> Result<MigrationReport, StoreError> {
    let store = Store::connect_lazy(config)?;
    let result = store.migrate().await;
    store.close().await;
    result
}

pub(super) async fn open_for_serve(config: &StoreConfig) -> Result<Store, OpenError> {
    let store = Store::connect_lazy(config)?;
    if let Backend::Sqlite { .. } = config.backend {
        let report = store.migrate().await?;
        if !report.applied.is_empty() {
            tracing::info!(database = %report.target, applied = report.applied.len(), "migrated the SQLite database");
        }
        verify_for_serve(&store).await?;
        return Ok(store);
    }
    match verify_for_serve(&store).await {
        Err(OpenError::Store(source)) if source.is_unavailable() => {
            Err(OpenError::Unavailable { store, source })
        }
        Err(other) => Err(other),
        Ok(_) => Ok(store),
    }
}

pub(super) async fn verify_for_serve(store: &Store) -> Result<SchemaStatus, OpenError> {
    let status = status(store).await?;
    let target = store.config.describe();
    match &status {
        SchemaStatus::UpToDate { .. } => Ok(status),
        SchemaStatus::Ahead { .. } => {
            tracing::warn!(database = %target, schema = %status, "the database schema is newer than this binary; serving (migrations only add)");
            Ok(status)
        }
        SchemaStatus::Behind { .. } => Err(OpenError::SchemaBehind { target, status }),
        SchemaStatus::Broken { .. } => Err(OpenError::SchemaBroken { target, status }),
    }
}

/// Opens a connection outside the pool, so an error names its real cause (the pool turns a
/// refused connection into a timeout after retrying) and a session lock dies with it.
pub(super) async fn connect_postgres(
    store: &Store,
    pool: &PgPool,
) -> Result<PgConnection, StoreError> {
    let options = pool.connect_options();
    match tokio::time::timeout(
        store.config.acquire_timeout,
        PgConnection::connect_with(&options),
    )
    .await
    {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(store.error("connect", e)),
        Err(_) => Err(StoreError::Unavailable {
            target: store.config.describe(),
            cause: format!(
                "no connection within {} s; is PostgreSQL running and reachable at that address?",
                store.config.acquire_timeout.as_secs()
            ),
            source: None,
        }),
    }
}

/// One row of the migrations table.
struct Applied {
    version: i64,
    success: bool,
    checksum: Vec<u8>,
}

pub(super) async fn status(store: &Store) -> Result<SchemaStatus, StoreError> {
    let applied = match &store.pool {
        Pool::Postgres(pool) => {
            let mut conn = connect_postgres(store, pool).await?;
            let applied = applied_postgres(store, &mut conn).await;
            let _ = conn.close().await;
            applied?
        }
        Pool::Sqlite(pool) => {
            let mut conn = pool
                .acquire()
                .await
                .map_err(|e| store.error("connect", e))?;
            applied_sqlite(store, &mut conn).await?
        }
    };
    Ok(compare(&migrator(&store.pool), &applied))
}

async fn applied_postgres(
    store: &Store,
    conn: &mut PgConnection,
) -> Result<Vec<Applied>, StoreError> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations')",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| store.error("reading the schema version", e))?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, bool, Vec<u8>)> =
        sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| store.error("reading the schema version", e))?;
    Ok(rows
        .into_iter()
        .map(|(version, success, checksum)| Applied {
            version,
            success,
            checksum,
        })
        .collect())
}

async fn applied_sqlite(
    store: &Store,
    conn: &mut sqlx::SqliteConnection,
) -> Result<Vec<Applied>, StoreError> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations')",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| store.error("reading the schema version", e))?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, bool, Vec<u8>)> =
        sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| store.error("reading the schema version", e))?;
    Ok(rows
        .into_iter()
        .map(|(version, success, checksum)| Applied {
            version,
            success,
            checksum,
        })
        .collect())
}

fn compare(migrator: &Migrator, applied: &[Applied]) -> SchemaStatus {
    let known: BTreeMap<i64, &[u8]> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| (m.version, m.checksum.as_ref()))
        .collect();
    let recorded: BTreeMap<i64, &Applied> = applied.iter().map(|a| (a.version, a)).collect();

    if let Some(failed) = applied.iter().find(|a| !a.success) {
        return SchemaStatus::Broken {
            reason: format!("migration {} failed part-way", failed.version),
        };
    }
    let modified: Vec<i64> = recorded
        .iter()
        .filter(|(v, a)| known.get(v).is_some_and(|c| *c != a.checksum.as_slice()))
        .map(|(v, _)| *v)
        .collect();
    if !modified.is_empty() {
        return SchemaStatus::Broken {
            reason: format!(
                "applied migration(s) {} differ from this binary's",
                list(&modified)
            ),
        };
    }
    let pending: Vec<i64> = known
        .keys()
        .filter(|v| !recorded.contains_key(v))
        .copied()
        .collect();
    let unknown: Vec<i64> = recorded
        .keys()
        .filter(|v| !known.contains_key(v))
        .copied()
        .collect();
    let current = recorded.keys().next_back().copied();
    match (pending.is_empty(), unknown.is_empty(), current) {
        (true, true, Some(version)) => SchemaStatus::UpToDate { version },
        (true, true, None) => SchemaStatus::UpToDate { version: 0 },
        (false, true, _) => SchemaStatus::Behind { current, pending },
        (true, false, Some(version)) => SchemaStatus::Ahead { version, unknown },
        _ => SchemaStatus::Broken {
            reason: format!(
                "pending migrations {} and unknown applied migrations {}",
                list(&pending),
                list(&unknown)
            ),
        },
    }
}

pub(super) async fn migrate(store: &Store) -> Result<MigrationReport, StoreError> {
    let mut migrator = migrator(&store.pool);
    let target = store.config.describe();
    let migrate_error = |source| StoreError::Migrate {
        target: target.clone(),
        source,
    };
    let pending_before = match &store.pool {
        Pool::Postgres(pool) => {
            let mut conn = connect_postgres(store, pool).await?;
            // Hold the lock across "what is pending" and "apply it", so the report is exact and
            // a concurrent migrator waits here rather than racing.
            conn.lock().await.map_err(migrate_error)?;
            let pending = pending(&migrator, &applied_postgres(store, &mut conn).await?);
            migrator.set_locking(false);
            // `run_direct` rather than `run(&mut conn)`: sqlx's own workaround for `Acquire`'s
            // higher-ranked lifetime, which otherwise makes this future not `Send`.
            let run = migrator.run_direct(None, &mut conn, false).await;
            // Closing the session releases the lock whatever happened.
            let _ = conn.close().await;
            run.map_err(migrate_error)?;
            pending
        }
        Pool::Sqlite(pool) => {
            let _lock = SqliteMigrationLock::acquire(store).await?;
            let mut conn = pool
                .acquire()
                .await
                .map_err(|e| store.error("connect", e))?;
            let pending = pending(&migrator, &applied_sqlite(store, &mut conn).await?);
            migrator
                .run_direct(None, &mut *conn, false)
                .await
                .map_err(migrate_error)?;
            pending
        }
    };
    let status = status(store).await?;
    Ok(MigrationReport {
        target: store.config.describe(),
        applied: pending_before,
        status,
    })
}

fn pending(migrator: &Migrator, applied: &[Applied]) -> Vec<(i64, String)> {
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .map(|m| (m.version, m.description.to_string()))
        .collect()
}

/// An exclusive lock on `<database>.migrate.lock`, so two processes never migrate one SQLite
/// file at once (sqlx's SQLite migrator takes no lock). Released on drop.
struct SqliteMigrationLock {
    _file: Option<std::fs::File>,
}

impl SqliteMigrationLock {
    async fn acquire(store: &Store) -> Result<Self, StoreError> {
        let Backend::Sqlite {
            path: Some(path), ..
        } = &store.config.backend
        else {
            return Ok(Self { _file: None });
        };
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".migrate.lock");
        let lock_path = PathBuf::from(lock_path);
        let io_error = |source| StoreError::DataDir {
            path: lock_path.clone(),
            source,
        };
        let path_for_task = lock_path.clone();
        let file = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path_for_task)?;
            file.lock()?;
            Ok(file)
        })
        .await
        .map_err(|e| io_error(std::io::Error::other(e)))?
        .map_err(io_error)?;
        Ok(Self { _file: Some(file) })
    }
}
