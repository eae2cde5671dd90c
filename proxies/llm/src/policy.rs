//! The model-API family of policy conditions: what a rule may say about
//! one request to a model. The engine (who and where, first match,
//! strictest, review settings) is `vigil_proxy_core::policy`; the
//! provider a request goes to is the engine's `connections` (the
//! `[[llm]]` listener's name).
//!
//! ```toml
//! [[rules]]
//! name = "no-frontier-models-for-bots"
//! action = "deny"
//! groups = ["ci-bots"]
//! models = ["gpt-5*", "claude-opus*"]
//!
//! [[rules]]
//! name = "web-search-needs-a-second-look"
//! action = "review"
//! tools = ["web_search"]
//!
//! [[rules]]
//! name = "long-answers"
//! action = "deny"
//! max_tokens_over = 8192
//!
//! [[rules]]
//! name = "care-team-gets-its-values-back"
//! action = "mask"
//! groups = ["care-team"]
//! restore = true
//! ```
//!
//! Models match case-insensitively, with `*` at the end for a prefix:
//! providers resolve model names loosely, and a refusal must not be
//! dodged by `GPT-5` for `gpt-5`. A rule that refuses or holds matches if
//! any offered tool matches its `tools`; a rule that lets through matches
//! only if every offered tool does (an exception written for one tool does
//! not cover a request that offers another).

use serde::Deserialize;
use vigil_proxy_core::policy::{Family, PolicyEngine, PolicyError, Rule};

use crate::request::LlmRequest;

pub use vigil_proxy_core::policy::{Asker, Outcome, Verdict};

/// The model-API protocol family.
#[derive(Clone, Copy, Debug)]
pub struct Llm;

/// A policy whose rules carry model-API conditions.
pub type Policy = PolicyEngine<Llm>;

/// The conditions a rule may carry: all that are given must hold; a list
/// holds if any entry matches.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConditions {
    /// `chat/completions`, `responses`, `completions`, `embeddings`,
    /// `models`, `messages`, `messages/count_tokens`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub models: Vec<String>,
    /// Tools offered to the model (function names, or a built-in tool's
    /// type).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Holds when the request may produce more tokens than this, or does
    /// not say (the provider's default can be large).
    #[serde(default)]
    pub max_tokens_over: Option<u64>,
    /// Holds when the body is larger than this many bytes.
    #[serde(default)]
    pub request_bytes_over: Option<u64>,
    /// Holds for streamed (`true`) or whole (`false`) answers.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Not a condition: what a `mask` rule does with the prompt's values.
    /// With `restore = true` they become numbered placeholders (`[SSN_1]`)
    /// and the model's answer has them turned back for the caller that
    /// sent them (`vigil_proxy_core::mask::vault`); the provider still
    /// never sees them. Needs both `[masking]` directions.
    #[serde(default)]
    pub restore: bool,
}

/// Which way `mask` masks, from `[masking]` (both by default):
/// `prompt = false` lets a provider the organisation trusts with PHI (a
/// model it runs itself) read the prompt whole while answers are still
/// masked for the agent; `output = false` keeps PHI from the provider but
/// gives the agent the answer as the model wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskDirections {
    #[serde(default = "yes")]
    pub prompt: bool,
    #[serde(default = "yes")]
    pub output: bool,
}

impl Default for MaskDirections {
    fn default() -> Self {
        MaskDirections {
            prompt: true,
            output: true,
        }
    }
}

fn yes() -> bool {
    true
}

impl Family for Llm {
    type Conditions = LlmConditions;
    type Sections = MaskDirections;
    type Subject = LlmRequest;
    type Shapes = ();

    fn sections(top: toml::Table, masking: toml::Table) -> Result<MaskDirections, PolicyError> {
        if let Some(key) = top.keys().next() {
            return Err(PolicyError::Syntax(format!(
                "unknown field `{key}` (not a key of a model-API policy)"
            )));
        }
        MaskDirections::deserialize(toml::Value::Table(masking))
            .map_err(|e| PolicyError::Masking(e.to_string().trim().to_string()))
    }

    fn matches(_: &MaskDirections, rule: &Rule<LlmConditions>, request: &LlmRequest) -> bool {
        conditions_hold(&rule.conditions, rule.action, request)
    }

    fn check_rule(
        directions: &MaskDirections,
        rule: &Rule<LlmConditions>,
    ) -> Result<(), PolicyError> {
        let problem = |p: &str| {
            Err(PolicyError::Rule {
                rule: rule.name.clone(),
                problem: p.into(),
            })
        };
        if !rule.conditions.restore {
            return Ok(());
        }
        if rule.action != Outcome::Mask {
            return problem("restore applies only to action = \"mask\"");
        }
        if !(directions.prompt && directions.output) {
            // Without a masked prompt there is nothing to restore; without
            // a masked answer, what the model wrote would reach the caller
            // unmasked beside the restored values.
            return problem("restore needs [masking] prompt and output both on");
        }
        Ok(())
    }
}

/// Whether the rule that decided a call says its prompt's values are
/// restored in the answer.
pub fn restores(policy: &Policy, rule: &str) -> bool {
    policy
        .rules()
        .iter()
        .any(|r| r.name == rule && r.conditions.restore && r.action == Outcome::Mask)
}

fn conditions_hold(c: &LlmConditions, action: Outcome, r: &LlmRequest) -> bool {
    let lets_through = matches!(action, Outcome::Allow | Outcome::Mask);
    let endpoint = r.endpoint.label();
    (c.endpoints.is_empty() || c.endpoints.iter().any(|e| e == endpoint))
        && (c.models.is_empty() || c.models.iter().any(|p| model_matches(p, &r.model)))
        && (c.tools.is_empty() || {
            let offered = |t: &String| c.tools.iter().any(|p| p == t);
            if lets_through {
                !r.tools.is_empty() && r.tools.iter().all(offered)
            } else {
                r.tools.iter().any(offered)
            }
        })
        && c.max_tokens_over
            .is_none_or(|limit| r.max_tokens.is_none_or(|n| n > limit))
        && c.request_bytes_over
            .is_none_or(|limit| r.body_bytes as u64 > limit)
        && c.stream.is_none_or(|s| s == r.stream)
}

/// A model name against a pattern: case-insensitive, `*` at the end for a
/// prefix.
fn model_matches(pattern: &str, model: &str) -> bool {
    let (p, m) = (pattern.to_lowercase(), model.to_lowercase());
    match p.strip_suffix('*') {
        Some(prefix) => m.starts_with(prefix),
        None => p == m,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::request::{decode, Endpoint};

    const POLICY: &str = r#"
name = "llm-test"
default = "mask"

[[rules]]
name = "no-big-models"
action = "deny"
models = ["gpt-5*"]

[[rules]]
name = "web-search-reviewed"
action = "review"
tools = ["web_search"]

[[rules]]
name = "long-answers"
action = "deny"
max_tokens_over = 4096
endpoints = ["chat/completions", "messages"]

[[rules]]
name = "weather-is-public"
action = "allow"
tools = ["weather"]
"#;

    fn verdict(body: serde_json::Value) -> String {
        let policy = Policy::parse(POLICY).unwrap();
        let r = decode(Endpoint::ChatCompletions, body.to_string().as_bytes()).unwrap();
        let asker = Asker {
            subject: "agent",
            groups: &[],
            connection: "models",
        };
        policy.first_match(asker, &r).rule
    }

    #[test]
    fn rules_see_model_tools_and_limits() {
        let m = |model: &str| json!({"model": model, "max_tokens": 10});
        assert_eq!(verdict(m("GPT-5-mini")), "no-big-models");
        assert_eq!(verdict(m("gemma")), "default");
        let no_limit = json!({"model": "gemma"});
        assert_eq!(
            verdict(no_limit),
            "long-answers",
            "no limit said: the provider's default"
        );
        let tools = |names: &[&str]| {
            json!({"model": "gemma", "max_tokens": 10,
                "tools": names.iter().map(|n| json!({"type": "function", "function": {"name": n}})).collect::<Vec<_>>()})
        };
        assert_eq!(verdict(tools(&["weather"])), "weather-is-public");
        assert_eq!(
            verdict(tools(&["weather", "lookup_patient"])),
            "default",
            "an exception for one tool does not cover another"
        );
        assert_eq!(
            verdict(tools(&["lookup", "web_search"])),
            "web-search-reviewed"
        );
    }

    #[test]
    fn restore_belongs_to_mask_rules_with_both_directions_masked() {
        let rule = |action: &str, masking: &str| {
            format!("name = \"x\"\ndefault = \"mask\"\n{masking}\n[[rules]]\nname = \"r\"\naction = \"{action}\"\nrestore = true\n")
        };
        let ok = Policy::parse(&rule("mask", "")).unwrap();
        assert!(restores(&ok, "r"));
        assert!(!restores(&ok, "default"));
        // A rule cannot pose as the default (whose verdict every caller
        // that no rule matches gets).
        let posing = rule("mask", "").replace("name = \"r\"", "name = \"default\"");
        assert!(Policy::parse(&posing)
            .unwrap_err()
            .to_string()
            .contains("reserved"));
        for (action, masking) in [
            ("allow", ""),
            ("deny", ""),
            ("review", ""),
            ("mask", "[masking]\noutput = false"),
            ("mask", "[masking]\nprompt = false"),
        ] {
            let err = Policy::parse(&rule(action, masking))
                .unwrap_err()
                .to_string();
            assert!(err.contains("restore"), "{action} {masking}: {err}");
        }
    }

    #[test]
    fn an_unknown_key_is_refused() {
        for bad in [
            "name = \"x\"\ndefault = \"mask\"\n[[rules]]\nname = \"r\"\naction = \"deny\"\nmodel = [\"a\"]\n",
            "name = \"x\"\ndefault = \"mask\"\nphi_tables = []\n",
            "name = \"x\"\ndefault = \"mask\"\n[masking]\nprompts = false\n",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
    }
}
