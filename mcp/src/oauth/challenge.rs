//! `WWW-Authenticate` parsing (RFC 9110 §11.6.1, RFC 6750 §3).
//!
//! A 401 or 403 from an MCP server is where the OAuth flow starts: the Bearer
//! challenge names the resource metadata document (RFC 9728 §5.1), the scopes
//! the server wants and, for 403, `error="insufficient_scope"`. Real headers
//! carry several challenges in one value (`Basic realm="x", Bearer
//! error="invalid_token", scope="a b"`), quoted strings with commas and
//! escapes, and parameter names in any case, so this is a small tokenizer
//! rather than a split on commas. It never fails: malformed parts are skipped
//! and whatever could be read is returned.

/// One challenge: an auth scheme with either a token68 or auth-params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme as sent (compare with `eq_ignore_ascii_case`).
    pub scheme: String,
    /// A token68 credential (rare in challenges), if one was sent instead of params.
    pub token68: Option<String>,
    /// Parameters in order; names lowercased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The first value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// What a Bearer challenge tells an OAuth client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BearerChallenge {
    /// RFC 9728 §5.1: URL of the protected resource metadata.
    pub resource_metadata: Option<String>,
    /// Space-separated scopes the resource wants.
    pub scope: Option<String>,
    /// RFC 6750 error code (`invalid_token`, `insufficient_scope`, ...).
    pub error: Option<String>,
    /// Human-readable explanation from the server.
    pub error_description: Option<String>,
    /// The protection space, if named.
    pub realm: Option<String>,
}

impl BearerChallenge {
    /// The first Bearer challenge of a `WWW-Authenticate` value. Several
    /// header lines may be joined with `", "` before the call.
    pub fn from_header(value: &str) -> Option<Self> {
        let challenge = parse_www_authenticate(value)
            .into_iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))?;
        let get = |name: &str| challenge.param(name).map(str::to_owned);
        Some(Self {
            resource_metadata: get("resource_metadata"),
            scope: get("scope"),
            error: get("error"),
            error_description: get("error_description"),
            realm: get("realm"),
        })
    }

    /// The `scope` parameter split on whitespace (empty when absent).
    pub fn scopes(&self) -> Vec<String> {
        split_scopes(self.scope.as_deref().unwrap_or(""))
    }

    /// True for `error="insufficient_scope"` (a 403 asking for step-up).
    pub fn is_insufficient_scope(&self) -> bool {
        self.error.as_deref() == Some("insufficient_scope")
    }
}

/// Splits a space-delimited scope string, dropping empty parts.
pub fn split_scopes(scope: &str) -> Vec<String> {
    scope.split_whitespace().map(str::to_owned).collect()
}

/// Parses every challenge in a `WWW-Authenticate` value.
pub fn parse_www_authenticate(value: &str) -> Vec<Challenge> {
    let mut cursor = Cursor {
        bytes: value.as_bytes(),
        pos: 0,
    };
    let mut challenges: Vec<Challenge> = Vec::new();
    loop {
        cursor.skip_separators();
        if cursor.at_end() {
            break;
        }
        // Is this a parameter of the current challenge, or a new scheme?
        if let Some(current) = challenges.last_mut()
            && current.token68.is_none()
            && let Some((name, value)) = cursor.try_param()
        {
            current.params.push((name, value));
            continue;
        }
        let Some(scheme) = cursor.token() else {
            // Garbage: skip one byte and resynchronise on the next separator.
            cursor.pos += 1;
            continue;
        };
        let mut challenge = Challenge {
            scheme,
            token68: None,
            params: Vec::new(),
        };
        cursor.skip_spaces();
        if let Some((name, value)) = cursor.try_param() {
            challenge.params.push((name, value));
        } else if let Some(token68) = cursor.try_token68() {
            challenge.token68 = Some(token68);
        }
        challenges.push(challenge);
    }
    challenges
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    /// RFC 9110 `token`.
    fn token(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        (self.pos > start).then(|| String::from_utf8_lossy(&self.bytes[start..self.pos]).into())
    }

    /// `token BWS "=" BWS ( token / quoted-string )`, or nothing consumed.
    fn try_param(&mut self) -> Option<(String, String)> {
        let start = self.pos;
        let parsed = (|| {
            let name = self.token()?;
            self.skip_spaces();
            if self.peek() != Some(b'=') {
                return None;
            }
            self.pos += 1;
            self.skip_spaces();
            // `name==` or `name=,` is a token68 ending in '=', not a param.
            let value = match self.peek()? {
                b'"' => self.quoted_string()?,
                b if is_tchar(b) => self.token()?,
                _ => return None,
            };
            Some((name.to_ascii_lowercase(), value))
        })();
        if parsed.is_none() {
            self.pos = start;
        }
        parsed
    }

    fn try_token68(&mut self) -> Option<String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        {
            self.pos += 1;
        }
        if self.pos == start {
            return None;
        }
        while self.peek() == Some(b'=') {
            self.pos += 1;
        }
        Some(String::from_utf8_lossy(&self.bytes[start..self.pos]).into())
    }

    /// A quoted-string with `\` escapes; an unterminated one runs to the end.
    fn quoted_string(&mut self) -> Option<String> {
        if self.peek() != Some(b'"') {
            return None;
        }
        self.pos += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        out.push(escaped);
                        self.pos += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        Some(String::from_utf8_lossy(&out).into())
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_bearer_with_quoted_params() {
        let c = BearerChallenge::from_header(
            r#"Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="files:read files:write""#,
        )
        .unwrap();
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("https://mcp.example.com/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(c.scopes(), vec!["files:read", "files:write"]);
    }

    #[test]
    fn several_challenges_commas_inside_quotes_and_escapes() {
        let header = r#"Basic realm="a, b", Bearer realm="x", error="insufficient_scope", error_description="need \"profile\", sorry", scope=profile, DPoP algs="ES256""#;
        let all = parse_www_authenticate(header);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].scheme, "Basic");
        assert_eq!(all[0].param("realm"), Some("a, b"));
        assert_eq!(all[2].scheme, "DPoP");
        let bearer = BearerChallenge::from_header(header).unwrap();
        assert!(bearer.is_insufficient_scope());
        assert_eq!(
            bearer.error_description.as_deref(),
            Some(r#"need "profile", sorry"#)
        );
        assert_eq!(bearer.scope.as_deref(), Some("profile"));
        assert_eq!(bearer.realm.as_deref(), Some("x"));
    }

    #[test]
    fn case_insensitive_scheme_and_names_and_spaces_around_equals() {
        let c =
            BearerChallenge::from_header(r#"bearer   Resource_Metadata = "http://h/x""#).unwrap();
        assert_eq!(c.resource_metadata.as_deref(), Some("http://h/x"));
    }

    #[test]
    fn bare_bearer_and_token68() {
        let all = parse_www_authenticate("Negotiate abc+/==, Bearer");
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].token68.as_deref(), Some("abc+/=="));
        assert!(all[1].params.is_empty());
        assert_eq!(
            BearerChallenge::from_header("Bearer"),
            Some(BearerChallenge::default())
        );
    }

    #[test]
    fn garbage_never_panics() {
        for input in [
            "",
            ",,,",
            "=",
            "Bearer =",
            "Bearer a=\"unterminated",
            "Bearer a=\"x\\",
            "\"\"",
            "Bearer scope=\u{e9}",
        ] {
            let _ = parse_www_authenticate(input);
            let _ = BearerChallenge::from_header(input);
        }
        assert_eq!(BearerChallenge::from_header("Basic realm=x"), None);
        let c = BearerChallenge::from_header("Bearer a=\"unterminated").unwrap();
        assert_eq!(c.resource_metadata, None);
    }
}
