//! RFC 9457 problem details: every error answers
//! `application/problem+json` with a clear title and detail.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A problem+json body.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem (`about:blank` plus the title here).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Short, the same for every occurrence of the kind.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// This occurrence, in words.
    pub detail: String,
}

impl Problem {
    /// A problem with a status, a title and a detail.
    pub fn new(status: StatusCode, title: &'static str, detail: String) -> Self {
        Self {
            kind: "about:blank",
            title,
            status: status.as_u16(),
            detail,
        }
    }

    /// 404: absent, or outside the caller's reach (the same answer, so
    /// existence does not leak).
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("no such {what}"),
        )
    }

    /// 400 with what is wrong.
    pub fn bad_request(detail: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad request", detail.to_string())
    }

    /// 401.
    pub fn unauthorized(detail: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Not authenticated",
            detail.to_string(),
        )
    }

    /// 503: the database is not answering (the request may be retried).
    pub fn unavailable(e: &dyn std::fmt::Display) -> Self {
        tracing::warn!(message = "API request failed on the store.", error = %e);
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Temporarily unavailable",
            "the database did not answer; try again".into(),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // Operators see refusals by status on the metrics page.
        metrics::counter!("wardwatch_api_problems_total", "status" => status.as_str().to_owned())
            .increment(1);
        let body = serde_json::to_string(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}
