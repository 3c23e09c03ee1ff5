//! MQTT topic names and topic filters: validation and matching.
//!
//! Both transports need the same rules: the dev bus matches filters itself
//! (with paho's matcher), and the MQTT client checks topics and filters
//! before they reach paho (whose C strings cannot hold NUL, and which panics
//! on one). The rules are those of MQTT v5 §4.7:
//!
//! - a topic name (publish) is non-empty and has no wildcard;
//! - `+` matches exactly one level, `#` the parent level and every level
//!   below it; both must fill a whole level and `#` must be the last one;
//! - a filter starting with a wildcard does not match topics starting with
//!   `$` (`$SYS/...`, and our own `$share` is never a topic);
//! - `$share/{group}/{filter}` is a shared subscription: each message that
//!   matches `filter` goes to one subscriber of `group`.

/// Longest topic or filter MQTT can carry (a UTF-8 string with a 16-bit length).
pub const MAX_TOPIC_LEN: usize = 65_535;

const SHARE_PREFIX: &str = "$share/";

/// Why a topic name or filter is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_TOPIC_LEN} bytes")]
    TooLong,
    #[error("contains a NUL character")]
    Nul,
    #[error("contains a wildcard (`+` or `#`); wildcards are only allowed in subscriptions")]
    Wildcard,
    #[error("has a `+` that does not fill a whole level")]
    SingleLevelWildcard,
    #[error("has a `#` that is not a whole, last level")]
    MultiLevelWildcard,
    #[error("is not a valid shared subscription `$share/{{group}}/{{filter}}`: {0}")]
    Share(&'static str),
}

/// A subscription filter split into its shared-subscription group (if any)
/// and the topic filter proper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription<'a> {
    /// `Some(group)` for `$share/{group}/{filter}`.
    pub group: Option<&'a str>,
    /// The filter messages are matched against.
    pub filter: &'a str,
}

impl<'a> Subscription<'a> {
    /// Splits and validates a subscription filter.
    pub fn parse(filter: &'a str) -> Result<Self, TopicError> {
        check_string(filter)?;
        let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
            validate_plain_filter(filter)?;
            return Ok(Self {
                group: None,
                filter,
            });
        };
        let Some((group, inner)) = rest.split_once('/') else {
            return Err(TopicError::Share("no filter after the group name"));
        };
        if group.is_empty() {
            return Err(TopicError::Share("empty group name"));
        }
        if group.contains(['+', '#']) {
            return Err(TopicError::Share("wildcard in the group name"));
        }
        if inner.is_empty() {
            return Err(TopicError::Share("empty filter"));
        }
        validate_plain_filter(inner)?;
        Ok(Self {
            group: Some(group),
            filter: inner,
        })
    }

    /// True if a message published on `topic` matches this subscription.
    pub fn matches(&self, topic: &str) -> bool {
        matches(self.filter, topic)
    }
}

/// Checks a topic name for publishing: non-empty, no wildcards, no NUL.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    check_string(topic)?;
    if topic.contains(['+', '#']) {
        return Err(TopicError::Wildcard);
    }
    Ok(())
}

/// Checks a subscription filter, including `$share/{group}/{filter}`.
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    Subscription::parse(filter).map(|_| ())
}

/// True if `topic` (a topic name) matches `filter` (a plain topic filter,
/// without `$share/`). Does not validate either; pass validated strings.
///
/// The matching is paho's own (`topic_matches`: `+`, `#` including the
/// parent level, and no leading wildcard for `$` topics); what paho does not
/// do — validating, and taking `$share/{group}/` off a filter — is above.
pub fn matches(filter: &str, topic: &str) -> bool {
    paho_mqtt::topic_matcher::topic_matches(filter, topic)
}

fn check_string(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if s.contains('\0') {
        return Err(TopicError::Nul);
    }
    Ok(())
}

fn validate_plain_filter(filter: &str) -> Result<(), TopicError> {
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::SingleLevelWildcard);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_filter_matches_only_its_topic() {
        assert!(matches("a/b/c", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b/d"));
    }

    #[test]
    fn plus_matches_exactly_one_level() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/+", "a/"));
        assert!(matches("+/+", "/x"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("a/+", "a"));
        assert!(matches("+", "a"));
        assert!(!matches("+", "a/b"));
    }

    #[test]
    fn hash_matches_parent_and_all_levels_below() {
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b"));
        assert!(matches("a/#", "a/b/c/d"));
        assert!(!matches("a/#", "b/a"));
        assert!(matches("#", "anything/at/all"));
        assert!(matches("a/+/#", "a/b"));
    }

    #[test]
    fn leading_wildcards_do_not_match_dollar_topics() {
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(!matches("+/broker/uptime", "$SYS/broker/uptime"));
        assert!(matches("$SYS/#", "$SYS/broker/uptime"));
        assert!(matches("$SYS/+/uptime", "$SYS/broker/uptime"));
        assert!(matches("a/#", "a/$b"));
    }

    #[test]
    fn publish_topics_reject_wildcards_empty_and_nul() {
        assert_eq!(validate_topic("a/b"), Ok(()));
        assert_eq!(validate_topic("/"), Ok(()));
        assert_eq!(validate_topic(""), Err(TopicError::Empty));
        assert_eq!(validate_topic("a/+"), Err(TopicError::Wildcard));
        assert_eq!(validate_topic("a/#"), Err(TopicError::Wildcard));
        assert_eq!(validate_topic("a\0b"), Err(TopicError::Nul));
        let long = "x".repeat(MAX_TOPIC_LEN + 1);
        assert_eq!(validate_topic(&long), Err(TopicError::TooLong));
    }

    #[test]
    fn filters_require_whole_level_wildcards() {
        assert_eq!(validate_filter("a/+/c/#"), Ok(()));
        assert_eq!(validate_filter("#"), Ok(()));
        assert_eq!(validate_filter("+"), Ok(()));
        assert_eq!(validate_filter(""), Err(TopicError::Empty));
        assert_eq!(
            validate_filter("a/#/c"),
            Err(TopicError::MultiLevelWildcard)
        );
        assert_eq!(validate_filter("a/b#"), Err(TopicError::MultiLevelWildcard));
        assert_eq!(
            validate_filter("a/b+/c"),
            Err(TopicError::SingleLevelWildcard)
        );
    }

    #[test]
    fn shared_subscriptions_are_parsed() {
        let sub = Subscription::parse("$share/agents/ns/a2a/v1/agent/request/+").unwrap();
        assert_eq!(sub.group, Some("agents"));
        assert_eq!(sub.filter, "ns/a2a/v1/agent/request/+");
        assert!(sub.matches("ns/a2a/v1/agent/request/x"));

        let plain = Subscription::parse("a/#").unwrap();
        assert_eq!(plain.group, None);
        assert_eq!(plain.filter, "a/#");
    }

    #[test]
    fn malformed_shared_subscriptions_are_rejected() {
        for bad in [
            "$share/",
            "$share/g",
            "$share/g/",
            "$share//a",
            "$share/g+/a",
            "$share/g/a/#/b",
        ] {
            assert!(validate_filter(bad).is_err(), "{bad} should be rejected");
        }
    }
}
