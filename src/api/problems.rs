//! The problem responses (RFC 9457 `application/problem+json`, body [`Problem`]) that
//! the handlers' `#[utoipa::path]` attributes list, declared once: one marker type per
//! status, each an [`IntoResponses`] built by [`response`]. A handler names the ones it
//! answers after its own, e.g. `responses((status = 200, body = SiteView), NotFound)`;
//! the document keys responses by status, so the order written changes nothing. 401 and
//! 403, which every operation that takes a token answers, the `Describe` modifier adds.
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

/// A problem response of one status as a utoipa type, so that a path lists it by name.
macro_rules! problem_response {
    ($($(#[$doc:meta])* $name:ident = $status:literal;)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                only($status)
            }
        }
    )*};
}

problem_response! {
    /// 400: the body or a parameter is malformed.
    BadRequest = "400";
    /// 401: no usable token.
    Unauthorized = "401";
    /// 403: the token may not do this.
    Forbidden = "403";
    /// 404: not found, or another tenant's.
    NotFound = "404";
    /// 409: conflicts with the current state.
    Conflict = "409";
    /// 413: the body is over a limit.
    PayloadTooLarge = "413";
    /// 422: validation failed.
    UnprocessableEntity = "422";
}
