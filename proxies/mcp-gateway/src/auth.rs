//! Who is asking: an OAuth 2.1 bearer token on every request, as MCP's
//! authorization spec describes. A request without one, or with one the
//! verifier refuses, is answered 401 with `WWW-Authenticate` pointing at
//! this resource's metadata (RFC 9728), where the agent finds which
//! authorization servers issue tokens for it; a token without the scopes
//! the listener requires is answered 403 `insufficient_scope`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Where RFC 9728 puts a resource's metadata: the well-known prefix, then
/// the resource's path.
pub fn metadata_path(resource_path: &str) -> String {
    format!("/.well-known/oauth-protected-resource{resource_path}")
}

/// The protected resource metadata document.
pub fn metadata(
    resource: &str,
    authorization_servers: &[String],
    scopes: &[String],
) -> serde_json::Value {
    json!({
        "resource": resource,
        "authorization_servers": authorization_servers,
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
    })
}

/// The token of `Authorization: Bearer <token>` (the runtime reads it for
/// every HTTP gateway).
pub use vigil_runtime::http::bearer_token as bearer;

/// Why a request was not let in.
pub enum Challenge {
    /// No token: the agent should discover how to get one.
    Missing,
    /// A token the verifier refused (expired, wrong audience, ...).
    Invalid(String),
    /// A valid token without the listener's scopes.
    InsufficientScope(String),
}

/// The 401 or 403 answer, with the challenge MCP clients read.
pub fn refuse(challenge: Challenge, metadata_url: &str, scopes: &[String]) -> Response {
    let scope = if scopes.is_empty() {
        String::new()
    } else {
        format!(", scope=\"{}\"", scopes.join(" "))
    };
    let (status, params, message) = match &challenge {
        Challenge::Missing => (
            StatusCode::UNAUTHORIZED,
            format!("resource_metadata=\"{metadata_url}\"{scope}"),
            "an access token is required (Authorization: Bearer ...)".to_string(),
        ),
        Challenge::Invalid(why) => (
            StatusCode::UNAUTHORIZED,
            format!("error=\"invalid_token\", resource_metadata=\"{metadata_url}\"{scope}"),
            why.clone(),
        ),
        Challenge::InsufficientScope(why) => (
            StatusCode::FORBIDDEN,
            format!("error=\"insufficient_scope\", resource_metadata=\"{metadata_url}\"{scope}"),
            why.clone(),
        ),
    };
    let mut response = (
        status,
        axum::Json(json!({"error": match challenge {
            Challenge::InsufficientScope(_) => "insufficient_scope",
            Challenge::Missing => "unauthorized",
            Challenge::Invalid(_) => "invalid_token",
        }, "error_description": message})),
    )
        .into_response();
    // The verifier's words may quote the token's claims, never a quote
    // that would end the header's parameter.
    let header = format!("Bearer {}", params.replace(['\r', '\n'], " "));
    if let Ok(v) = HeaderValue::from_str(&header) {
        response
            .headers_mut()
            .insert(axum::http::header::WWW_AUTHENTICATE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header_only() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert("authorization", HeaderValue::from_static("Bearer abc.def"));
        assert_eq!(bearer(&h), Some("abc.def"));
        h.insert("authorization", HeaderValue::from_static("bearer  abc"));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert("authorization", HeaderValue::from_static("Basic YTpi"));
        assert_eq!(bearer(&h), None);
        h.insert("authorization", HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn a_missing_token_points_at_the_metadata() {
        let r = refuse(
            Challenge::Missing,
            "http://gw/.well-known/oauth-protected-resource/mcp",
            &["mcp:tools".into()],
        );
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let h = r.headers()["www-authenticate"].to_str().unwrap();
        assert_eq!(
            h,
            "Bearer resource_metadata=\"http://gw/.well-known/oauth-protected-resource/mcp\", scope=\"mcp:tools\""
        );
        let r = refuse(
            Challenge::InsufficientScope("needs mcp:tools".into()),
            "http://m",
            &[],
        );
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope"));
    }

    #[test]
    fn the_metadata_path_follows_rfc_9728() {
        assert_eq!(
            metadata_path("/mcp"),
            "/.well-known/oauth-protected-resource/mcp"
        );
    }
}
