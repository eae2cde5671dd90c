//! The events of an MCP session, built from decoded messages: a Request
//! for every message in either direction (its method, id, tool or prompt
//! name, resource URI and params), and a Response for every answer, with
//! the result as the client received it (masked).

use serde_json::Value;
use vigil_mcp::jsonrpc::{Id, Message};
use vigil_proto::events::{
    request, response, MaskedField, McpDirection, McpMessage, McpResult, Request, Response,
};

pub use vigil_proxy_core::recorded::{recorded as parameter, MAX_RECORDED_LEN as MAX_RECORDED};

/// The id as JSON text: `7` and `"7"` are different ids.
pub fn id_text(id: &Id) -> String {
    id.to_value().to_string()
}

/// The Request event of `message`, numbered `seq`. `answered` is the
/// method of the request an answer answers (answers carry none).
pub fn request(seq: u64, direction: McpDirection, message: &Message, answered: &str) -> Request {
    let (method, params) = match message {
        Message::Request { method, params, .. } | Message::Notification { method, params } => (
            method.clone(),
            params.as_ref().map(|p| Value::Object(p.clone())),
        ),
        Message::Result { result, .. } => (answered.to_string(), Some(result.clone())),
        Message::Error { .. } => (answered.to_string(), Some(message.to_value())),
    };
    let text = |key: &str| {
        params
            .as_ref()
            .and_then(|p| p.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let named = matches!(
        message,
        Message::Request { .. } | Message::Notification { .. }
    );
    Request {
        request_seq: seq,
        detail: Some(request::Detail::Mcp(McpMessage {
            direction: direction as i32,
            method,
            jsonrpc_id: message.id().map(id_text).unwrap_or_default(),
            name: if named { text("name") } else { String::new() },
            uri: if named { text("uri") } else { String::new() },
            params: params.map(|p| parameter(p.to_string().as_bytes())),
        })),
        decision: None,
    }
}

/// What masking and filtering did to one answer.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub masked_by_path: usize,
    pub detector_hits: usize,
    pub detector_kinds: Vec<String>,
    pub hidden: Vec<String>,
    /// Binary parts passed that the detectors could not read.
    pub unscanned_binary: usize,
    /// Tool pins (`name=fingerprint`): taken now, changes noticed now,
    /// acceptances read now.
    pub pinned: Vec<String>,
    pub pin_changes: Vec<String>,
    pub pins_accepted: Vec<String>,
}

/// The Response event of the answer `sent` (as the client got it) to
/// request `seq`.
pub fn response(seq: u64, sent: &Message, changes: &Changes, micros: u64) -> Response {
    let mut out = Response {
        request_seq: seq,
        duration_micros: micros,
        ..Response::default()
    };
    let mut detail = McpResult {
        hidden: changes.hidden.clone(),
        unscanned_binary: changes.unscanned_binary as u64,
        pinned: changes.pinned.clone(),
        pin_changes: changes.pin_changes.clone(),
        pins_accepted: changes.pins_accepted.clone(),
        ..McpResult::default()
    };
    match sent {
        Message::Result { result, .. } => {
            let text = result.to_string();
            detail.size_bytes = text.len() as u64;
            detail.is_error = result.get("isError").and_then(Value::as_bool) == Some(true);
            detail.content_items = ["content", "contents", "messages", "tools"]
                .iter()
                .find_map(|k| result.get(*k).and_then(Value::as_array))
                .map_or(0, |a| a.len() as u64);
            detail.result = Some(parameter(text.as_bytes()));
        }
        Message::Error { code, message, .. } => {
            out.error_code = code.to_string();
            out.error_message = message.clone();
        }
        _ => {}
    }
    if changes.masked_by_path > 0 {
        out.masked.push(MaskedField {
            field: "result".into(),
            method: "paths".into(),
            values_masked: changes.masked_by_path as u64,
            ..MaskedField::default()
        });
    }
    if changes.detector_hits > 0 {
        out.masked.push(MaskedField {
            field: "result".into(),
            method: format!("detectors: {}", changes.detector_kinds.join(", ")),
            values_masked: changes.detector_hits as u64,
            ..MaskedField::default()
        });
    }
    out.detail = Some(response::Detail::Mcp(detail));
    out
}

/// The Response of a request the gateway answered itself (refused, or
/// the server could not answer): never executed unless `executed`.
pub fn refused(seq: u64, code: i64, message: &str, executed: bool) -> Response {
    Response {
        request_seq: seq,
        not_executed: !executed,
        error_code: code.to_string(),
        error_message: message.to_string(),
        detail: Some(response::Detail::Mcp(McpResult::default())),
        ..Response::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_with_length_and_digest() {
        let short = parameter(b"{}");
        assert_eq!(short.value, b"{}");
        assert_eq!(short.length, 0);
        let long = vec![b'a'; MAX_RECORDED + 10];
        let p = parameter(&long);
        assert_eq!(p.value.len(), MAX_RECORDED);
        assert_eq!(p.length, (MAX_RECORDED + 10) as u64);
        assert_eq!(p.sha256.len(), 32);
    }

    #[test]
    fn a_tool_call_is_recorded_with_its_name_and_arguments() {
        let m = vigil_mcp::jsonrpc::message(serde_json::json!({
            "jsonrpc": "2.0", "id": "7", "method": "tools/call",
            "params": {"name": "lookup", "arguments": {"mrn": "123"}}
        }))
        .unwrap();
        let r = request(3, McpDirection::ClientToServer, &m, "");
        let Some(request::Detail::Mcp(d)) = r.detail else {
            panic!()
        };
        assert_eq!(d.jsonrpc_id, "\"7\"");
        assert_eq!(d.name, "lookup");
        assert_eq!(d.method, "tools/call");
        assert!(String::from_utf8(d.params.unwrap().value)
            .unwrap()
            .contains("\"mrn\":\"123\""));
    }
}
