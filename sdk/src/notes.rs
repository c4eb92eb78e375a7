//! Formatting of the gateway's system notes (AIP conscience nudges) before an adapter places
//! them into a provider's system prompt.

/// Joins system notes into one block of text, oldest first, separated by blank lines.
/// Returns `None` when there is nothing to add.
pub fn join(notes: &[String]) -> Option<String> {
    let parts: Vec<&str> = notes
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("\n\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_non_empty_notes() {
        assert_eq!(join(&[]), None);
        assert_eq!(join(&["  ".into()]), None);
        assert_eq!(join(&["a".into(), " b ".into()]).as_deref(), Some("a\n\nb"));
    }
}
