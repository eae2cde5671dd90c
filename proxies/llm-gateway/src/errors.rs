//! The gateway's own answers in each API's error format, so that the
//! agent's SDK raises its usual exception with Vigil's message: OpenAI's
//! `{"error": {"message", "type", "code"}}`, Anthropic's
//! `{"type": "error", "error": {"type", "message"}}`; in a stream, the
//! same as an SSE event.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::json;
use vigil_llm::request::Api;

/// What went wrong, as both APIs name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    TooLarge,
    Upstream,
    AuditUnavailable,
}

impl ErrorKind {
    fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::Permission => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
            ErrorKind::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn name(self, api: Api) -> &'static str {
        match (self, api) {
            (ErrorKind::InvalidRequest, _) => "invalid_request_error",
            (ErrorKind::Authentication, _) => "authentication_error",
            (ErrorKind::Permission, _) => "permission_error",
            (ErrorKind::NotFound, _) => "not_found_error",
            (ErrorKind::TooLarge, Api::Anthropic) => "request_too_large",
            (ErrorKind::TooLarge, Api::OpenAi) => "invalid_request_error",
            (ErrorKind::Upstream, Api::Anthropic) => "api_error",
            (ErrorKind::Upstream, Api::OpenAi) => "upstream_error",
            (ErrorKind::AuditUnavailable, Api::Anthropic) => "overloaded_error",
            (ErrorKind::AuditUnavailable, Api::OpenAi) => "audit_unavailable",
        }
    }
}

/// The error body of `api`.
pub fn body(api: Api, kind: ErrorKind, message: &str) -> serde_json::Value {
    match api {
        Api::OpenAi => json!({"error": {
            "message": message, "type": kind.name(api), "param": null, "code": kind.name(api),
        }}),
        Api::Anthropic => json!({"type": "error", "error": {
            "type": kind.name(api), "message": message,
        }}),
    }
}

/// An error answer with its status.
pub fn respond(api: Api, kind: ErrorKind, message: &str) -> Response {
    let mut response = Response::new(Body::from(body(api, kind, message).to_string()));
    *response.status_mut() = kind.status();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if kind == ErrorKind::Authentication {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"vigil\""),
        );
    }
    response
}

/// The error as an SSE event, for a stream already under way.
pub fn event(api: Api, kind: ErrorKind, message: &str) -> String {
    let data = body(api, kind, message).to_string();
    match api {
        Api::OpenAi => format!("data: {data}\n\n"),
        Api::Anthropic => format!("event: error\ndata: {data}\n\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_api_gets_its_own_error_shape() {
        let o = body(Api::OpenAi, ErrorKind::Permission, "no");
        assert_eq!(o["error"]["type"], "permission_error");
        assert_eq!(o["error"]["message"], "no");
        let a = body(Api::Anthropic, ErrorKind::TooLarge, "big");
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "request_too_large");
        assert!(
            event(Api::Anthropic, ErrorKind::Upstream, "x").starts_with("event: error\ndata: {")
        );
        assert_eq!(
            respond(Api::OpenAi, ErrorKind::Authentication, "who").status(),
            401
        );
    }
}
