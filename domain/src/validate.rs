//! Checks on the free text commands carry: names, topics, reasons, messages, emoji, and the
//! base URLs of peer hubs. Each returns the value to store (trimmed) or an `InvalidInput`
//! naming the field.
//!
//! Names (of guilds, channels, categories, roles, nicknames, service tokens) must read as
//! typed: they refuse Unicode's format characters (bidi controls such as U+202E, zero-width
//! spaces, the soft hyphen) and must have a character that shows. Free text (messages,
//! topics, reasons) keeps them: people write right-to-left and mixed-direction text, and a
//! message is shown with its author, so it is no identity to forge.

use crate::error::DomainError;

/// Text of 1 to `max` characters, trimmed, without control characters (newlines and tabs
/// allowed).
pub fn text(field: &'static str, value: &str, max: usize) -> Result<String, DomainError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    text_or_empty(field, trimmed, max)
}

/// Like [`text`], but empty is allowed.
pub fn text_or_empty(field: &'static str, value: &str, max: usize) -> Result<String, DomainError> {
    let trimmed = value.trim();
    let count = trimmed.chars().count();
    if count > max {
        return Err(DomainError::invalid(field, format!("must be at most {max} characters (got {count})")));
    }
    if trimmed.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(DomainError::invalid(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

/// A guild, role or category name: 1 to 100 characters on one line that read as typed.
pub fn name(field: &'static str, value: &str) -> Result<String, DomainError> {
    label(field, value, 100)
}

/// A nickname: a name of 1 to 32 characters.
pub fn nickname(value: &str) -> Result<String, DomainError> {
    label("nickname", value, 32)
}

/// A channel name: 1 to 100 characters, no whitespace except single spaces.
pub fn channel_name(value: &str) -> Result<String, DomainError> {
    let name = name("name", value)?;
    if name.contains("  ") {
        return Err(DomainError::invalid("name", "must not contain runs of spaces"));
    }
    Ok(name)
}

/// A moderator's reason: up to 512 characters, may be empty.
pub fn reason(value: &str) -> Result<String, DomainError> {
    text_or_empty("reason", value, 512)
}

/// A message: 1 to 4000 characters. Bidi controls and zero-width characters are allowed.
pub fn message(value: &str) -> Result<String, DomainError> {
    text("body", value, 4000)
}

/// A reaction: 1 to 64 bytes with no whitespace or control characters (a Unicode emoji or a
/// `:custom_name:`).
pub fn emoji(value: &str) -> Result<String, DomainError> {
    if value.is_empty() || value.len() > 64 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(DomainError::invalid("emoji", "must be 1 to 64 bytes without spaces"));
    }
    Ok(value.to_owned())
}

/// The longest peer URL accepted.
const MAX_PEER_URL: usize = 2048;

/// What a peer URL may be, as refusals say it.
pub const PEER_URL_RULE: &str =
    "a peer URL is https://HOST[:PORT][/PATH]; http:// is accepted only to loopback (127.0.0.1, localhost, [::1])";

/// A peer hub's base URL (`https://hub-b.example`), without a trailing `/`. Plain HTTP is
/// taken only to loopback, where tests run: over plain HTTP to another machine, anyone on
/// the path could serve their own key document in the peer's name. The URL carries no user
/// name, password, query or fragment, since requests are made by appending paths to it.
/// One rule for the configuration (`federation::peers`) and `hub.peer_allowed` events.
pub fn peer_url(field: &'static str, value: &str) -> Result<String, DomainError> {
    let shown = value.trim();
    let refuse = |why: String| Err(DomainError::invalid(field, format!("{why}; {PEER_URL_RULE}")));
    if shown.chars().count() > MAX_PEER_URL {
        return refuse(format!("the URL is longer than {MAX_PEER_URL} characters"));
    }
    if shown.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse(format!("the URL {shown:?} contains spaces or control characters"));
    }
    let (plain, rest) = match (shown.strip_prefix("https://"), shown.strip_prefix("http://")) {
        (Some(rest), _) => (false, rest),
        (None, Some(rest)) => (true, rest),
        (None, None) => return refuse(format!("the URL {shown:?} must start with https://")),
    };
    if shown.contains(['?', '#']) {
        return refuse(format!("the URL {shown:?} has a query or fragment"));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return refuse(format!("the URL {shown:?} carries a user name or password"));
    }
    // The host, without the port: an IPv6 address keeps its brackets.
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').and_then(|(ip, _)| authority.get(..ip.len() + 2)).unwrap_or(authority),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return refuse(format!("the URL {shown:?} names no host"));
    }
    if plain && !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        return Err(DomainError::invalid(
            field,
            format!(
                "the URL {shown:?} is plain HTTP to another machine; use https:// (http:// is for loopback only: \
                 127.0.0.1, localhost, [::1])"
            ),
        ));
    }
    Ok(shown.trim_end_matches('/').to_owned())
}

/// Any name: 1 to `max` characters on one line, with a character that shows and no format
/// character but the joiners a script or an emoji sequence needs.
fn label(field: &'static str, value: &str, max: usize) -> Result<String, DomainError> {
    let name = text(field, value, max)?;
    // U+2028 and U+2029 are Unicode's own line and paragraph separators.
    if name.contains(['\n', '\t', '\u{2028}', '\u{2029}']) {
        return Err(DomainError::invalid(field, "must be on one line"));
    }
    if !name.chars().any(shows) {
        let blanks = code_points(name.chars());
        let verb = if blanks.contains(',') { "show" } else { "shows" };
        return Err(DomainError::invalid(
            field,
            format!("must contain a visible character; {blanks} {verb} as nothing"),
        ));
    }
    let chars: Vec<char> = name.chars().collect();
    let hidden = chars.iter().enumerate().filter(|&(i, c)| is_format(*c) && !joins(&chars, i)).map(|(_, c)| *c);
    let hidden = code_points(hidden);
    if !hidden.is_empty() {
        return Err(DomainError::invalid(
            field,
            format!(
                "must not contain invisible or direction-changing characters ({hidden}); type the {field} as it \
                 should read"
            ),
        ));
    }
    Ok(name)
}

/// The distinct characters, in order, as `U+XXXX` (at most four, then `…`).
fn code_points(chars: impl Iterator<Item = char>) -> String {
    let mut seen: Vec<char> = Vec::new();
    for c in chars {
        if !seen.contains(&c) {
            seen.push(c);
        }
    }
    let mut list: Vec<String> = seen.iter().take(4).map(|c| format!("U+{:04X}", u32::from(*c))).collect();
    if seen.len() > 4 {
        list.push("…".into());
    }
    list.join(", ")
}

/// Unicode's format characters (general category Cf, Unicode 15.1): bidi controls, zero-width
/// spaces and joiners, the soft hyphen, the byte order mark, tags, invisible operators.
/// None of them shows by itself; bidi controls reorder what follows them.
const FORMAT: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{0600}', '\u{0605}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{180E}', '\u{180E}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{2064}'),
    ('\u{2066}', '\u{206F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFF9}', '\u{FFFB}'),
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0001}', '\u{E0001}'),
    ('\u{E0020}', '\u{E007F}'),
];

/// Characters of other categories that show as nothing: the Hangul fillers, the blank
/// braille pattern, the combining grapheme joiner, variation selectors (which only choose how
/// the character before them looks), Mongolian variation selectors and Khmer inherent vowels.
const BLANK: &[(char, char)] = &[
    ('\u{034F}', '\u{034F}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180D}'),
    ('\u{180F}', '\u{180F}'),
    ('\u{2800}', '\u{2800}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{E0100}', '\u{E01EF}'),
];

const ZWNJ: char = '\u{200C}';
const ZWJ: char = '\u{200D}';
const EMOJI_PRESENTATION: char = '\u{FE0F}';

fn within(table: &[(char, char)], c: char) -> bool {
    table.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c))
}

fn is_format(c: char) -> bool {
    within(FORMAT, c)
}

/// Whether `c` shows by itself.
fn shows(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !is_format(c) && !within(BLANK, c)
}

/// Whether the format character at `i` is a joiner that the characters on both sides use:
/// U+200D in an emoji sequence (👩‍💻, 🏳️‍🌈), U+200C or U+200D between letters of a script
/// that spells with them (Persian می‌خواهم, Indic conjuncts). Anywhere else a joiner only hides
/// (`Mod\u{200D}erator` reads as `Moderator`), so it is refused like any format character.
fn joins(chars: &[char], i: usize) -> bool {
    let Some(&c) = chars.get(i) else { return false };
    let (Some(&before), Some(&after)) = (i.checked_sub(1).and_then(|p| chars.get(p)), chars.get(i + 1)) else {
        return false;
    };
    match c {
        ZWJ if pictograph(after) && (pictograph(before) || before == EMOJI_PRESENTATION) => true,
        ZWNJ | ZWJ => joining_script(before) && joining_script(after),
        _ => false,
    }
}

/// Pictographs that emoji sequences join: the emoji blocks, miscellaneous symbols and
/// dingbats (❤, ⚕, ♀), and the geometric shapes some sequences use (🐈‍⬛).
fn pictograph(c: char) -> bool {
    matches!(c, '\u{1F000}'..='\u{1FAFF}' | '\u{2600}'..='\u{27BF}' | '\u{2B00}'..='\u{2BFF}')
}

/// Scripts whose spelling uses U+200C and U+200D: Arabic (and Persian, Urdu), Syriac, N'Ko,
/// the Indic scripts and Mongolian.
fn joining_script(c: char) -> bool {
    matches!(c,
        '\u{0600}'..='\u{06FF}'
        | '\u{0700}'..='\u{074F}'
        | '\u{0750}'..='\u{077F}'
        | '\u{07C0}'..='\u{07FF}'
        | '\u{0870}'..='\u{08FF}'
        | '\u{0900}'..='\u{0DFF}'
        | '\u{1800}'..='\u{18AF}'
        | '\u{A8E0}'..='\u{A8FF}'
        | '\u{FB50}'..='\u{FDFF}'
        | '\u{FE70}'..='\u{FEFC}'
    ) && !is_format(c)
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;

    fn check(value: &str, expect: Expect) {
        let outcome = match name("name", value) {
            Ok(name) => format!("ok {name:?}"),
            Err(e) => e.to_string(),
        };
        expect.assert_eq(&outcome);
    }

    #[test]
    fn names_refuse_bidi_controls() {
        check(
            "Bank\u{202E}txt.exe",
            expect![[
                r#"invalid name: must not contain invisible or direction-changing characters (U+202E); type the name as it should read"#
            ]],
        );
        check(
            "\u{202D}abc\u{202C}",
            expect![[
                r#"invalid name: must not contain invisible or direction-changing characters (U+202D, U+202C); type the name as it should read"#
            ]],
        );
        check(
            "a\u{2067}b\u{2069}c\u{061C}d\u{200E}e\u{202A}",
            expect![[
                r#"invalid name: must not contain invisible or direction-changing characters (U+2067, U+2069, U+061C, U+200E, …); type the name as it should read"#
            ]],
        );
    }

    #[test]
    fn names_refuse_zero_width_and_other_format_characters() {
        check(
            "ad\u{200B}min",
            expect![[
                r#"invalid name: must not contain invisible or direction-changing characters (U+200B); type the name as it should read"#
            ]],
        );
        check(
            "soft\u{00AD}hyphen",
            expect![[
                r#"invalid name: must not contain invisible or direction-changing characters (U+00AD); type the name as it should read"#
            ]],
        );
        check(
            "\u{FEFF}bom",
            expect![[
                r#"invalid name: must not contain invisible or direction-changing characters (U+FEFF); type the name as it should read"#
            ]],
        );
        check(
            "mongolian\u{180E}space",
            expect![[
                r#"invalid name: must not contain invisible or direction-changing characters (U+180E); type the name as it should read"#
            ]],
        );
        check(
            "word\u{2060}joiner",
            expect![[
                r#"invalid name: must not contain invisible or direction-changing characters (U+2060); type the name as it should read"#
            ]],
        );
        // Tag characters spell hidden ASCII text, so even a flag's tag sequence is refused.
        check(
            "flag 🏴\u{E0067}\u{E0062}\u{E007F}",
            expect![[
                r#"invalid name: must not contain invisible or direction-changing characters (U+E0067, U+E0062, U+E007F); type the name as it should read"#
            ]],
        );
    }

    #[test]
    fn names_refuse_joiners_that_join_nothing() {
        check(
            "Mod\u{200D}erator",
            expect![[
                r#"invalid name: must not contain invisible or direction-changing characters (U+200D); type the name as it should read"#
            ]],
        );
        check(
            "👩\u{200D}",
            expect![[
                r#"invalid name: must not contain invisible or direction-changing characters (U+200D); type the name as it should read"#
            ]],
        );
        check(
            "\u{200C}می",
            expect![[
                r#"invalid name: must not contain invisible or direction-changing characters (U+200C); type the name as it should read"#
            ]],
        );
        check(
            "a\u{200D}👩",
            expect![[
                r#"invalid name: must not contain invisible or direction-changing characters (U+200D); type the name as it should read"#
            ]],
        );
        check(
            "👩\u{200C}💻",
            expect![[
                r#"invalid name: must not contain invisible or direction-changing characters (U+200C); type the name as it should read"#
            ]],
        );
    }

    #[test]
    fn names_refuse_what_shows_nothing() {
        check("\u{200B}", expect!["invalid name: must contain a visible character; U+200B shows as nothing"]);
        check("\u{3164}\u{3164}", expect!["invalid name: must contain a visible character; U+3164 shows as nothing"]);
        check(
            "\u{115F} \u{1160}",
            expect!["invalid name: must contain a visible character; U+115F, U+0020, U+1160 show as nothing"],
        );
        check("\u{2800}", expect!["invalid name: must contain a visible character; U+2800 shows as nothing"]);
        check(
            "\u{FFA0}\u{FE0F}",
            expect!["invalid name: must contain a visible character; U+FFA0, U+FE0F show as nothing"],
        );
        check(" \u{00A0}\u{3000} ", expect!["invalid name: must not be empty"]);
    }

    #[test]
    fn names_keep_what_reads_as_typed() {
        check("general", expect![[r#"ok "general""#]]);
        check("  Café Ωμέγα 中文  ", expect![[r#"ok "Café Ωμέγα 中文""#]]);
        check("مرحبا بالعالم", expect![[r#"ok "مرحبا بالعالم""#]]);
        check("שלום world", expect![[r#"ok "שלום world""#]]);
        check("می\u{200C}خواهم", expect![[r#"ok "می\u{200c}خواهم""#]]);
        check("क्\u{200D}ष", expect![[r#"ok "क\u{94d}\u{200d}ष""#]]);
        check("👩\u{200D}💻 devs", expect![[r#"ok "👩\u{200d}💻 devs""#]]);
        check("❤\u{FE0F}\u{200D}🔥", expect![[r#"ok "❤\u{fe0f}\u{200d}🔥""#]]);
        check("👍🏽 ok", expect![[r#"ok "👍🏽 ok""#]]);
    }

    #[test]
    fn nicknames_are_names() {
        expect![[r#"Err(InvalidInput { field: "nickname", reason: "must not contain invisible or direction-changing characters (U+202E); type the nickname as it should read" })"#]]
            .assert_eq(&format!("{:?}", nickname("\u{202E}nimda")));
        expect![[r#"Err(InvalidInput { field: "nickname", reason: "must be on one line" })"#]]
            .assert_eq(&format!("{:?}", nickname("two\nlines")));
        expect![[r#"Err(InvalidInput { field: "nickname", reason: "must be on one line" })"#]]
            .assert_eq(&format!("{:?}", nickname("two\u{2028}lines")));
        expect![[r#"Ok("Bobby")"#]].assert_eq(&format!("{:?}", nickname(" Bobby ")));
    }

    #[test]
    fn free_text_keeps_direction_marks() {
        expect![[r#"Ok("\u{2067}שלום\u{2069} \u{200f}!")"#]]
            .assert_eq(&format!("{:?}", message("\u{2067}שלום\u{2069} \u{200F}!")));
        expect![[r#"Ok("a\u{202e}b")"#]].assert_eq(&format!("{:?}", reason("a\u{202E}b")));
    }
}
