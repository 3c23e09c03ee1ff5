//! Scalar text handling: `${VAR}` / `${VAR, default}` substitution and the
//! YAML 1.2 core schema (what a plain scalar like `8000` or `true` means).
//!
//! Substitution runs before typing, so `port: ${PORT, 8000}` is typed from
//! the substituted text exactly as if the operator had written `port: 8000`.

/// How the environment is read. The loader takes it as a parameter instead
/// of calling `std::env::var` so tests can inject variables without
/// mutating the process environment (which is `unsafe` in edition 2024 and
/// racy across test threads).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Replaces every `${NAME}` and `${NAME, default}` in `text`.
///
/// `$${` is an escape for a literal `${`. A variable that is set (even to
/// the empty string) wins over the default. Errors are returned as
/// operator-facing messages, one per problem, so a scalar with two missing
/// variables names both.
pub fn substitute(text: &str, env: EnvLookup<'_>) -> Result<String, Vec<String>> {
    if !text.contains("${") {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        // `$${` escapes: emit `${` literally and continue after it.
        if start > 0 && rest.as_bytes()[start - 1] == b'$' {
            out.push_str(&rest[..start - 1]);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            errors.push(format!(
                "unterminated \"${{\" in {text:?}: expected \"}}\" after the variable name"
            ));
            return Err(errors);
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(',') {
            Some((name, default)) => (name.trim(), Some(default.trim())),
            None => (inner.trim(), None),
        };
        if !is_var_name(name) {
            errors.push(format!(
                "invalid environment variable name {name:?} in \"${{{inner}}}\"; names use letters, digits and _"
            ));
        } else {
            match (env(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => errors.push(format!(
                    "environment variable {name} is not set and \"${{{name}}}\" has no default (write \"${{{name}, default}}\" to give one)"
                )),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What a plain (unquoted) scalar means under the YAML 1.2 core schema.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plain<'a> {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a str),
}

/// Types a plain scalar: `null`/`~`/empty, `true`/`false`, decimal, `0x`
/// and `0o` integers, floats (with `.inf`/`.nan`); anything else is a string.
pub fn resolve_plain(text: &str) -> Plain<'_> {
    if is_null(text) {
        Plain::Null
    } else if let Some(b) = parse_bool(text) {
        Plain::Bool(b)
    } else if let Some(i) = parse_int(text) {
        Plain::Int(i)
    } else if let Some(f) = parse_float(text) {
        Plain::Float(f)
    } else {
        Plain::Str(text)
    }
}

pub fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Core schema integers: `[-+]?[0-9]+`, `0o[0-7]+`, `0x[0-9a-fA-F]+`.
/// Values beyond `i128` are not integers here (they type as floats).
pub fn parse_int(text: &str) -> Option<i128> {
    if let Some(oct) = text.strip_prefix("0o") {
        if !oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return i128::from_str_radix(oct, 8).ok();
        }
        return None;
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return i128::from_str_radix(hex, 16).ok();
        }
        return None;
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Core schema floats:
/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, `[-+]?.inf`, `.nan`.
pub fn parse_float(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let negative = text.starts_with('-');
    match unsigned {
        ".inf" | ".Inf" | ".INF" => {
            return Some(if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            });
        }
        ".nan" | ".NaN" | ".NAN" if unsigned.len() == text.len() => return Some(f64::NAN),
        _ => {}
    }
    let bytes = unsigned.as_bytes();
    let mut i = 0;
    let int_digits = count_digits(&bytes[i..]);
    i += int_digits;
    let mut frac_digits = 0;
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = count_digits(&bytes[i..]);
        i += frac_digits;
    }
    if int_digits == 0 && frac_digits == 0 {
        return None;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(bytes.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let exp_digits = count_digits(&bytes[i..]);
        if exp_digits == 0 {
            return None;
        }
        i += exp_digits;
    }
    if i != bytes.len() {
        return None;
    }
    text.parse().ok()
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sub(text: &str, pairs: &[(&str, &str)]) -> Result<String, Vec<String>> {
        let map = env_of(pairs);
        substitute(text, &|name| map.get(name).cloned())
    }

    #[test]
    fn set_variable_wins_over_default() {
        assert_eq!(sub("${A, x}", &[("A", "1")]).unwrap(), "1");
        assert_eq!(sub("${A}", &[("A", "")]).unwrap(), "");
    }

    #[test]
    fn default_is_used_and_trimmed_when_unset() {
        assert_eq!(sub("${A, 8000}", &[]).unwrap(), "8000");
        assert_eq!(sub("${A,}", &[]).unwrap(), "");
        assert_eq!(sub("${ A ,  x y }", &[]).unwrap(), "x y");
    }

    #[test]
    fn several_variables_in_one_scalar() {
        assert_eq!(
            sub(
                "tcp://${HOST, localhost}:${PORT, 1883}/x",
                &[("PORT", "8883")]
            )
            .unwrap(),
            "tcp://localhost:8883/x"
        );
    }

    #[test]
    fn missing_variables_are_each_named() {
        let errs = sub("${A}-${B}", &[]).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(errs[0].contains("environment variable A is not set"));
        assert!(errs[1].contains("environment variable B is not set"));
    }

    #[test]
    fn dollar_dollar_escapes_and_text_without_vars_is_untouched() {
        assert_eq!(sub("$${A} $x {y}", &[("A", "1")]).unwrap(), "${A} $x {y}");
        assert_eq!(sub("no vars", &[]).unwrap(), "no vars");
    }

    #[test]
    fn unterminated_and_invalid_names_are_errors() {
        assert!(sub("${A", &[]).unwrap_err()[0].contains("unterminated"));
        assert!(sub("${1A}", &[]).unwrap_err()[0].contains("invalid environment variable name"));
    }

    #[test]
    fn core_schema_types_plain_scalars() {
        assert_eq!(resolve_plain(""), Plain::Null);
        assert_eq!(resolve_plain("~"), Plain::Null);
        assert_eq!(resolve_plain("NULL"), Plain::Null);
        assert_eq!(resolve_plain("True"), Plain::Bool(true));
        assert_eq!(resolve_plain("false"), Plain::Bool(false));
        assert_eq!(resolve_plain("yes"), Plain::Str("yes"));
        assert_eq!(resolve_plain("8000"), Plain::Int(8000));
        assert_eq!(resolve_plain("-12"), Plain::Int(-12));
        assert_eq!(resolve_plain("+7"), Plain::Int(7));
        assert_eq!(resolve_plain("0x1F"), Plain::Int(31));
        assert_eq!(resolve_plain("0o17"), Plain::Int(15));
        assert_eq!(resolve_plain("0x"), Plain::Str("0x"));
        assert_eq!(resolve_plain("1.5"), Plain::Float(1.5));
        assert_eq!(resolve_plain(".5"), Plain::Float(0.5));
        assert_eq!(resolve_plain("1e3"), Plain::Float(1000.0));
        assert_eq!(resolve_plain("-.inf"), Plain::Float(f64::NEG_INFINITY));
        assert!(matches!(resolve_plain(".nan"), Plain::Float(f) if f.is_nan()));
        assert_eq!(resolve_plain("1.2.3"), Plain::Str("1.2.3"));
        assert_eq!(resolve_plain("1e"), Plain::Str("1e"));
        assert_eq!(resolve_plain("."), Plain::Str("."));
        assert_eq!(resolve_plain("abc"), Plain::Str("abc"));
    }
}
