//! The error bodies the platform's FastAPI services answer with: `{"detail": "<text>"}` for
//! handled errors and `422 {"detail": [{"loc", "msg", "type"}]}` for invalid requests.

use std::borrow::Cow;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to the client in one of the two FastAPI shapes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// `status` with `{"detail": detail}`.
    #[error("{status}: {detail}")]
    Detail {
        status: StatusCode,
        detail: Cow<'static, str>,
    },
    /// `422` with one entry per problem found in the request.
    #[error("request validation failed: {0:?}")]
    Validation(Vec<Issue>),
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::Detail {
            status,
            detail: detail.into(),
        }
    }

    /// A 422 naming a single problem.
    pub(crate) fn invalid(issue: Issue) -> Self {
        Self::Validation(vec![issue])
    }
}

/// One entry of a FastAPI validation error: where, what, and the pydantic error type.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Issue {
    #[serde(rename = "type")]
    pub kind: Cow<'static, str>,
    pub loc: Vec<LocPart>,
    pub msg: Cow<'static, str>,
}

impl Issue {
    /// An issue located in the request body at `path` (field names and list indexes).
    pub(crate) fn in_body(
        path: impl IntoIterator<Item = LocPart>,
        kind: impl Into<Cow<'static, str>>,
        msg: impl Into<Cow<'static, str>>,
    ) -> Self {
        let mut loc = vec![LocPart::Key("body".into())];
        loc.extend(path);
        Self {
            kind: kind.into(),
            loc,
            msg: msg.into(),
        }
    }
}

/// One step of an issue's `loc`: an object key or a list index, as FastAPI writes them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum LocPart {
    Key(Cow<'static, str>),
    Index(usize),
}

impl From<&'static str> for LocPart {
    fn from(key: &'static str) -> Self {
        LocPart::Key(Cow::Borrowed(key))
    }
}

impl From<String> for LocPart {
    fn from(key: String) -> Self {
        LocPart::Key(Cow::Owned(key))
    }
}

impl From<usize> for LocPart {
    fn from(index: usize) -> Self {
        LocPart::Index(index)
    }
}

#[derive(Serialize)]
struct DetailBody<T> {
    detail: T,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Detail { status, detail } => {
                (status, Json(DetailBody { detail })).into_response()
            }
            ApiError::Validation(issues) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(DetailBody { detail: issues }),
            )
                .into_response(),
        }
    }
}
