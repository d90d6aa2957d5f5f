//! What storage answers when it has no result: a missing row, a conflicting one, a busy
//! or unreachable database. No HTTP here; `crate::error` turns these into problems.

/// A storage failure, in the terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Lock contention the caller can retry: SQLite's busy database, PostgreSQL's
    /// serialization failure or deadlock victim. The whole transaction is run again.
    #[error("database is busy, try again")]
    Busy,
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("{what} not found"))
    }
}

/// Errors that can say "busy, run the transaction again": storage's own and those of
/// the callers whose transactions mix storage with their own checks.
pub trait Retry {
    fn is_busy(&self) -> bool;
}

impl Retry for Error {
    fn is_busy(&self) -> bool {
        matches!(self, Self::Busy)
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as K, Error as D};
        match e {
            D::NotFound => Self::NotFound("not found".to_owned()),
            D::DatabaseError(K::UniqueViolation, info) => {
                Self::Conflict(format!("already exists ({})", info.message()))
            }
            D::DatabaseError(K::ForeignKeyViolation, _) => {
                Self::Conflict("still referenced by other records".to_owned())
            }
            D::DatabaseError(K::ClosedConnection | K::UnableToSendCommand, info) => {
                Self::Unavailable(format!("database unavailable: {}", info.message()))
            }
            D::DatabaseError(K::SerializationFailure, _) => Self::Busy,
            D::DatabaseError(_, ref info)
                if info
                    .message()
                    .contains("canceling statement due to statement timeout") =>
            {
                Self::Unavailable(
                    "the read took longer than HEADCOUNT_READ_TIMEOUT_SECONDS allows and was \
                     stopped; ask for less (a shorter period) or try again later"
                        .to_owned(),
                )
            }
            D::DatabaseError(_, ref info) if is_busy_message(info.message()) => Self::Busy,
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<r2d2::Error> for Error {
    fn from(e: r2d2::Error) -> Self {
        tracing::warn!(error = %e, "database pool checkout failed");
        Self::Unavailable("database unavailable".to_owned())
    }
}

/// SQLite reports a busy database and PostgreSQL a deadlock only in the message; the
/// driver gives them no kind of their own.
fn is_busy_message(message: &str) -> bool {
    message.contains("database is locked")
        || message.contains("database is busy")
        || message.contains("deadlock detected")
        // Citus cancels one of two transactions that wait for each other across nodes.
        || message.contains("distributed deadlock")
}
