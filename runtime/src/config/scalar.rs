//! The YAML 1.2 core schema: what a plain scalar like `8000` or `true` means.
//!
//! Variables (`vars.rs`) are substituted before typing, so `port: ${PORT,
//! 8000}` is typed from the substituted text exactly as if the operator had
//! written `port: 8000`.

/// How the environment is read. The loader takes it as a parameter instead
/// of calling `std::env::var` so tests can inject variables without
/// mutating the process environment (which is `unsafe` in edition 2024 and
/// racy across test threads).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

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
    use super::*;

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
