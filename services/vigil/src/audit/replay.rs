//! `vigil audit replay`: a session's transcript, statement by statement,
//! from events that were first proven (see [`super::bundle::check`]).

use std::fmt::Write as _;

use vigil_proto::events::{
    event::Kind, Decision, Event, McpDirection, McpMessage, Request, SqlStatement,
};

use crate::timefmt::rfc3339;

/// Renders proven events of one session as a readable transcript.
pub fn transcript(events: &[(u64, Event)]) -> String {
    let mut out = String::new();
    if let Some((_, first)) = events.first() {
        let who = first.identity.as_ref().map_or_else(
            || "(no identity)".to_string(),
            |i| {
                format!(
                    "{} (issuer {}, via {}, groups [{}])",
                    i.subject,
                    i.issuer,
                    i.auth_method,
                    i.groups.join(", ")
                )
            },
        );
        let _ = writeln!(
            out,
            "session {} on connection {:?}, identity {who}",
            first.session_id, first.connection
        );
    }
    for (index, e) in events {
        let line = format!(
            "[{}] seq {:>3} entry {:>6}  ",
            rfc3339(e.time_unix_nanos),
            e.seq,
            index,
        );
        let _ = writeln!(out, "{line}{}", describe(e));
        // A request's first decision is part of the request's own event:
        // shown under it, marked as no entry of its own.
        if let Some(Kind::Request(Request {
            decision: Some(d), ..
        })) = &e.kind
        {
            let indent = " ".repeat(line.chars().count());
            let _ = writeln!(out, "{indent}└ {} (in the request's entry)", decision(d));
        }
    }
    out
}

fn decision(d: &Decision) -> String {
    format!(
        "decision on #{}: {} by rule {:?}{}",
        d.request_seq,
        d.outcome().label(),
        d.rule,
        if d.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", d.reason)
        }
    )
}

fn describe(e: &Event) -> String {
    match &e.kind {
        Some(Kind::SessionOpened(o)) => match o.sql() {
            Some(sql) => format!(
                "session opened from {} as {:?} to database {:?} (application {:?}, tls {}) -> upstream as {:?}{}",
                o.client_addr,
                sql.client_user,
                sql.database,
                sql.application_name,
                o.tls,
                sql.upstream_user,
                // Recorded since schema v2.
                if o.upstream_addr.is_empty() {
                    String::new()
                } else {
                    format!(" at {}", o.upstream_addr)
                }
            ),
            None if o.mcp().is_some() => {
                let m = o.mcp().expect("checked");
                format!(
                    "MCP session opened from {} (tls {}), revision {}{}, client {:?} {:?} -> {}",
                    o.client_addr,
                    o.tls,
                    if m.protocol_version.is_empty() { "?" } else { &m.protocol_version },
                    if m.mcp_session_id.is_empty() {
                        " (stateless: one HTTP connection)".to_string()
                    } else {
                        format!(", Mcp-Session-Id {}", m.mcp_session_id)
                    },
                    m.client_name,
                    m.client_version,
                    m.upstream
                )
            }
            None if o.http().is_some() => {
                let h = o.http().expect("checked");
                format!(
                    "model-API session opened from {} (tls {}), user agent {:?} -> {}",
                    o.client_addr, o.tls, h.user_agent, h.upstream
                )
            }
            None => format!(
                "{} session opened from {} (tls {})",
                e.protocol().label(),
                o.client_addr,
                o.tls
            ),
        },
        Some(Kind::Request(r)) => match (r.sql(), r.mcp(), r.http()) {
            (Some(sql), _, _) => statement(r.request_seq, sql),
            (None, Some(m), _) => mcp_message(r.request_seq, m),
            (None, None, Some(h)) => model_call(r.request_seq, h),
            _ => format!("request #{} ({})", r.request_seq, e.protocol().label()),
        },
        Some(Kind::Decision(d)) => decision(d),
        Some(Kind::Response(r)) => {
            if r.not_executed {
                format!("result of #{}: not executed", r.request_seq)
            } else if !r.error_code.is_empty() {
                format!(
                    "result of #{}: ERROR {} {} ({} µs)",
                    r.request_seq, r.error_code, r.error_message, r.duration_micros
                )
            } else if let Some(m) = r.mcp() {
                mcp_result(r, m)
            } else if let Some(h) = r.http() {
                model_answer(r, h)
            } else if let Some(sql) = r.sql() {
                format!(
                    "result of #{}: {} — {} row(s) returned to the client ({} µs)",
                    r.request_seq,
                    sql.command_tags.join(", "),
                    sql.rows,
                    r.duration_micros
                )
            } else {
                format!("result of #{} ({} µs)", r.request_seq, r.duration_micros)
            }
        }
        Some(Kind::SessionClosed(c)) => format!(
            "session closed: {} after {} statement(s), {} ms",
            c.reason_text(),
            c.requests,
            c.duration_micros / 1000
        ),
        Some(Kind::PendingOperation(p)) => format!(
            "statement #{} held for approval (operation {}, rule {:?}, approvers {:?}, quorum {})",
            p.request_seq, p.operation_id, p.rule, p.approver_groups, p.quorum
        ),
        Some(Kind::ApprovalDecision(a)) => format!(
            "approval {}: {} by {} ({})",
            a.operation_id,
            a.verdict().label(),
            a.approver.as_ref().map_or("?", |i| i.subject.as_str()),
            a.reason
        ),
        Some(Kind::RetentionPruned(r)) => format!(
            "retention pruned bodies of entries {}..{} ({})",
            r.first_index, r.end_index, r.policy
        ),
        Some(Kind::CancelRequested(c)) => format!(
            "cancel requested from {}{}",
            c.client_addr,
            if c.forwarded {
                ", forwarded to the database"
            } else {
                ", could not be forwarded"
            }
        ),
        Some(Kind::LoginRefused(l)) => format!(
            "login refused from {} as \"{}\": {}",
            l.client_addr,
            l.sql().map_or("", |s| s.client_user.as_str()),
            l.reason
        ),
        Some(Kind::OperationClosed(c)) => format!(
            "operation {} {}: {}",
            c.operation_id,
            c.state().label(),
            c.reason
        ),
        Some(Kind::AccessGranted(g)) => format!(
            "grant {}: {} may run what rule {:?} holds on {} until {} ({})",
            g.grant_id,
            g.grantee.as_ref().map_or("?", |i| i.subject.as_str()),
            g.rule,
            g.connection,
            crate::timefmt::rfc3339(g.expires_unix_nanos),
            g.reason
        ),
        Some(Kind::GrantRevoked(r)) => format!("grant {} revoked: {}", r.grant_id, r.reason),
        Some(Kind::SequenceGap(g)) => format!(
            "the ledger noticed a hole: events {}..{} of session {} never reached the log (open {} ms)",
            g.first_missing,
            g.first_missing.saturating_add(g.missing),
            g.session_id,
            g.open_for_nanos / 1_000_000
        ),
        Some(Kind::NotificationFailed(n)) => format!(
            "webhook {} was not told that operation {} is {}: {} ({} tries)",
            n.target, n.operation_id, n.state, n.error, n.attempts
        ),
        None => "(event without a kind)".into(),
    }
}

/// A model-API call: endpoint, model, parameters, and the body as the
/// agent sent it (the prompt whole: it is in the sealed body).
fn model_call(seq: u64, h: &vigil_proto::events::HttpCall) -> String {
    let mut s = format!("call #{seq}: {} {}", h.method, h.path);
    if !h.model.is_empty() {
        let _ = write!(s, " model {:?}", h.model);
    }
    if h.stream {
        s.push_str(", streamed");
    }
    if h.max_tokens > 0 {
        let _ = write!(s, ", max {} tokens", h.max_tokens);
    }
    if !h.tools.is_empty() {
        let _ = write!(s, ", tools offered: {}", h.tools.join(", "));
    }
    if let Some(b) = &h.body {
        let _ = write!(s, "\n      as the agent sent it: {}", recorded_value(b));
    }
    s
}

/// A model's answer as the agent received it (masked where policy masks).
fn model_answer(r: &vigil_proto::events::Response, h: &vigil_proto::events::HttpResult) -> String {
    let mut s = format!(
        "answer to #{}: HTTP {}, {} token(s) in, {} out",
        r.request_seq, h.status, h.input_tokens, h.output_tokens
    );
    if h.time_to_first_token_micros > 0 {
        let _ = write!(
            s,
            ", first token after {} ms",
            h.time_to_first_token_micros / 1000
        );
    }
    let _ = write!(s, ", {} ms", r.duration_micros / 1000);
    if !h.finish_reason.is_empty() {
        let _ = write!(s, ", finished: {}", h.finish_reason);
    }
    if !h.tool_calls.is_empty() {
        let _ = write!(s, ", tools called: {}", h.tool_calls.join(", "));
    }
    for f in &r.masked {
        let _ = write!(s, "; {} masked: {} value(s)", f.field, f.values_masked);
    }
    if let Some(p) = &h.output {
        let _ = write!(s, "\n      as the agent received it: {}", recorded_value(p));
    }
    s
}

/// An MCP message: its number, direction, method, id, name or URI, and
/// params (as recorded: the agent's arguments, the server's requests).
fn mcp_message(seq: u64, m: &McpMessage) -> String {
    let arrow = match m.direction() {
        McpDirection::ServerToClient => "server -> agent",
        _ => "agent -> server",
    };
    let mut s = format!(
        "message #{seq} ({arrow}): {}",
        if m.method.is_empty() {
            "(answer)"
        } else {
            &m.method
        }
    );
    if !m.name.is_empty() {
        let _ = write!(s, " {:?}", m.name);
    }
    if !m.uri.is_empty() {
        let _ = write!(s, " {:?}", m.uri);
    }
    if !m.jsonrpc_id.is_empty() {
        let _ = write!(s, " id {}", m.jsonrpc_id);
    }
    if let Some(p) = &m.params {
        let _ = write!(s, "  params {}", recorded_value(p));
    }
    s
}

/// An MCP answer as the agent received it (masked).
fn mcp_result(r: &vigil_proto::events::Response, m: &vigil_proto::events::McpResult) -> String {
    let mut s = format!(
        "result of #{}: {}{} item(s), {} bytes ({} µs)",
        r.request_seq,
        if m.is_error { "tool error, " } else { "" },
        m.content_items,
        m.size_bytes,
        r.duration_micros
    );
    for f in &r.masked {
        let _ = write!(s, "; masked {} value(s) by {}", f.values_masked, f.method);
    }
    for (what, list) in [
        ("tools pinned at first sight", &m.pinned),
        ("changed tool definitions hidden", &m.pin_changes),
        (
            "changed tool definitions accepted by the operator",
            &m.pins_accepted,
        ),
    ] {
        if !list.is_empty() {
            let _ = write!(s, "; {what}: {}", list.join(", "));
        }
    }
    if m.unscanned_binary > 0 {
        let _ = write!(
            s,
            "; {} binary part(s) passed unscanned",
            m.unscanned_binary
        );
    }
    if !m.hidden.is_empty() {
        let _ = write!(s, "; hidden from the agent: {}", m.hidden.join(", "));
    }
    if let Some(p) = &m.result {
        let _ = write!(s, "\n      as the agent received it: {}", recorded_value(p));
    }
    s
}

/// A recorded value: whole, or its recorded start with the whole's length
/// and hash.
fn recorded_value(p: &vigil_proto::events::Parameter) -> String {
    let text = String::from_utf8_lossy(&p.value);
    if p.length > 0 {
        format!(
            "{text}... <{} bytes in all, sha256 {}>",
            p.length,
            hex::encode(&p.sha256)
        )
    } else {
        text.into_owned()
    }
}

/// A SQL Request: its number, path, prepared name, text and parameters.
fn statement(seq: u64, r: &SqlStatement) -> String {
    let mut s = format!(
        "statement #{} ({}{}): {}",
        seq,
        r.path().label(),
        if r.statement_name.is_empty() {
            String::new()
        } else {
            format!(", prepared {:?}", r.statement_name)
        },
        r.text
    );
    if !r.parameters.is_empty() {
        let params: Vec<String> = r
            .parameters
            .iter()
            .map(|p| {
                if p.is_null {
                    "NULL".into()
                } else if p.length > 0 {
                    // Recorded cut short: the whole is proven by its hash.
                    format!(
                        "<{} bytes, sha256 {}, first {} recorded>",
                        p.length,
                        hex::encode(&p.sha256),
                        p.value.len()
                    )
                } else if p.binary {
                    format!("<{} binary bytes>", p.value.len())
                } else {
                    format!("{:?}", String::from_utf8_lossy(&p.value))
                }
            })
            .collect();
        let _ = write!(s, "  parameters [{}]", params.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use vigil_proto::events::{Decision, Outcome, Request, SqlStatement, Stage};

    use super::*;

    fn event(seq: u64, kind: Kind) -> Event {
        Event {
            session_id: "s".into(),
            seq,
            kind: Some(kind),
            ..Default::default()
        }
    }

    fn denial() -> Decision {
        Decision {
            request_seq: 0,
            outcome: Outcome::Deny as i32,
            rule: "no-drop".into(),
            stage: Stage::Request as i32,
            ..Default::default()
        }
    }

    fn drop_table() -> Request {
        Request::new_sql(
            0,
            SqlStatement {
                text: "DROP TABLE t".into(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn a_decision_reads_alike_whether_its_request_carries_it_or_it_follows() {
        let carried = transcript(&[(7, event(1, Kind::Request(drop_table().decided(denial()))))]);
        let separate = transcript(&[
            (7, event(1, Kind::Request(drop_table()))),
            (8, event(2, Kind::Decision(denial()))),
        ]);
        let decision_line = |t: &str| {
            t.lines()
                .find(|l| l.contains("decision on #0: deny by rule \"no-drop\""))
                .unwrap_or_else(|| panic!("no decision in:\n{t}"))
                .to_string()
        };
        // A separate event is an entry of its own; a carried decision is
        // shown under its request, with no seq or entry of its own.
        assert!(decision_line(&separate).contains("seq   2 entry      8"));
        let line = decision_line(&carried);
        assert!(
            !line.contains("seq") && !line.contains("entry      7"),
            "{line}"
        );
        assert!(line.ends_with("(in the request's entry)"), "{line}");
        assert_eq!(
            carried
                .lines()
                .filter(|l| l.contains("DROP TABLE t"))
                .count(),
            1
        );
    }
}
