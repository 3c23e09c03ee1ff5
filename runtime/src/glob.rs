//! `*` name patterns, as used by `inter_agent_communication` allow and deny
//! lists. One implementation, shared by the agent (who may I call?) and the
//! ACL model (what may it publish?), so the two can never disagree.

/// `*` matches any run of characters; everything else matches literally.
pub fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|i| tail.is_char_boundary(*i))
                .any(|i| matches(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn star_matches_any_run() {
        assert!(matches("*", "anything"));
        assert!(matches("weather_*", "weather_eu"));
        assert!(!matches("weather_*", "news"));
        assert!(matches("*_agent", "a_agent"));
        assert!(matches("a*c*e", "abcde"));
        assert!(!matches("a*c*e", "abcd"));
        assert!(matches("exact", "exact"));
        assert!(!matches("a*c", "abd"));
    }
}
