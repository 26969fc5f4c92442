//! Keeping text a client sent (or an upstream answered) short enough to
//! echo: a 1 MB attribute must not become a 1 MB answer, trailer, log line
//! or status page. Cuts fall on character boundaries, so the result is
//! valid UTF-8, and say how much was left out.

use std::borrow::Cow;

/// How many bytes of one offending value a reason quotes.
pub const QUOTE_BYTES: usize = 64;

/// The most bytes of reason an answer carries (HTTP body, gRPC message).
pub const REASON_BYTES: usize = 1024;

/// `text` as is when it is at most `max` bytes; otherwise its first bytes
/// up to `max` (cut at a character boundary) followed by
/// `… (N more bytes)`. Control characters (a newline in a reason, an
/// escape sequence in an upstream answer) become spaces either way, so
/// the result is one printable line.
///
/// ```
/// use connector_sdk::shorten;
/// assert_eq!(shorten("text", 64), "text");
/// assert_eq!(shorten(&"x".repeat(100), 8), "xxxxxxxx… (92 more bytes)");
/// assert_eq!(shorten("a\nb", 64), "a b");
/// ```
pub fn shorten(text: &str, max: usize) -> Cow<'_, str> {
    let cut = if text.len() <= max {
        text
    } else {
        &text[..floor_char_boundary(text, max)]
    };
    let kept = if cut.chars().any(char::is_control) {
        Cow::Owned(
            cut.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(cut)
    };
    if cut.len() == text.len() {
        kept
    } else {
        Cow::Owned(format!("{kept}… ({} more bytes)", text.len() - cut.len()))
    }
}

/// The same for bytes that may not be UTF-8 (the start of an upstream's
/// answer): invalid sequences become `�`.
#[allow(
    dead_code,
    reason = "no caller since the sink shortens DingTalk's answers itself; for the delivery kit, which reads destinations' answers"
)]
pub(crate) fn shorten_bytes(bytes: &[u8], max: usize) -> String {
    let mut end = bytes.len().min(max);
    // A multi-byte character cut in two at `max` is not the sender's fault:
    // leave it out rather than show it as garbage.
    if let Err(err) = std::str::from_utf8(&bytes[..end])
        && err.error_len().is_none()
    {
        end = err.valid_up_to();
    }
    let shown = String::from_utf8_lossy(&bytes[..end]);
    let shown = shorten(&shown, usize::MAX);
    match bytes.len() - end {
        0 => shown.into_owned(),
        omitted => format!("{shown}… ({omitted} more bytes)"),
    }
}

/// The largest index at most `index` that is a character boundary of
/// `text` (`str::floor_char_boundary` is not stable yet).
fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_borrowed_and_unchanged() {
        assert!(matches!(shorten("hello", 5), Cow::Borrowed("hello")));
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary_and_says_so() {
        // "é" is two bytes: a cut at 3 would split the second one.
        let cut = shorten("éé-tail", 3);
        assert_eq!(cut, "é… (7 more bytes)");
        let big = "x".repeat(1_000_000);
        assert!(shorten(&big, QUOTE_BYTES).len() < 100);
    }

    #[test]
    fn control_characters_become_spaces() {
        assert_eq!(shorten("a\r\nb\u{1b}[31m", 64), "a  b [31m");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_shown_lossily() {
        assert_eq!(shorten_bytes(b"ok\xff", 64), "ok\u{fffd}");
        assert_eq!(
            shorten_bytes(b"<html>body</html>", 6),
            "<html>… (11 more bytes)"
        );
        // A character cut by the limit is dropped, not shown as garbage.
        let text = "aé".as_bytes();
        assert_eq!(shorten_bytes(text, 2), "a… (2 more bytes)");
    }
}
