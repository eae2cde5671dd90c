//! Text the agent (or anyone but Vigil) controls, made safe for the two
//! places approvers read it: a terminal and a Slack message.
//!
//! A held statement keeps its identifiers (only literals are masked), and a
//! quoted identifier can hold any character: an agent that writes
//! `"\x1b[2J..."` could clear an approver's screen and paint a different
//! statement, or a vote that never happened; `<!channel>` or
//! `<https://...|Approve here>` would ping a channel or dress a link as a
//! button in Slack. Requester names, rule names, reasons and approver names
//! reach the same places. Every function here is pure and total, so every
//! caller escapes the same way and the table tests below cover them all.
//!
//! Characters are rendered visibly rather than dropped: dropping would let
//! `DROP\u{200b}TABLE` read as something it is not, and an approver should
//! see that something odd was there.

/// Whether `c` must not reach a terminal or a chat message as itself: it
/// moves the cursor, starts an escape sequence, reorders the text around it
/// or is invisible.
pub fn is_unsafe_char(c: char) -> bool {
    matches!(c,
        // C0 controls (ESC, CR, LF, BS, ...), DEL and C1 controls (CSI is
        // U+009B on terminals that take 8-bit controls).
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        // Unicode's format characters (general category Cf, Unicode 15.1):
        // soft hyphen, Arabic number signs, ALM, zero-width space/joiners,
        // LRM/RLM, bidi embeddings and overrides (U+202A-202E), word
        // joiner and invisible operators, bidi isolates (U+2066-2069) and
        // the deprecated format controls after them, BOM, interlinear
        // annotation, and the tag characters (invisible ASCII, used to
        // smuggle text past readers).
        | '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}'
        | '\u{890}'..='\u{891}' | '\u{8e2}' | '\u{180e}' | '\u{200b}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206f}'
        | '\u{feff}' | '\u{fff9}'..='\u{fffb}' | '\u{110bd}' | '\u{110cd}'
        | '\u{13430}'..='\u{1343f}' | '\u{1bca0}'..='\u{1bca3}' | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0001}' | '\u{e0020}'..='\u{e007f}'
        // Line and paragraph separators (some renderers break lines there).
        | '\u{2028}' | '\u{2029}'
        // Invisible characters of other categories: the combining grapheme
        // joiner and the Hangul fillers, which render as nothing.
        | '\u{34f}' | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}'
    )
}

/// `s` with every [`is_unsafe_char`] written out as an escape a reader can
/// see: `\n`, `\r`, `\t`, `\x1b` (other C0 controls and DEL), `\u{202e}`
/// (everything else). The result holds no control, format or invisible
/// character, so printing it cannot move a cursor or reorder a line.
pub fn terminal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c <= '\u{7f}' && is_unsafe_char(c) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if is_unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// What stands in for a backtick inside Slack code: U+02CB MODIFIER LETTER
/// GRAVE ACCENT looks alike and closes nothing.
pub const BACKTICK_STAND_IN: char = '\u{2cb}';

/// `s` for the inside of a Slack code span or code block: visible escapes
/// as for a terminal, then Slack's own escaping (`&` `<` `>` as `&amp;`
/// `&lt;` `&gt;`, the documented rule, so `<!channel>` and `<url|label>`
/// show as text), and backticks replaced so the span cannot be closed from
/// inside. Code is where Slack formats nothing (`*`, `_`, `~` stay as they
/// are), so with its delimiters out of reach the text stays inert.
pub fn slack_code_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in terminal(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '`' => out.push(BACKTICK_STAND_IN),
            c => out.push(c),
        }
    }
    out
}

/// `s` as an inline Slack code span (`` `...` ``).
pub fn slack_inline(s: &str) -> String {
    format!("`{}`", slack_code_text(s))
}

/// `s` as a Slack code block (```` ```...``` ````), on lines of its own.
pub fn slack_block(s: &str) -> String {
    format!("```{}```", slack_code_text(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_renders_every_dangerous_character_visibly() {
        for (input, expected) in [
            ("SELECT 1", "SELECT 1"),
            ("", ""),
            ("a\x1b[2Jb", "a\\x1b[2Jb"),
            ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
            ("line\r\nnext\tcol", "line\\r\\nnext\\tcol"),
            ("\0\x08\x7f", "\\x00\\x08\\x7f"),
            ("\u{9b}31m", "\\u{9b}31m"),
            ("\u{85}", "\\u{85}"),
            ("abc\u{202e}fed", "abc\\u{202e}fed"),
            (
                "\u{202a}\u{202b}\u{202c}\u{202d}",
                "\\u{202a}\\u{202b}\\u{202c}\\u{202d}",
            ),
            (
                "\u{2066}\u{2067}\u{2068}\u{2069}",
                "\\u{2066}\\u{2067}\\u{2068}\\u{2069}",
            ),
            ("\u{200e}\u{200f}\u{61c}", "\\u{200e}\\u{200f}\\u{61c}"),
            ("DROP\u{200b}TABLE", "DROP\\u{200b}TABLE"),
            (
                "\u{200c}\u{200d}\u{2060}\u{feff}",
                "\\u{200c}\\u{200d}\\u{2060}\\u{feff}",
            ),
            ("\u{2028}\u{2029}", "\\u{2028}\\u{2029}"),
            ("tag\u{e0041}", "tag\\u{e0041}"),
            ("\u{ad}\u{34f}\u{3164}", "\\u{ad}\\u{34f}\\u{3164}"),
            // Ordinary text of any script, and what Slack cares about, is
            // left alone here.
            ("müller ñ 患者 مريض", "müller ñ 患者 مريض"),
            ("<!channel> `x` & *y*", "<!channel> `x` & *y*"),
            ("a\\x1b", "a\\x1b"),
        ] {
            assert_eq!(terminal(input), expected, "{input:?}");
        }
    }

    #[test]
    fn terminal_output_never_holds_an_unsafe_character() {
        // Every code point of the planes that hold the listed ones.
        let all: String = (0u32..0x3_0000)
            .chain(0xe_0000..0xe_0100)
            .filter_map(char::from_u32)
            .collect();
        let out = terminal(&all);
        assert!(!out.chars().any(is_unsafe_char));
        assert!(!out.chars().any(char::is_control));
    }

    #[test]
    fn slack_code_text_escapes_slack_syntax_and_cannot_close_the_code() {
        for (input, expected) in [
            ("SELECT * FROM t", "SELECT * FROM t"),
            ("<!channel>", "&lt;!channel&gt;"),
            ("<!here|here> <@U123>", "&lt;!here|here&gt; &lt;@U123&gt;"),
            (
                "<https://evil.example|Approve here>",
                "&lt;https://evil.example|Approve here&gt;",
            ),
            ("a && b", "a &amp;&amp; b"),
            ("&lt;!channel&gt;", "&amp;lt;!channel&amp;gt;"),
            ("x```\n*Approved*```y", "xˋˋˋ\\n*Approved*ˋˋˋy"),
            ("`", "ˋ"),
            ("\x1b[2J\u{202e}", "\\x1b[2J\\u{202e}"),
        ] {
            assert_eq!(slack_code_text(input), expected, "{input:?}");
        }
    }

    #[test]
    fn slack_spans_hold_exactly_their_own_delimiters() {
        let hostile = "x` <!channel> ```y``` \n\u{202e}";
        let inline = slack_inline(hostile);
        assert_eq!(inline.matches('`').count(), 2, "{inline}");
        assert!(inline.starts_with('`') && inline.ends_with('`'));
        let block = slack_block(hostile);
        assert_eq!(block.matches('`').count(), 6, "{block}");
        assert!(block.starts_with("```") && block.ends_with("```"));
        for s in [&inline, &block] {
            assert!(!s.contains(['<', '>', '\n']), "{s}");
            assert!(!s.chars().any(is_unsafe_char), "{s}");
        }
    }
}
