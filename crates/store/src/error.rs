//! Error kinds that mean the same on both backends. No bound value, row content, URL or
//! password ever goes into a message: only kinds, constraint/table names and SQLSTATE codes.

/// What went wrong, in terms that mean the same on SQLite and PostgreSQL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Cannot connect, the pool timed out, or the database is busy or shutting down.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The file is not a phigate store, failed an integrity check, or a backup is damaged.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// The database was migrated by a newer build.
    #[error("store schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// The newest migration applied to the database.
        found: i64,
        /// The newest migration this build knows.
        supported: i64,
    },
    /// A restore was asked of a store that already holds data.
    #[error("store is not empty: restore needs an empty store")]
    NotEmpty,
    /// A constraint was violated (duplicate id, missing referenced key…).
    #[error("store conflict: {0}")]
    Conflict(String),
    /// Reading or writing a file (SQLite directory, backup file).
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Anything else; the message holds no bound values.
    #[error("store backend error: {0}")]
    Backend(String),
}

/// Maps the backend-independent variants of `sqlx::Error`; database errors are mapped by each
/// backend, which knows its codes.
pub(crate) fn from_sqlx_common(e: sqlx::Error) -> Error {
    use sqlx::Error as E;
    match e {
        E::Io(io) => Error::Unavailable(format!("connection I/O error ({:?})", io.kind())),
        E::Tls(_) => Error::Unavailable("TLS error while connecting".into()),
        E::PoolTimedOut => Error::Unavailable("timed out waiting for a database connection".into()),
        E::PoolClosed => Error::Unavailable("the connection pool is closed".into()),
        E::WorkerCrashed => Error::Unavailable("the database worker crashed".into()),
        E::Protocol(_) => Error::Backend("protocol error".into()),
        E::Configuration(_) => Error::Backend("invalid database configuration or URL".into()),
        E::RowNotFound => Error::Backend("row not found".into()),
        E::ColumnDecode { index, .. } => {
            Error::Corrupt(format!("a stored value could not be decoded (column {index})"))
        }
        E::Decode(_) => Error::Corrupt("a stored value could not be decoded".into()),
        E::ColumnNotFound(c) => Error::Backend(format!("column not found: {c}")),
        E::TypeNotFound { .. } => Error::Backend("type not found".into()),
        E::Database(_) => Error::Backend("database error".into()),
        _ => Error::Backend("database error".into()),
    }
}

/// Maps a migration failure.
pub(crate) fn from_migrate(e: sqlx::migrate::MigrateError, map: fn(sqlx::Error) -> Error) -> Error {
    use sqlx::migrate::MigrateError as M;
    match e {
        M::Execute(e) => map(e),
        M::ExecuteMigration(e, v) => match map(e) {
            Error::Backend(m) => Error::Backend(format!("migration {v}: {m}")),
            other => other,
        },
        M::VersionMismatch(v) => {
            Error::Corrupt(format!("migration {v} in the database differs from this build's"))
        }
        M::Dirty(v) => Error::Corrupt(format!("migration {v} is partially applied")),
        M::VersionMissing(v) => {
            Error::Corrupt(format!("migration {v} in the database is unknown to this build"))
        }
        _ => Error::Backend("migration failed".into()),
    }
}
