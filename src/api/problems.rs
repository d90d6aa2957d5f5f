//! The problem responses (RFC 9457 `application/problem+json`, body [`Problem`]) that
//! the handlers' `#[utoipa::path]` attributes list, declared once: one marker type per
//! status, each an [`IntoResponses`] built by [`response`]. A handler names the ones it
//! answers after its own, e.g. `responses((status = 200, body = SiteView), Unauthorized,
//! NotFound)`; the document keys responses by status, so the order written changes nothing.
//!
//! The description is left empty: the document's `Describe` modifier writes it from the
//! operation and the status. `ApiDoc` registers the `Problem` schema these refer to.

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, ToSchema};

use crate::error::Problem;

/// A response whose body is a [`Problem`], with this description.
pub fn response(description: &str) -> RefOr<Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(Problem::name())))
                    .build(),
            )
            .build(),
    )
}

fn only(status: &str) -> BTreeMap<String, RefOr<Response>> {
    BTreeMap::from([(status.to_owned(), response(""))])
}

/// 400: the body or a parameter is malformed.
pub struct BadRequest;

impl IntoResponses for BadRequest {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        only("400")
    }
}

/// 401: no usable token.
pub struct Unauthorized;

impl IntoResponses for Unauthorized {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        only("401")
    }
}

/// 403: the token may not do this.
pub struct Forbidden;

impl IntoResponses for Forbidden {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        only("403")
    }
}

/// 404: not found, or another tenant's.
pub struct NotFound;

impl IntoResponses for NotFound {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        only("404")
    }
}

/// 409: conflicts with the current state.
pub struct Conflict;

impl IntoResponses for Conflict {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        only("409")
    }
}

/// 413: the body is over a limit.
pub struct PayloadTooLarge;

impl IntoResponses for PayloadTooLarge {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        only("413")
    }
}

/// 422: validation failed.
pub struct UnprocessableEntity;

impl IntoResponses for UnprocessableEntity {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        only("422")
    }
}
