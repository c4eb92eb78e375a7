//! Evidence quotes for AIP concerns: the host keeps at most [`MAX_CHARS`] characters of a
//! concern's `evidence`, so policies cut it themselves, on a character boundary, and choose what
//! survives instead of having the host cut a quote in the middle of a multi-byte character.

/// The most characters (Unicode scalar values, not bytes) the host keeps of a concern's evidence.
pub const MAX_CHARS: usize = 200;

/// The longest prefix of `text` with at most `max` characters. Never splits a character.
pub fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Evidence ready for a concern: `text` trimmed, with every run of whitespace (newlines
/// included) collapsed into one space, cut to [`MAX_CHARS`] characters.
pub fn evidence(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_CHARS * 4));
    let mut chars = 0;
    for word in text.split_whitespace() {
        let needed = word.chars().count() + usize::from(!out.is_empty());
        if chars + needed > MAX_CHARS {
            if !out.is_empty() && chars < MAX_CHARS {
                out.push(' ');
                chars += 1;
            }
            out.push_str(truncate_chars(word, MAX_CHARS - chars));
            // A trailing space left by a word that did not fit at all is not worth keeping.
            let trimmed = out.trim_end().len();
            out.truncate(trimmed);
            return out;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        chars += needed;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate_chars("hello", 10), "hello");
        assert_eq!(truncate_chars("hello", 5), "hello");
        assert_eq!(truncate_chars("hello", 2), "he");
        assert_eq!(truncate_chars("hello", 0), "");
        // Multi-byte characters count once and are never split.
        assert_eq!(truncate_chars("héllo wörld", 7), "héllo w");
        assert_eq!(truncate_chars("日本語テキスト", 3), "日本語");
        assert_eq!(truncate_chars("🦀🦀🦀", 2), "🦀🦀");
    }

    #[test]
    fn evidence_collapses_whitespace_and_caps_length() {
        assert_eq!(evidence("  rm   -rf\n\t/  "), "rm -rf /");
        assert_eq!(evidence(""), "");
        let long = "é".repeat(150) + " " + &"x".repeat(100);
        let cut = evidence(&long);
        assert_eq!(cut.chars().count(), MAX_CHARS);
        assert!(cut.starts_with(&"é".repeat(150)));
        assert!(cut.ends_with(&format!(" {}", "x".repeat(49))));
        // Exactly MAX_CHARS characters pass unchanged.
        let exact = "a".repeat(MAX_CHARS);
        assert_eq!(evidence(&exact), exact);
        // A word that would start exactly at the limit leaves no trailing space.
        let edge = format!("{} tail", "b".repeat(MAX_CHARS - 1));
        assert_eq!(evidence(&edge), "b".repeat(MAX_CHARS - 1));
        // A single overlong word is cut.
        assert_eq!(evidence(&"🦀".repeat(300)).chars().count(), MAX_CHARS);
    }
}
