//! One error type for the whole service, rendered as RFC 9457 problem details.
//!
//! Storage errors (`db::Error`) are mapped here and nowhere else: a missing row is
//! 404, a unique violation 409, a busy database, pool or connection failure 503;
//! anything unexpected is a 500 that logs its cause chain and shows the caller
//! nothing internal.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct FieldError {
    /// The field, as a JSON path (`events[3].at`, `session_limit`).
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The body of every error response (`application/problem+json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A stable, machine-readable error kind.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The request's `X-Request-Id`, to quote when reporting the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{detail}")]
    BadRequest {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{detail}")]
    Unprocessable {
        detail: String,
        errors: Vec<FieldError>,
    },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("rate limit exceeded for this token; retry after {retry_after_seconds} s")]
    RateLimited {
        retry_after_seconds: u64,
        /// Requests per second allowed to the token.
        limit: u32,
    },
    #[error("{0}")]
    Unavailable(String),
    /// The database was busy; a transaction that meets this is run again.
    #[error("database is busy, try again")]
    Busy,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest {
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let e = FieldError::new(field, message);
        Self::BadRequest {
            detail: format!("{}: {}", e.field, e.message),
            errors: vec![e],
        }
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Self::Unprocessable { detail, errors }
    }

    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError::new(field, message)])
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::NotFound(format!("{what} not found"))
    }

    /// Status, problem type and title of each kind of error, in one table.
    fn class(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            Self::BadRequest { .. } => (S::BAD_REQUEST, "bad-request", "The request is malformed"),
            Self::Unauthorized(_) => (S::UNAUTHORIZED, "unauthorized", "Authentication required"),
            Self::Forbidden(_) => (S::FORBIDDEN, "forbidden", "Not allowed"),
            Self::NotFound(_) => (S::NOT_FOUND, "not-found", "Not found"),
            Self::Conflict(_) => (S::CONFLICT, "conflict", "Conflict"),
            Self::PayloadTooLarge(_) => (
                S::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            ),
            Self::RequestTimeout(_) => (
                S::REQUEST_TIMEOUT,
                "request-timeout",
                "Request body not received in time",
            ),
            Self::Unprocessable { .. } => (
                S::UNPROCESSABLE_ENTITY,
                "validation-failed",
                "Validation failed",
            ),
            Self::UnsupportedMediaType(_) => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate-limited", "Too many requests"),
            Self::Unavailable(_) | Self::Busy => {
                (S::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable")
            }
            Self::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, kind, title) = self.class();
        let (detail, errors) = match self {
            Self::BadRequest { detail, errors } | Self::Unprocessable { detail, errors } => {
                (detail.clone(), errors.clone())
            }
            // A 500 says nothing about its cause: the log has the chain.
            Self::Internal(_) => (
                "An unexpected error occurred; it has been logged.".to_owned(),
                Vec::new(),
            ),
            other => (other.to_string(), Vec::new()),
        };
        Problem {
            kind: format!("https://headcount.invalid/problems/{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            errors,
            request_id: crate::request_id::current(),
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.class().0
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(e) = self {
            tracing::error!(error = ?e, "request failed");
        }
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        match self {
            Self::Unavailable(_) | Self::Busy => {
                res.insert_header((header::RETRY_AFTER, "5"));
            }
            Self::RateLimited {
                retry_after_seconds,
                limit,
            } => {
                res.insert_header((header::RETRY_AFTER, retry_after_seconds.to_string()));
                res.insert_header(("RateLimit-Limit", limit.to_string()));
                res.insert_header(("RateLimit-Remaining", "0"));
                res.insert_header(("RateLimit-Reset", retry_after_seconds.to_string()));
            }
            Self::Unauthorized(_) => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        res.body(serde_json::to_string(&self.problem()).unwrap_or_default())
    }
}

/// Storage errors become problems here and nowhere else.
impl From<crate::db::Error> for Error {
    fn from(e: crate::db::Error) -> Self {
        use crate::db::Error as D;
        match e {
            D::NotFound(m) => Self::NotFound(m),
            D::Conflict(m) => Self::Conflict(m),
            D::Busy => Self::Busy,
            D::Unavailable(m) => Self::Unavailable(m),
            D::Internal(e) => Self::Internal(e),
        }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        crate::db::Error::from(e).into()
    }
}

impl From<r2d2::Error> for Error {
    fn from(e: r2d2::Error) -> Self {
        crate::db::Error::from(e).into()
    }
}

impl crate::db::Retry for Error {
    fn is_busy(&self) -> bool {
        matches!(self, Self::Busy)
    }
}
