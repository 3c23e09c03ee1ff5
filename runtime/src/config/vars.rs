//! `${VAR}` and `${VAR, default}` as Solace Agent Mesh reads them.
//!
//! SAM (its loader is solace-ai-connector) substitutes variables in the
//! whole file text before YAML parsing, with the regular expression
//! `\$\{([^}:\s]+)(?:\s*,\s*([^}]*))?\}`. That is why SAM configs may write
//! `{dev_mode: ${DEV, false}}` in a flow mapping, where a `,` or `}` would
//! otherwise end the scalar. amesh matches the same text, but instead of
//! pasting the value it puts a placeholder of the same length there (so
//! every column stays right) made of private-use characters that YAML
//! treats as ordinary text in every context. Once a scalar is parsed, its
//! placeholders are replaced by the values. The value is therefore always
//! the scalar's literal text: a password containing `: ` or ` #` cannot
//! change the structure of the config or lose its tail, as it would in SAM.
//!
//! Like SAM, an unset variable without a default becomes the empty string
//! (an empty plain value is null). It is an error only where amesh needs the
//! value; the node remembers the variable so that error can name it.

use super::scalar::EnvLookup;

/// Starts a placeholder; two index characters and fill characters follow.
const START: char = '\u{E000}';
/// Pads a placeholder to the length of the `${...}` it stands for.
const FILL: char = '\u{E001}';
/// Stands for the first `$` of `$${` (amesh's escape for a literal `${`).
const ESCAPE: char = '\u{E002}';
/// Index digits are `DIGIT0 + n` for n < `BASE`.
const DIGIT0: u32 = 0xE100;
const BASE: usize = 4096;
/// The shortest reference, `${A}`, has four characters; a placeholder needs three.
const MAX_VARS: usize = BASE * BASE;

/// One `${...}` reference of the source text.
#[derive(Debug, Clone)]
pub struct VarRef {
    /// The reference as written, for keys (which are never substituted).
    pub raw: String,
    pub name: String,
    /// The default with one pair of surrounding quotes removed.
    pub default: Option<String>,
    /// The default was written in quotes (`${A, "x"}`): SAM pastes the
    /// quotes into the YAML, so the value is a string, never a number.
    pub quoted_default: bool,
}

/// A scalar's text with its placeholders replaced.
#[derive(Debug, Default)]
pub struct Expanded {
    pub text: String,
    /// Variables that were unset and had no default (they gave "").
    pub unset: Vec<String>,
    /// The whole scalar is one reference whose quoted default was used.
    pub quoted: bool,
}

/// Replaces every `${...}` that SAM would substitute by a placeholder and
/// records it in `vars`. `$${` is amesh's escape for a literal `${`. Text that only looks like a reference
/// (`${ A }`, `${A:-x}`, an unclosed `${`) stays as it is, as in SAM.
pub fn mask(text: &str, vars: &mut Vec<VarRef>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if start > 0 && rest.as_bytes()[start - 1] == b'$' {
            out.push_str(&rest[..start - 1]);
            out.push(ESCAPE);
            out.push_str("${");
            rest = &rest[start + 2..];
            continue;
        }
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let parsed = after
            .find(['}', '\n'])
            .filter(|&end| after.as_bytes()[end] == b'}')
            .and_then(|end| parse_reference(&after[..end]).map(|r| (end, r)));
        match parsed {
            Some((end, (name, default))) if vars.len() < MAX_VARS => {
                let raw = &rest[start..start + 2 + end + 1];
                let (default, quoted_default) = match default {
                    Some(d) => {
                        let (d, quoted) = unquote(d);
                        (Some(d.to_owned()), quoted)
                    }
                    None => (None, false),
                };
                push_placeholder(&mut out, vars.len(), raw.chars().count());
                vars.push(VarRef {
                    raw: raw.to_owned(),
                    name: name.to_owned(),
                    default,
                    quoted_default,
                });
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// SAM's `([^}:\s]+)(?:\s*,\s*([^}]*))?` on the text between `${` and `}`:
/// the name is the longest run of non-space, non-colon characters after
/// which either nothing or a comma follows. So `${A, b}` has the default
/// `b`, but `${A,b}` is the variable named `A,b` (no default), as in SAM.
fn parse_reference(inner: &str) -> Option<(&str, Option<&str>)> {
    let name_end = inner
        .find(|c: char| c == ':' || c.is_whitespace())
        .unwrap_or(inner.len());
    let mut k = name_end;
    while k > 0 {
        let rest = &inner[k..];
        if rest.is_empty() {
            return Some((&inner[..k], None));
        }
        if let Some(default) = rest.trim_start().strip_prefix(',') {
            return Some((&inner[..k], Some(default.trim())));
        }
        k = inner[..k].char_indices().next_back().map_or(0, |(i, _)| i);
    }
    None
}

/// `"x"` or `'x'` without its quotes, and whether it had them.
fn unquote(text: &str) -> (&str, bool) {
    for q in ['"', '\''] {
        if text.len() >= 2 && text.starts_with(q) && text.ends_with(q) {
            return (&text[1..text.len() - 1], true);
        }
    }
    (text, false)
}

fn push_placeholder(out: &mut String, index: usize, width: usize) {
    out.push(START);
    for digit in [index / BASE, index % BASE] {
        // Both digits are below BASE, so the code points are private-use characters.
        #[allow(clippy::cast_possible_truncation)]
        out.push(char::from_u32(DIGIT0 + digit as u32).unwrap_or(FILL));
    }
    for _ in 3..width {
        out.push(FILL);
    }
}

/// The index of the placeholder at the start of `chars`, consuming it.
fn take_placeholder(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let digit = |c: Option<char>| {
        let n = u32::from(c?).checked_sub(DIGIT0)? as usize;
        (n < BASE).then_some(n)
    };
    let high = digit(chars.next())?;
    let low = digit(chars.next())?;
    while chars.peek() == Some(&FILL) {
        chars.next();
    }
    Some(high * BASE + low)
}

/// Replaces the placeholders of a parsed value by the variables' values
/// (set value, else default, else "" noted in `unset`) and `$${` by `${`.
pub fn expand(text: &str, vars: &[VarRef], env: EnvLookup<'_>) -> Expanded {
    if !text.contains([START, ESCAPE]) {
        return Expanded {
            text: text.to_owned(),
            ..Expanded::default()
        };
    }
    let mut out = Expanded::default();
    let mut used = 0;
    let mut last_quoted = false;
    let mut other_text = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == START {
            let Some(var) = take_placeholder(&mut chars).and_then(|i| vars.get(i)) else {
                continue;
            };
            used += 1;
            last_quoted = false;
            match (env(&var.name), &var.default) {
                (Some(value), _) => out.text.push_str(&value),
                (None, Some(default)) => {
                    out.text.push_str(default);
                    last_quoted = var.quoted_default;
                }
                (None, None) => out.unset.push(var.name.clone()),
            }
        } else if c == ESCAPE {
            other_text = true;
        } else {
            out.text.push(c);
            other_text = true;
        }
    }
    out.quoted = used == 1 && !other_text && last_quoted;
    out
}

/// The text as written: placeholders back to their `${...}` (for keys).
pub fn restore(text: &str, vars: &[VarRef]) -> String {
    if !text.contains([START, ESCAPE]) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == START {
            if let Some(var) = take_placeholder(&mut chars).and_then(|i| vars.get(i)) {
                out.push_str(&var.raw);
            }
        } else if c == ESCAPE {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn run(text: &str, pairs: &[(&str, &str)]) -> Expanded {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut vars = Vec::new();
        let masked = mask(text, &mut vars);
        assert_eq!(masked.chars().count(), text.chars().count(), "columns move");
        expand(&masked, &vars, &|n| map.get(n).cloned())
    }

    #[test]
    fn set_variable_wins_over_default_and_defaults_are_trimmed() {
        assert_eq!(run("${A, x}", &[("A", "1")]).text, "1");
        assert_eq!(run("${A}", &[("A", "")]).text, "");
        assert_eq!(run("${A, 8000}", &[]).text, "8000");
        assert_eq!(run("${A,}", &[]).text, "");
        assert_eq!(run("${A ,  x y }", &[]).text, "x y");
    }

    #[test]
    fn several_variables_in_one_scalar() {
        assert_eq!(
            run(
                "tcp://${HOST, localhost}:${PORT, 1883}/x",
                &[("PORT", "8883")]
            )
            .text,
            "tcp://localhost:8883/x"
        );
    }

    #[test]
    fn unset_without_default_is_empty_and_named() {
        let e = run("${A}-${B}", &[]);
        assert_eq!(e.text, "-");
        assert_eq!(e.unset, ["A", "B"]);
    }

    #[test]
    fn quoted_defaults_lose_their_quotes_and_stay_strings() {
        let e = run("${A, \"Hello, how are you?\"}", &[]);
        assert_eq!(e.text, "Hello, how are you?");
        assert!(e.quoted);
        let e = run("${A, ''}", &[]);
        assert_eq!(e.text, "");
        assert!(e.quoted);
        assert!(!run("x ${A, '1'}", &[]).quoted);
        assert!(!run("${A, '1'}", &[("A", "2")]).quoted);
    }

    #[test]
    fn sam_reads_a_comma_without_space_as_part_of_the_name() {
        let mut vars = Vec::new();
        mask("${A,b} ${C, d}", &mut vars);
        assert_eq!(vars[0].name, "A,b");
        assert_eq!(vars[0].default, None);
        assert_eq!(vars[1].name, "C");
        assert_eq!(vars[1].default.as_deref(), Some("d"));
    }

    #[test]
    fn text_that_is_not_a_reference_stays() {
        assert_eq!(
            run("${ A } ${A:-x} ${open", &[("A", "1")]).text,
            "${ A } ${A:-x} ${open"
        );
        assert_eq!(run("$${A} $$x {y}", &[("A", "1")]).text, "${A} $$x {y}");
        assert_eq!(run("no vars", &[]).text, "no vars");
    }

    #[test]
    fn restore_gives_back_the_reference() {
        let mut vars = Vec::new();
        let masked = mask("k_${A, 1}", &mut vars);
        assert_eq!(restore(&masked, &vars), "k_${A, 1}");
    }
}
