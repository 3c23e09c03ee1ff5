//! How long a stored credential lives: `SECRETS_TTL_SECONDS`.
//!
//! Read once at startup. A bad value stops the agent with a message naming
//! the variable and the allowed range, rather than silently falling back to
//! a default the operator did not choose.

use std::time::Duration;

use crate::error::CredentialError;

/// The environment variable.
pub const SECRETS_TTL_VAR: &str = "SECRETS_TTL_SECONDS";

/// Default and maximum lifetime of a stored credential: 30 days.
pub const MAX_TTL_SECONDS: u64 = 2_592_000;

/// [`MAX_TTL_SECONDS`] as a `Duration` (also the default).
pub const DEFAULT_TTL: Duration = Duration::from_secs(MAX_TTL_SECONDS);

/// Parses a `SECRETS_TTL_SECONDS` value: unset (or blank) means the
/// default of 30 days; otherwise a whole number of seconds from 1 to
/// 2592000. Zero, negative, fractional, non-numeric or larger values are
/// errors.
pub fn parse_ttl(value: Option<&str>) -> Result<Duration, CredentialError> {
    let Some(raw) = value else {
        return Ok(DEFAULT_TTL);
    };
    let text = raw.trim();
    if text.is_empty() {
        return Ok(DEFAULT_TTL);
    }
    let invalid = |reason| CredentialError::InvalidTtl {
        variable: SECRETS_TTL_VAR,
        value: raw.chars().take(40).collect(),
        reason,
        max: MAX_TTL_SECONDS,
    };
    let negative = text
        .strip_prefix('-')
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()));
    if negative {
        return Err(invalid("it is negative"));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("it is not a whole number"));
    }
    match text.parse::<u64>() {
        Ok(0) => Err(invalid("it is zero")),
        Ok(secs) if secs > MAX_TTL_SECONDS => Err(invalid("it is above the maximum")),
        Ok(secs) => Ok(Duration::from_secs(secs)),
        Err(_) => Err(invalid("it is above the maximum")),
    }
}

/// [`parse_ttl`] on the process environment.
pub fn ttl_from_env() -> Result<Duration, CredentialError> {
    match std::env::var(SECRETS_TTL_VAR) {
        Ok(value) => parse_ttl(Some(&value)),
        Err(std::env::VarError::NotPresent) => parse_ttl(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(CredentialError::InvalidTtl {
            variable: SECRETS_TTL_VAR,
            value: "<not UTF-8>".into(),
            reason: "it is not a whole number",
            max: MAX_TTL_SECONDS,
        }),
    }
}

/// Checks a configured TTL (which, unlike the variable, may be below a
/// second, for tests).
pub(crate) fn check_ttl(ttl: Duration) -> Result<Duration, CredentialError> {
    let invalid = |reason| CredentialError::InvalidTtl {
        variable: "StoreConfig::ttl",
        value: format!("{ttl:?}"),
        reason,
        max: MAX_TTL_SECONDS,
    };
    if ttl.is_zero() {
        Err(invalid("it is zero"))
    } else if ttl > DEFAULT_TTL {
        Err(invalid("it is above the maximum"))
    } else {
        Ok(ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_blank_is_thirty_days() {
        assert_eq!(parse_ttl(None).expect("ok"), Duration::from_secs(2_592_000));
        assert_eq!(parse_ttl(Some("  ")).expect("ok"), DEFAULT_TTL);
    }

    #[test]
    fn range_bounds_are_inclusive() {
        assert_eq!(parse_ttl(Some("1")).expect("ok"), Duration::from_secs(1));
        assert_eq!(parse_ttl(Some(" 2592000 ")).expect("ok"), DEFAULT_TTL);
    }
}
