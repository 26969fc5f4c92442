//! Making a message fit DingTalk's 20,000-byte body limit: the text is cut
//! at a character boundary and ends with a visible marker, so readers know
//! something is missing instead of DingTalk refusing the whole message.
//!
//! Sizes are counted as they go over the wire: JSON-escaped UTF-8 bytes.

/// The marker ending a cut text.
pub fn marker(omitted_bytes: usize) -> String {
    format!("… (truncated, {omitted_bytes} bytes omitted)")
}

/// Cuts `text` so that `text + suffix`, JSON-escaped, shrinks by at least
/// `excess` bytes once the marker is added; `suffix` (e.g. mention tokens)
/// is kept whole. `None` when even an empty text would not free enough.
pub fn shrink(text: &str, suffix: &str, excess: usize) -> Option<String> {
    // The marker can only be shorter than this (omitted <= text.len()).
    let longest_marker = json_len(&marker(text.len()));
    let target = json_len(text)
        .checked_sub(excess)?
        .checked_sub(longest_marker)?;
    let mut kept_json = 0;
    let mut cut_at = 0;
    for (at, ch) in text.char_indices() {
        kept_json += escaped_len(ch);
        if kept_json > target {
            break;
        }
        cut_at = at + ch.len_utf8();
    }
    let omitted = text.len() - cut_at;
    Some(format!("{}{}{suffix}", &text[..cut_at], marker(omitted)))
}

/// The length of `text` inside a JSON string, as serde_json writes it.
pub fn json_len(text: &str) -> usize {
    text.chars().map(escaped_len).sum()
}

fn escaped_len(ch: char) -> usize {
    match ch {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{08}' | '\u{0c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_len_matches_serde_json() {
        let samples = [
            "plain",
            "quote\" back\\slash",
            "tab\tnew\nline\r",
            "\u{01}\u{1f}ctl",
            "中文 and émoji 🎉",
            "",
        ];
        for s in samples {
            let serialized = serde_json::to_string(s).expect("serializes");
            assert_eq!(json_len(s), serialized.len() - 2, "{s:?}");
        }
    }

    #[test]
    fn shrinks_by_at_least_the_excess_and_keeps_the_suffix() {
        let text = "钉钉".repeat(1_000) + "\"quoted\"\n";
        for excess in [1, 100, 2_999] {
            let cut = shrink(&text, "\n\n@123", excess).expect("fits");
            assert!(
                json_len(&text) + json_len("\n\n@123") - json_len(&cut) >= excess,
                "{excess}"
            );
            assert!(cut.ends_with("bytes omitted)\n\n@123"), "{cut}");
            assert!(cut.starts_with("钉"), "cut at a character boundary");
        }
    }

    #[test]
    fn the_marker_counts_what_was_omitted() {
        let text = "a".repeat(1_000);
        let cut = shrink(&text, "", 500).expect("fits");
        let kept = cut.find('…').expect("marker");
        assert_eq!(cut[kept..], marker(1_000 - kept));
    }

    #[test]
    fn an_excess_larger_than_the_text_cannot_be_absorbed() {
        assert_eq!(shrink("short", "", 100), None);
    }
}
