//! The model's answer, masked before the agent sees it.
//!
//! Whole answers (a JSON body) are walked: every string is scanned by the
//! detectors except the values of structural keys (ids the SDKs match on,
//! roles, types, model names, finish reasons), so PHI cannot hide in a
//! field this code does not know.
//!
//! Streamed answers are masked event by event. The text of each channel
//! (a choice's content, its reasoning, one tool call's arguments, one
//! content block) goes through its own [`StreamMasker`], which holds back
//! the tail that could still become part of a hit; the event then carries
//! what was released (possibly nothing: an empty delta keeps the event,
//! its id and its usage where the SDK expects them). What is held is
//! released when the channel ends (a choice's `finish_reason`, a block's
//! `content_block_stop`, the `.done` event of a Responses item) or the
//! stream ends, in an event of the channel's own kind. Every other string
//! of every event goes through the whole-answer walk, so an event type
//! this code does not know is masked, not passed.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use vigil_proxy_core::mask::{DetectorKind, Masker, Restorer, StreamMasker, Vault};

/// Keys whose string values are structure: never scanned. Ids above all:
/// a random id can look like a date or a phone number, and a masked id
/// breaks the SDK's matching of tool calls to results.
const STRUCTURAL: &[&str] = &[
    "id",
    "object",
    "type",
    "role",
    "model",
    "finish_reason",
    "stop_reason",
    "stop_sequence",
    "tool_call_id",
    "tool_use_id",
    "call_id",
    "item_id",
    "response_id",
    "system_fingerprint",
    "status",
    "service_tier",
    "encrypted_content",
    "signature",
];

/// Keys of a prompt whose values the provider matches or reads as its own
/// vocabulary (ids, types, roles, the model): scanned, but a hit there
/// cannot be masked without breaking the request, so the request is
/// refused. In a prompt the agent writes every id, and a tool call's id is
/// as good a place to hide an SSN as its arguments (real ids, `call_...`,
/// `toolu_...`, glue their characters to a word and match no detector).
const PROMPT_EXACT: &[&str] = &[
    "id",
    "tool_call_id",
    "tool_use_id",
    "call_id",
    "item_id",
    "previous_response_id",
    "type",
    "role",
    "model",
];

/// Opaque blobs the provider issued and checks (encrypted reasoning, a
/// thinking block's signature): passed as they are.
const PROMPT_OPAQUE: &[&str] = &["encrypted_content", "signature"];

/// Why a prompt cannot be masked: what looks like PHI sits where masking
/// would break the request (a key, an id). Never holds the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRefused(pub String);

/// What masking found, for the Response event.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Found {
    pub hits: usize,
    /// Hits that began in text released before they could be recognised
    /// (only past the stream masker's bound).
    pub late_hits: usize,
    /// Placeholders turned back into the caller's values (a rule with
    /// `restore`).
    pub restored: usize,
    kinds: u32,
}

impl Found {
    pub fn kinds(&self) -> Vec<DetectorKind> {
        DetectorKind::ALL
            .into_iter()
            .filter(|k| self.kinds & (1 << (*k as u32)) != 0)
            .collect()
    }

    /// Adds what `other` found.
    pub fn merge(&mut self, other: &Found) {
        self.hits += other.hits;
        self.late_hits += other.late_hits;
        self.restored += other.restored;
        self.kinds |= other.kinds;
    }

    fn add(&mut self, kinds: &[DetectorKind], hits: usize) {
        self.hits += hits;
        for k in kinds {
            self.kinds |= 1 << (*k as u32);
        }
    }
}

/// Keys whose value the model writes as an object of its own choosing (a
/// tool call's input or arguments): inside, no key is structural and keys
/// are scanned too.
const AUTHORED: &[&str] = &["input", "arguments", "parsed", "json", "action", "env"];

/// Keys that spell the output out token by token (log probabilities):
/// dropped from a masked answer, since no single token is a hit.
const TOKEN_BY_TOKEN: &[&str] = &["logprobs", "top_logprobs"];

/// Masks every non-structural string of `value` in place.
pub fn mask_whole(masker: &Masker, value: &mut Value, found: &mut Found) {
    walk(value, false, STRUCTURAL, &mut |s| {
        if let Some(scanned) = masker.scan(s.as_bytes()) {
            found.add(&scanned.kinds, scanned.hits);
            *s = String::from_utf8_lossy(&scanned.masked).into_owned();
        }
    });
}

/// Masks a part of a prompt in place: every string value, but a hit in a
/// key or in a [`PROMPT_EXACT`] value refuses the request (masking it
/// would break the request; passing it would hand PHI to the provider).
/// With a `vault` (a rule with `restore`), each hit that can be restored
/// becomes its numbered placeholder.
pub fn mask_prompt_value(
    masker: &Masker,
    mut vault: Option<&mut Vault>,
    value: &mut Value,
    found: &mut Found,
) -> Result<(), PromptRefused> {
    walk_prompt(masker, &mut vault, value, found)
}

fn walk_prompt(
    masker: &Masker,
    vault: &mut Option<&mut Vault>,
    value: &mut Value,
    found: &mut Found,
) -> Result<(), PromptRefused> {
    match value {
        Value::String(s) => {
            let scanned = match vault.as_deref_mut() {
                Some(vault) => vault.mask(masker, s),
                None => masker.scan(s.as_bytes()),
            };
            if let Some(scanned) = scanned {
                found.add(&scanned.kinds, scanned.hits);
                *s = String::from_utf8_lossy(&scanned.masked).into_owned();
            }
        }
        Value::Array(items) => {
            for v in items {
                walk_prompt(masker, vault, v, found)?;
            }
        }
        Value::Object(map) => {
            // Opaque blobs pass only inside the items the provider issued
            // them in; a `signature` in metadata is just text.
            let provider_item = map
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| matches!(t, "reasoning" | "thinking" | "redacted_thinking"));
            for (k, v) in map.iter_mut() {
                if let Some(hit) = masker.scan(k.as_bytes()) {
                    return Err(PromptRefused(format!(
                        "a key of the prompt looks like {} (keys are not masked: that would change the request's shape)",
                        kinds_text(&hit.kinds)
                    )));
                }
                if provider_item && PROMPT_OPAQUE.contains(&k.as_str()) && v.is_string() {
                    continue;
                }
                if let Some(exact) = PROMPT_EXACT.iter().find(|e| **e == k.as_str()) {
                    if let Value::String(s) = v {
                        if let Some(hit) = masker.scan(s.as_bytes()) {
                            return Err(PromptRefused(format!(
                                "the prompt's `{exact}` looks like {} (it cannot be masked without breaking the request)",
                                kinds_text(&hit.kinds)
                            )));
                        }
                        continue;
                    }
                }
                walk_prompt(masker, vault, v, found)?;
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

fn kinds_text(kinds: &[DetectorKind]) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Turns `vault`'s placeholders in every non-structural string of `value`
/// back into the caller's values. Runs after masking: what it puts back is
/// not masked again.
pub fn restore_whole(vault: &Vault, value: &mut Value, found: &mut Found) {
    walk(value, false, STRUCTURAL, &mut |s| {
        if s.contains('[') {
            let (restored, n) = vault.restore(s);
            if n > 0 {
                found.restored += n;
                *s = restored;
            }
        }
    });
}

/// Calls `each` on every string of `value` but those of `structural`
/// keys, the keys of authored objects included (renamed when `each`
/// changes them); drops token-by-token keys.
fn walk(
    value: &mut Value,
    authored: bool,
    structural: &[&str],
    each: &mut impl FnMut(&mut String),
) {
    match value {
        Value::String(s) => each(s),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| walk(v, authored, structural, each)),
        Value::Object(map) => {
            if authored {
                // Keys the model chose: scanned, and renamed when masked.
                let keys: Vec<String> = map.keys().cloned().collect();
                for k in keys {
                    let mut masked = k.clone();
                    each(&mut masked);
                    if masked != k {
                        if let Some(v) = map.remove(&k) {
                            map.insert(masked, v);
                        }
                    }
                }
            } else {
                for key in TOKEN_BY_TOKEN {
                    if map.get(*key).is_some_and(|v| !v.is_null()) {
                        map.insert((*key).to_string(), Value::Null);
                    }
                }
            }
            for (k, v) in map.iter_mut() {
                let verbatim = !authored && v.is_string() && structural.contains(&k.as_str());
                if !verbatim {
                    walk(
                        v,
                        authored || AUTHORED.contains(&k.as_str()),
                        structural,
                        each,
                    );
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// One channel of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Channel {
    /// OpenAI-compatible: a choice's `content` (or `text`), its
    /// `reasoning_content`, its `refusal`, one tool call's
    /// `function.arguments`, or the legacy `function_call.arguments`.
    Content(u64),
    Reasoning(u64),
    Refusal(u64),
    ToolArguments(u64, u64),
    FunctionArguments(u64),
    /// Anthropic: a content block by index.
    Block(u64),
    /// Responses: the text of one `.delta` event kind (`response.output_text`,
    /// `response.function_call_arguments`, ...) for one item and part.
    Part(String, String, u64, u64),
}

impl Channel {
    /// The OpenAI choice a channel belongs to.
    fn choice(&self) -> Option<u64> {
        match self {
            Channel::Content(i)
            | Channel::Reasoning(i)
            | Channel::Refusal(i)
            | Channel::FunctionArguments(i)
            | Channel::ToolArguments(i, _) => Some(*i),
            Channel::Block(_) | Channel::Part(..) => None,
        }
    }
}

/// The channels of one streamed answer.
struct Channels<'m> {
    masker: &'m Masker,
    /// Placeholders to restore after masking (a rule with `restore`).
    vault: Option<&'m Vault>,
    open: BTreeMap<Channel, (StreamMasker<'m>, Option<Restorer<'m>>)>,
    found: Found,
    /// The channels' text as masked, before any restoring, in the order it
    /// was released: the answer as the model wrote it, for the record (the
    /// first [`WRITTEN_LIMIT`] bytes, in whole pieces).
    written: String,
    written_full: bool,
}

/// The most of a stream's text kept as written.
const WRITTEN_LIMIT: usize = 256 * 1024;

impl<'m> Channels<'m> {
    fn new(masker: &'m Masker) -> Self {
        Channels {
            masker,
            vault: None,
            open: BTreeMap::new(),
            found: Found::default(),
            written: String::new(),
            written_full: false,
        }
    }

    fn push(&mut self, channel: Channel, text: &str) -> String {
        let (masker, vault) = (self.masker, self.vault);
        let (stream, _) = self
            .open
            .entry(channel.clone())
            .or_insert_with(|| (StreamMasker::new(masker), vault.map(Vault::restorer)));
        let masked = stream.push(text);
        let masked = self.released(masked);
        match self.open.get_mut(&channel).and_then(|(_, r)| r.as_mut()) {
            Some(r) => r.push(&masked),
            None => masked,
        }
    }

    /// Text a stream masker released: scanned once more (a hit can show
    /// only once its neighbour is masked, as the whole-answer walk would
    /// see it), and kept as written.
    fn released(&mut self, masked: String) -> String {
        let masked = match self.masker.scan(masked.as_bytes()) {
            Some(again) => {
                self.found.add(&again.kinds, again.hits);
                String::from_utf8_lossy(&again.masked).into_owned()
            }
            None => masked,
        };
        if !self.written_full {
            if self.written.len() + masked.len() > WRITTEN_LIMIT {
                self.written_full = true;
            } else {
                self.written.push_str(&masked);
            }
        }
        masked
    }

    /// Ends `channel`: what it still held, masked (and restored).
    fn close(&mut self, channel: &Channel) -> String {
        match self.open.remove(channel) {
            Some((mut s, restorer)) => {
                let rest = s.finish();
                self.found.add(&s.kinds(), s.hits());
                self.found.late_hits += s.late_hits();
                let rest = self.released(rest);
                match restorer {
                    Some(mut r) => {
                        let mut out = r.push(&rest);
                        out.push_str(&r.finish());
                        self.found.restored += r.restored();
                        out
                    }
                    None => rest,
                }
            }
            None => String::new(),
        }
    }

    /// An event's strings outside the channels: masked whole, then
    /// restored.
    fn whole(&mut self, value: &mut Value) {
        mask_whole(self.masker, value, &mut self.found);
        if let Some(vault) = self.vault {
            restore_whole(vault, value, &mut self.found);
        }
    }

    /// Ends every channel matching `which`: (channel, rest) where a rest
    /// is left.
    fn close_where(&mut self, which: impl Fn(&Channel) -> bool) -> Vec<(Channel, String)> {
        let ending: Vec<Channel> = self.open.keys().filter(|c| which(c)).cloned().collect();
        ending
            .into_iter()
            .map(|c| {
                let rest = self.close(&c);
                (c, rest)
            })
            .filter(|(_, rest)| !rest.is_empty())
            .collect()
    }
}

/// An OpenAI-compatible stream: `chat.completion.chunk`s (or legacy
/// `text_completion` chunks), then `[DONE]`.
pub struct ChatStream<'m> {
    channels: Channels<'m>,
    /// The latest chunk, as the template of a closing chunk.
    last: Option<Value>,
}

impl<'m> ChatStream<'m> {
    pub fn new(masker: &'m Masker) -> Self {
        ChatStream {
            channels: Channels::new(masker),
            last: None,
        }
    }

    /// Masks (and restores) placeholders in what this stream sends: see
    /// [`Vault`]. `vault` holds the values of this call's prompt only.
    pub fn restoring(mut self, vault: &'m Vault) -> Self {
        self.channels.vault = Some(vault);
        self
    }

    /// Masks one chunk in place: the channels' text by their stream
    /// maskers, every other string whole.
    pub fn chunk(&mut self, chunk: &mut Value) {
        let mut taken = Vec::new();
        chat_channels(chunk, &mut |channel, text| {
            taken.push((channel, std::mem::take(text)));
        });
        self.channels.whole(chunk);
        let mut taken = taken.into_iter();
        // Choice by choice, as they come: a choice that finishes releases
        // what it held before the next choice's text goes on.
        if let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) {
            for choice in choices {
                let channels = &mut self.channels;
                choice_channels(choice, &mut |_, text| {
                    if let Some((channel, piece)) = taken.next() {
                        *text = channels.push(channel, &piece);
                    }
                });
                if choice.get("finish_reason").is_some_and(|f| !f.is_null()) {
                    let index = choice_index(choice);
                    let rests = self.channels.close_where(|c| c.choice() == Some(index));
                    append_rests(choice, rests);
                }
            }
        }
        self.last = Some(chunk.clone());
    }

    /// The stream ended (`[DONE]` or the end of the body): a last chunk
    /// with what the channels still held, if anything.
    pub fn finish(&mut self) -> Option<Value> {
        let rests = self.channels.close_where(|_| true);
        if rests.is_empty() {
            return None;
        }
        let mut closing = self
            .last
            .clone()
            .unwrap_or_else(|| Value::Object(Map::new()));
        let mut by_choice: BTreeMap<u64, Vec<(Channel, String)>> = BTreeMap::new();
        for (c, rest) in rests {
            let i = c.choice().unwrap_or(0);
            by_choice.entry(i).or_default().push((c, rest));
        }
        let legacy = closing.get("object").and_then(Value::as_str) == Some("text_completion");
        let choices = by_choice
            .into_iter()
            .map(|(index, rests)| {
                let mut choice = if legacy {
                    serde_json::json!({"index": index, "text": "", "finish_reason": null})
                } else {
                    serde_json::json!({"index": index, "delta": {}, "finish_reason": null})
                };
                append_rests(&mut choice, rests);
                choice
            })
            .collect();
        if let Some(map) = closing.as_object_mut() {
            map.insert("choices".into(), Value::Array(choices));
            map.remove("usage");
        }
        Some(closing)
    }

    pub fn found(&self) -> &Found {
        &self.channels.found
    }

    /// The text of the channels as masked, before restoring: what the
    /// model wrote, for the record.
    pub fn written(&self) -> &str {
        &self.channels.written
    }
}

fn choice_index(choice: &Value) -> u64 {
    choice.get("index").and_then(Value::as_u64).unwrap_or(0)
}

/// Calls `each` on every channel's text in a chat chunk, always in the
/// same order (so text taken out can be put back in its place).
fn chat_channels(chunk: &mut Value, each: &mut impl FnMut(Channel, &mut String)) {
    if let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) {
        for choice in choices {
            choice_channels(choice, each);
        }
    }
}

/// [`chat_channels`] for one choice.
fn choice_channels(choice: &mut Value, each: &mut impl FnMut(Channel, &mut String)) {
    let index = choice_index(choice);
    // Legacy completions carry the text on the choice itself.
    if let Some(Value::String(text)) = choice.get_mut("text") {
        each(Channel::Content(index), text);
    }
    let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(Value::String(text)) = delta.get_mut("content") {
        each(Channel::Content(index), text);
    }
    for key in ["reasoning_content", "reasoning"] {
        if let Some(Value::String(text)) = delta.get_mut(key) {
            each(Channel::Reasoning(index), text);
        }
    }
    if let Some(Value::String(text)) = delta.get_mut("refusal") {
        each(Channel::Refusal(index), text);
    }
    if let Some(Value::String(args)) = delta
        .get_mut("function_call")
        .and_then(|f| f.get_mut("arguments"))
    {
        each(Channel::FunctionArguments(index), args);
    }
    if let Some(calls) = delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
        for (position, call) in calls.iter_mut().enumerate() {
            let call_index = call
                .get("index")
                .and_then(Value::as_u64)
                .unwrap_or(position as u64);
            if let Some(Value::String(args)) = call.pointer_mut("/function/arguments") {
                each(Channel::ToolArguments(index, call_index), args);
            }
        }
    }
}

/// Appends released rests to a choice: content to `delta.content` (or the
/// legacy `text`), reasoning to `delta.reasoning_content`, arguments to
/// the tool call of that index (added if the chunk has none).
fn append_rests(choice: &mut Value, rests: Vec<(Channel, String)>) {
    for (channel, rest) in rests {
        match channel {
            Channel::Content(_) if choice.get("text").is_some_and(Value::is_string) => {
                append(choice, "text", &rest)
            }
            Channel::Content(_) => append(delta_of(choice), "content", &rest),
            Channel::Reasoning(_) => append(delta_of(choice), "reasoning_content", &rest),
            Channel::Refusal(_) => append(delta_of(choice), "refusal", &rest),
            Channel::FunctionArguments(_) => {
                let function = member(delta_of(choice), "function_call", Map::new().into());
                append(function, "arguments", &rest);
            }
            Channel::ToolArguments(_, call) => {
                let calls = member(delta_of(choice), "tool_calls", Value::Array(Vec::new()));
                if !calls.is_array() {
                    *calls = Value::Array(Vec::new());
                }
                let calls = calls.as_array_mut().expect("an array");
                let position = calls
                    .iter()
                    .position(|c| c.get("index").and_then(Value::as_u64) == Some(call));
                let entry = match position {
                    Some(p) => &mut calls[p],
                    None => {
                        calls.push(
                            serde_json::json!({"index": call, "function": {"arguments": ""}}),
                        );
                        calls.last_mut().expect("just pushed")
                    }
                };
                let function = member(entry, "function", Map::new().into());
                append(function, "arguments", &rest);
            }
            Channel::Block(_) | Channel::Part(..) => {}
        }
    }
}

/// The member `key` of an object, `empty` put there first if it is
/// missing (or the value is not an object: it becomes one).
fn member<'v>(object: &'v mut Value, key: &str, empty: Value) -> &'v mut Value {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    object
        .as_object_mut()
        .expect("made an object above")
        .entry(key)
        .or_insert(empty)
}

fn delta_of(choice: &mut Value) -> &mut Value {
    let delta = member(choice, "delta", Map::new().into());
    if !delta.is_object() {
        *delta = Value::Object(Map::new());
    }
    delta
}

/// Appends `rest` to the string at `key` of `object` (null or absent: set).
fn append(object: &mut Value, key: &str, rest: &str) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    match map.get_mut(key) {
        Some(Value::String(s)) => s.push_str(rest),
        _ => {
            map.insert(key.into(), Value::String(rest.into()));
        }
    }
}

/// An Anthropic Messages stream: named events (`message_start`,
/// `content_block_start`, `content_block_delta`, `content_block_stop`,
/// `message_delta`, `message_stop`, `ping`, `error`).
pub struct MessagesStream<'m> {
    channels: Channels<'m>,
    /// The delta type of each open block (`text_delta`,
    /// `input_json_delta`, `thinking_delta`), for the closing delta.
    delta_types: BTreeMap<u64, String>,
}

impl<'m> MessagesStream<'m> {
    pub fn new(masker: &'m Masker) -> Self {
        MessagesStream {
            channels: Channels::new(masker),
            delta_types: BTreeMap::new(),
        }
    }

    /// As [`ChatStream::restoring`].
    pub fn restoring(mut self, vault: &'m Vault) -> Self {
        self.channels.vault = Some(vault);
        self
    }

    /// Masks one event (`name`, its JSON `data`); returns the events to
    /// send in its place, in order (a block's held text goes out as one
    /// more delta before its `content_block_stop`).
    pub fn event(&mut self, name: &str, mut data: Value) -> Vec<(String, Value)> {
        // The SDKs read an event by its data's `type`: that is the name
        // this masks by, whatever the `event:` line said.
        let typed = data
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| name.to_string());
        let name = typed.as_str();
        let mut out = Vec::new();
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        // The block's text, taken out while the rest is masked whole.
        let mut piece: Option<(&'static str, String)> = None;
        match name {
            "content_block_delta" => {
                if let Some(delta) = data.get_mut("delta").and_then(Value::as_object_mut) {
                    let kind = delta
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let field = match kind.as_str() {
                        "text_delta" => Some("text"),
                        "input_json_delta" => Some("partial_json"),
                        "thinking_delta" => Some("thinking"),
                        _ => None,
                    };
                    if let Some(field) = field {
                        if let Some(Value::String(text)) = delta.get_mut(field) {
                            piece = Some((field, std::mem::take(text)));
                        }
                        self.delta_types.insert(index, kind);
                    }
                }
            }
            "content_block_stop" | "message_stop" => {
                let closing: Vec<u64> = if name == "message_stop" {
                    self.delta_types.keys().copied().collect()
                } else {
                    vec![index]
                };
                for i in closing {
                    let rest = self.channels.close(&Channel::Block(i));
                    let kind = self.delta_types.remove(&i).unwrap_or_default();
                    if let Some(delta) = closing_delta(i, &kind, rest) {
                        out.push(("content_block_delta".to_string(), delta));
                    }
                }
            }
            _ => {}
        }
        self.channels.whole(&mut data);
        if let Some((field, text)) = piece {
            let released = self.channels.push(Channel::Block(index), &text);
            data["delta"][field] = Value::String(released);
        }
        out.push((name.to_string(), data));
        out
    }

    /// The stream ended without `message_stop`: deltas with what the
    /// blocks still held.
    pub fn finish(&mut self) -> Vec<(String, Value)> {
        let open: Vec<u64> = self.delta_types.keys().copied().collect();
        open.into_iter()
            .filter_map(|i| {
                let rest = self.channels.close(&Channel::Block(i));
                let kind = self.delta_types.remove(&i).unwrap_or_default();
                closing_delta(i, &kind, rest).map(|d| ("content_block_delta".to_string(), d))
            })
            .collect()
    }

    pub fn found(&self) -> &Found {
        &self.channels.found
    }

    /// The text of the channels as masked, before restoring: what the
    /// model wrote, for the record.
    pub fn written(&self) -> &str {
        &self.channels.written
    }
}

/// A Responses API stream: typed events (`response.created`,
/// `response.output_text.delta`, `response.output_text.done`,
/// `response.function_call_arguments.delta`, `response.completed`, ...).
/// Every `.delta` event whose `delta` is text is a channel of its kind,
/// item and part, whatever the kind (reasoning summaries, refusals, kinds
/// added later); its `.done` event releases what the channel held as one
/// more `.delta` before it. Everything else, the `.done` texts and the
/// whole response of `response.completed` included, goes through the
/// whole-answer walk.
pub struct ResponsesStream<'m> {
    channels: Channels<'m>,
}

impl<'m> ResponsesStream<'m> {
    pub fn new(masker: &'m Masker) -> Self {
        ResponsesStream {
            channels: Channels::new(masker),
        }
    }

    /// As [`ChatStream::restoring`].
    pub fn restoring(mut self, vault: &'m Vault) -> Self {
        self.channels.vault = Some(vault);
        self
    }

    fn channel(kind: &str, data: &Value) -> Channel {
        let text = |k: &str| {
            data.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let num = |k: &str| data.get(k).and_then(Value::as_u64).unwrap_or(0);
        Channel::Part(
            kind.to_string(),
            text("item_id"),
            num("output_index"),
            num("content_index").max(num("summary_index")),
        )
    }

    /// Masks one event; returns the events to send in its place.
    pub fn event(&mut self, mut data: Value) -> Vec<Value> {
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut out = Vec::new();
        // A delta's text, taken out while the rest is masked whole.
        let mut piece = None;
        if let Some(prefix) = kind.strip_suffix(".delta") {
            let channel = Self::channel(prefix, &data);
            if let Some(Value::String(delta)) = data.get_mut("delta") {
                piece = Some((channel, std::mem::take(delta)));
            }
        } else if let Some(prefix) = kind.strip_suffix(".done") {
            let channel = Self::channel(prefix, &data);
            let rest = self.channels.close(&channel);
            if !rest.is_empty() {
                out.push(Self::rest_event(prefix, &data, rest));
            }
        }
        self.channels.whole(&mut data);
        if let Some((channel, text)) = piece {
            data["delta"] = Value::String(self.channels.push(channel, &text));
        }
        out.push(data);
        out
    }

    /// A `.delta` event with what a channel held, shaped like the event
    /// that closes it.
    fn rest_event(prefix: &str, like: &Value, rest: String) -> Value {
        let mut event = serde_json::Map::new();
        event.insert("type".into(), Value::from(format!("{prefix}.delta")));
        for key in [
            "item_id",
            "output_index",
            "content_index",
            "summary_index",
            "sequence_number",
        ] {
            if let Some(v) = like.get(key) {
                event.insert(key.into(), v.clone());
            }
        }
        event.insert("delta".into(), Value::from(rest));
        if prefix == "response.output_text" {
            event.insert("logprobs".into(), Value::Array(Vec::new()));
        }
        Value::Object(event)
    }

    /// The stream ended without the `.done` events: deltas with what the
    /// channels still held.
    pub fn finish(&mut self) -> Vec<Value> {
        let open: Vec<Channel> = self.channels.open.keys().cloned().collect();
        open.into_iter()
            .filter_map(|c| {
                let rest = self.channels.close(&c);
                match (&c, rest.is_empty()) {
                    (Channel::Part(prefix, item, output, part), false) => Some(Self::rest_event(
                        prefix,
                        &serde_json::json!({"item_id": item, "output_index": output, "content_index": part}),
                        rest,
                    )),
                    _ => None,
                }
            })
            .collect()
    }

    pub fn found(&self) -> &Found {
        &self.channels.found
    }

    /// The text of the channels as masked, before restoring: what the
    /// model wrote, for the record.
    pub fn written(&self) -> &str {
        &self.channels.written
    }
}

fn closing_delta(index: u64, kind: &str, rest: String) -> Option<Value> {
    if rest.is_empty() {
        return None;
    }
    let field = match kind {
        "input_json_delta" => "partial_json",
        "thinking_delta" => "thinking",
        _ => "text",
    };
    let kind = if kind.is_empty() { "text_delta" } else { kind };
    Some(serde_json::json!({
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": kind, field: rest},
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vigil_proxy_core::mask::DetectorConfig;

    use super::*;

    const SSN: &str = "123-45-6789";

    fn masker() -> Masker {
        Masker::new([3; 32], &DetectorConfig::default()).unwrap()
    }

    /// `text` cut into pieces of `size` bytes.
    fn pieces(text: &str, size: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let mut n = size.min(rest.len());
            while !rest.is_char_boundary(n) {
                n += 1;
            }
            out.push(rest[..n].to_string());
            rest = &rest[n..];
        }
        out
    }

    #[test]
    fn a_whole_answer_is_masked_but_its_ids_and_roles_are_not() {
        let m = masker();
        let mut body = json!({
            "id": "chatcmpl-555-123-4567",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": format!("SSN {SSN}"),
                "tool_calls": [{"id": "call_2023-04-05", "type": "function",
                    "function": {"name": "lookup", "arguments": format!("{{\"ssn\":\"{SSN}\"}}")}}]},
                "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7}
        });
        let mut found = Found::default();
        mask_whole(&m, &mut body, &mut found);
        let text = body.to_string();
        assert!(!text.contains(SSN), "{text}");
        assert_eq!(body["id"], "chatcmpl-555-123-4567");
        assert_eq!(
            body["choices"][0]["message"]["tool_calls"][0]["id"],
            "call_2023-04-05"
        );
        assert_eq!(body["choices"][0]["message"]["content"], "SSN [SSN]");
        assert_eq!(found.hits, 2);
        assert_eq!(found.kinds(), [DetectorKind::Ssn]);
    }

    #[test]
    fn what_the_model_writes_is_masked_wherever_it_is_and_logprobs_are_dropped() {
        let m = masker();
        let mut body = json!({
            "id": "msg_1", "type": "message", "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup",
                "input": {"id": SSN, "status": SSN, "notes": {"555-123-4567": "call"}}}],
            "choices": [{"index": 0, "logprobs": {"content": [{"token": "123", "bytes": [49, 50, 51]}]}}]
        });
        let mut found = Found::default();
        mask_whole(&m, &mut body, &mut found);
        let text = body.to_string();
        assert!(
            !text.contains(SSN) && !text.contains("555-123-4567"),
            "{text}"
        );
        assert_eq!(body["content"][0]["id"], "toolu_1");
        assert!(body["choices"][0]["logprobs"].is_null());
        assert_eq!(found.hits, 3);
    }

    #[test]
    fn a_responses_stream_masks_split_values_in_every_delta_kind() {
        let m = masker();
        let text = format!("Her SSN is {SSN} today.");
        for size in 1..6 {
            let mut stream = ResponsesStream::new(&m);
            let mut out = stream.event(json!({"type": "response.created", "sequence_number": 0,
                "response": {"id": "resp_1", "output": []}}));
            for (i, p) in pieces(&text, size).into_iter().enumerate() {
                out.extend(stream.event(
                    json!({"type": "response.output_text.delta", "item_id": "msg_1",
                    "output_index": 0, "content_index": 0, "delta": p, "sequence_number": i + 1}),
                ));
                out.extend(stream.event(json!({"type": "response.reasoning_summary_text.delta", "item_id": "rs_1",
                    "output_index": 1, "summary_index": 0, "delta": if i == 0 { "call 555-123-" } else if i == 1 { "4567 now" } else { "" }})));
            }
            out.extend(stream.event(
                json!({"type": "response.output_text.done", "item_id": "msg_1",
                "output_index": 0, "content_index": 0, "text": text, "sequence_number": 99}),
            ));
            out.extend(stream.finish());
            let joined = |kind: &str| -> String {
                out.iter()
                    .filter(|e| e["type"] == kind)
                    .map(|e| e["delta"].as_str().unwrap().to_string())
                    .collect()
            };
            assert_eq!(
                joined("response.output_text.delta"),
                "Her SSN is [SSN] today.",
                "size {size}"
            );
            assert_eq!(
                joined("response.reasoning_summary_text.delta"),
                "call [PHONE] now",
                "size {size}"
            );
            let done = out
                .iter()
                .find(|e| e["type"] == "response.output_text.done")
                .unwrap();
            assert_eq!(done["text"], "Her SSN is [SSN] today.");
            assert!(!serde_json::to_string(&out).unwrap().contains("6789"));
        }
    }

    fn chat_chunk(content: Option<&str>, args: Option<&str>, finish: Option<&str>) -> Value {
        let mut delta = json!({});
        if let Some(c) = content {
            delta["content"] = json!(c);
        }
        if let Some(a) = args {
            delta["tool_calls"] = json!([{"index": 0, "function": {"arguments": a}}]);
        }
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    }

    /// What an SDK accumulates from the chunks: content and arguments.
    fn accumulate(chunks: &[Value]) -> (String, String) {
        let (mut content, mut args) = (String::new(), String::new());
        for c in chunks {
            for choice in c["choices"].as_array().unwrap() {
                if let Some(t) = choice["delta"]["content"].as_str() {
                    content.push_str(t);
                }
                if let Some(calls) = choice["delta"]["tool_calls"].as_array() {
                    for call in calls {
                        if let Some(a) = call["function"]["arguments"].as_str() {
                            args.push_str(a);
                        }
                    }
                }
            }
        }
        (content, args)
    }

    #[test]
    fn a_value_split_across_chat_deltas_is_masked_and_every_chunk_kept() {
        let m = masker();
        let text = format!("The patient's SSN is {SSN}, email jane@example.org today.");
        let args = format!("{{\"ssn\": \"{SSN}\", \"note\": \"call 555-123-4567\"}}");
        for size in 1..9 {
            let mut stream = ChatStream::new(&m);
            let mut sent = Vec::new();
            let content_pieces = pieces(&text, size);
            let arg_pieces = pieces(&args, size);
            for p in &content_pieces {
                let mut c = chat_chunk(Some(p), None, None);
                stream.chunk(&mut c);
                sent.push(c);
            }
            for p in &arg_pieces {
                let mut c = chat_chunk(None, Some(p), None);
                stream.chunk(&mut c);
                sent.push(c);
            }
            let mut last = chat_chunk(None, None, Some("tool_calls"));
            stream.chunk(&mut last);
            sent.push(last);
            assert!(
                stream.finish().is_none(),
                "the finish reason released everything"
            );
            assert_eq!(sent.len(), content_pieces.len() + arg_pieces.len() + 1);
            let (content, arguments) = accumulate(&sent);
            assert_eq!(
                content, "The patient's SSN is [SSN], email [EMAIL] today.",
                "size {size}"
            );
            assert_eq!(
                arguments, "{\"ssn\": \"[SSN]\", \"note\": \"call [PHONE]\"}",
                "size {size}"
            );
            assert!(serde_json::from_str::<Value>(&arguments).is_ok());
            assert_eq!(stream.found().hits, 4);
        }
    }

    /// A vault holding the SSN and the email of a prompt.
    fn prompt_vault(m: &Masker) -> Vault {
        let mut vault = Vault::new();
        let mut prompt = json!({"messages": [{"role": "user",
            "content": format!("Patient {SSN}, jane@example.org")}]});
        mask_prompt_value(m, Some(&mut vault), &mut prompt, &mut Found::default()).unwrap();
        assert_eq!(
            prompt["messages"][0]["content"],
            "Patient [SSN_1], [EMAIL_2]"
        );
        vault
    }

    #[test]
    fn placeholders_come_back_for_the_caller_but_the_models_own_phi_is_masked() {
        let m = masker();
        let vault = prompt_vault(&m);
        // What the model writes: the placeholders, and a number of its own.
        let text = "Patient [SSN_1] ([EMAIL_2]) and 234-56-7890, not [SSN_3].";
        let restored = format!("Patient {SSN} (jane@example.org) and [SSN], not [SSN_3].");
        let args = "{\"ssn\": \"[SSN_1]\"}";
        for size in 1..10 {
            let mut stream = ChatStream::new(&m).restoring(&vault);
            let mut sent = Vec::new();
            for p in pieces(text, size) {
                let mut c = chat_chunk(Some(&p), None, None);
                stream.chunk(&mut c);
                sent.push(c);
            }
            for p in pieces(args, size) {
                let mut c = chat_chunk(None, Some(&p), None);
                stream.chunk(&mut c);
                sent.push(c);
            }
            let mut last = chat_chunk(None, None, Some("stop"));
            stream.chunk(&mut last);
            sent.push(last);
            let (content, arguments) = accumulate(&sent);
            assert_eq!(content, restored, "size {size}");
            assert_eq!(arguments, format!("{{\"ssn\": \"{SSN}\"}}"), "size {size}");
            assert_eq!(stream.found().restored, 3, "size {size}");
            assert_eq!(stream.found().hits, 1, "size {size}");
        }
        // A whole answer, and the Responses stream's closing text, alike.
        let mut body = json!({"choices": [{"message": {"content": text}}], "id": "[SSN_1]"});
        let mut found = Found::default();
        mask_whole(&m, &mut body, &mut found);
        restore_whole(&vault, &mut body, &mut found);
        assert_eq!(body["choices"][0]["message"]["content"], restored.as_str());
        assert_eq!(body["id"], "[SSN_1]", "structure is not restored");
        let mut stream = ResponsesStream::new(&m).restoring(&vault);
        let mut out = Vec::new();
        for p in pieces(text, 3) {
            out.extend(stream.event(json!({"type": "response.output_text.delta",
                "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": p})));
        }
        out.extend(stream.event(json!({"type": "response.output_text.done",
            "item_id": "msg_1", "output_index": 0, "content_index": 0, "text": text})));
        let deltas: String = out
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .map(|e| e["delta"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(deltas, restored);
        assert_eq!(out.last().unwrap()["text"], restored.as_str());
        // The record keeps the answer as the model wrote it.
        assert_eq!(
            stream.written(),
            "Patient [SSN_1] ([EMAIL_2]) and [SSN], not [SSN_3]."
        );
    }

    #[test]
    fn a_chat_stream_cut_short_releases_what_it_held_in_a_closing_chunk() {
        let m = masker();
        let mut stream = ChatStream::new(&m);
        let mut first = chat_chunk(Some("SSN 123-45-"), None, None);
        stream.chunk(&mut first);
        let mut second = chat_chunk(Some("6789"), None, None);
        stream.chunk(&mut second);
        let closing = stream.finish().expect("held text");
        let (content, _) = accumulate(&[first, second, closing.clone()]);
        assert_eq!(content, "SSN [SSN]");
        assert_eq!(closing["id"], "chatcmpl-1");
    }

    #[test]
    fn an_anthropic_stream_keeps_its_events_and_masks_split_values() {
        let m = masker();
        let text = format!("Her SSN is {SSN} and she was born April 5, 1980.");
        for size in 1..7 {
            let mut stream = MessagesStream::new(&m);
            let mut out = stream.event(
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_1", "role": "assistant", "content": [], "usage": {"input_tokens": 3}}}),
            );
            out.extend(stream.event(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            for p in pieces(&text, size) {
                out.extend(stream.event(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}),
                ));
            }
            out.extend(stream.event(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ));
            out.extend(stream.event("message_stop", json!({"type": "message_stop"})));
            let joined: String = out
                .iter()
                .filter(|(n, _)| n == "content_block_delta")
                .map(|(_, d)| d["delta"]["text"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(
                joined, "Her SSN is [SSN] and she was born [DATE].",
                "size {size}"
            );
            let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names.first(), Some(&"message_start"));
            assert_eq!(
                &names[names.len() - 2..],
                ["content_block_stop", "message_stop"]
            );
            // Every delta names its block and type, as the SDK requires.
            assert!(out
                .iter()
                .filter(|(n, _)| n == "content_block_delta")
                .all(|(_, d)| d["index"] == 0 && d["delta"]["type"] == "text_delta"));
        }
    }
}
