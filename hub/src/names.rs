//! Hub names: the rules the service applies to them, shared by configuration, the registry
//! and every endpoint that takes a hub in its path.

/// Hub names compare case-insensitively, as the service does; they are kept lowercase.
pub fn normalize_hub(name: &str) -> std::borrow::Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(name.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(name)
    }
}

/// Whether a hub name is valid: a letter, then up to 127 of ``A-Za-z0-9_`,.[]``.
pub fn valid_hub_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || "_`,.[]".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names() {
        assert!(valid_hub_name("chat_1"));
        assert!(!valid_hub_name("1chat"));
        assert!(!valid_hub_name("a/b"));
        assert!(!valid_hub_name(&"a".repeat(129)));
        assert_eq!(normalize_hub("Chat"), "chat");
    }
}
