//! The short lower-case names of the schema's enums: what logs, transcripts,
//! webhooks and policy files say, and what schema v1 stored as strings (so a
//! v1 body reads back with the same words).

use crate::events::{
    EndReason, OperationState, Outcome, Protocol, SessionClosed, SqlProtocolPath, Stage, Verdict,
};

/// Names each value of a generated enum; `from_label` is its inverse, with
/// aliases, and gives the unspecified value for a word it does not know.
macro_rules! labels {
    ($ty:ty { $($variant:ident => $label:literal $(| $alias:literal)*),+ $(,)? }) => {
        impl $ty {
            /// The value's short name ("unspecified" for the zero value).
            pub fn label(self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)+
                }
            }

            /// The value a name stands for; unspecified for an unknown name.
            pub fn from_label(label: &str) -> Self {
                match label {
                    $($label $(| $alias)* => Self::$variant,)+
                    _ => Self::Unspecified,
                }
            }
        }
    };
}

labels!(Protocol {
    Unspecified => "unspecified",
    Postgres => "postgres",
    Mysql => "mysql",
    Mcp => "mcp",
    Llm => "llm",
    Ssh => "ssh",
    Kubernetes => "kubernetes",
});

labels!(SqlProtocolPath {
    Unspecified => "unspecified",
    Simple => "simple",
    Extended => "extended",
    ExtendedParse => "extended_parse",
    FunctionCall => "function_call",
});

labels!(Outcome {
    Unspecified => "unspecified",
    Allow => "allow",
    Deny => "deny",
    Review => "review",
    Mask => "mask",
});

labels!(Stage {
    Unspecified => "unspecified",
    // v1 called it "statement": the only requests were statements.
    Request => "request" | "statement",
    RowLimit => "row_limit",
    Grant => "grant",
    Approval => "approval",
    Session => "session",
    ResultSize => "result_size" | "row_size",
});

labels!(Verdict {
    Unspecified => "unspecified",
    Approve => "approve",
    Deny => "deny",
});

labels!(OperationState {
    Unspecified => "unspecified",
    Approved => "approved",
    Denied => "denied",
    Expired => "expired",
    Withdrawn => "withdrawn",
});

labels!(EndReason {
    Unspecified => "unspecified",
    ClientTerminated => "client_terminated",
    ClientDisconnected => "client_disconnected",
    ClientLeftWhileHeld => "client_left_while_held",
    UpstreamClosed => "upstream_closed",
    UpstreamUnavailable => "upstream_unavailable",
    AuditUnavailable => "audit_unavailable",
    Shutdown => "shutdown",
    Error => "error",
});

impl SessionClosed {
    /// The end reason as one line: "upstream_closed: connection reset".
    /// An unspecified reason is its detail alone (how a v1 reason text that
    /// names no known reason reads back, word for word).
    pub fn reason_text(&self) -> String {
        match (self.reason(), self.detail.is_empty()) {
            (EndReason::Unspecified, _) => self.detail.clone(),
            (reason, true) => reason.label().to_string(),
            (reason, false) => format!("{}: {}", reason.label(), self.detail),
        }
    }

    /// Splits a reason text (as [`SessionClosed::reason_text`] writes it,
    /// and as schema v1 stored it) into the reason and its detail, such that
    /// `reason_text` gives back exactly `text`.
    pub fn split_reason_text(text: &str) -> (EndReason, String) {
        let (word, detail) = text.split_once(": ").unwrap_or((text, ""));
        let reason = EndReason::from_label(word);
        let candidate = SessionClosed {
            reason: reason as i32,
            detail: detail.to_string(),
            ..Default::default()
        };
        if reason != EndReason::Unspecified && candidate.reason_text() == text {
            (reason, detail.to_string())
        } else {
            (EndReason::Unspecified, text.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_reads_back_as_its_value() {
        for v in [
            Outcome::Allow,
            Outcome::Deny,
            Outcome::Review,
            Outcome::Mask,
        ] {
            assert_eq!(Outcome::from_label(v.label()), v);
        }
        for v in [
            EndReason::ClientTerminated,
            EndReason::ClientLeftWhileHeld,
            EndReason::AuditUnavailable,
            EndReason::Error,
        ] {
            assert_eq!(EndReason::from_label(v.label()), v);
        }
        assert_eq!(Stage::from_label("statement"), Stage::Request);
        assert_eq!(Outcome::from_label("maybe"), Outcome::Unspecified);
    }

    #[test]
    fn reason_texts_split_and_join_word_for_word() {
        for text in [
            "client_terminated",
            "client_disconnected: Connection reset by peer (os error 104)",
            "upstream_closed",
            "error: audit ledger unavailable",
            "shutdown",
            // v1 texts that name no reason of v2 stay whole.
            "client_disconnected (while a statement was held for review)",
            "something else: entirely",
            "",
        ] {
            let (reason, detail) = SessionClosed::split_reason_text(text);
            let closed = SessionClosed {
                reason: reason as i32,
                detail,
                ..Default::default()
            };
            assert_eq!(closed.reason_text(), text);
        }
        assert_eq!(
            SessionClosed::split_reason_text("error: token expired").0,
            EndReason::Error
        );
        assert_eq!(
            SessionClosed::split_reason_text("something else: entirely").0,
            EndReason::Unspecified
        );
    }
}
