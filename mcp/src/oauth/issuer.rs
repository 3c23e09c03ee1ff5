//! RFC 9207 issuer identification, checked on the authorization response
//! before the code is redeemed (MCP authorization 2026-07-28).
//!
//! An agent talks to many authorization servers. In a mix-up attack a
//! hostile one gets the user's browser to carry another server's code (or
//! its own) back to a flow started elsewhere; the `iss` parameter of the
//! response names who issued it. The rules (RFC 9207 §2.4): an `iss` that
//! is present must equal the issuer the flow was started with, by simple
//! string comparison (no normalisation: a near-miss is an impostor or a
//! server this check cannot vouch for); an absent `iss` is refused when the
//! server's metadata promised it (`authorization_response_iss_parameter_supported`),
//! else accepted, since most servers do not send it yet. With configured
//! endpoints the issuer is not known, only assumed, so there is nothing to
//! compare with: the check is skipped.

use super::discover::AuthServer;
use super::error::OAuthError;

/// How much of a refused `iss` is kept, in characters.
const MAX_SHOWN: usize = 256;

/// Checks the `iss` of an authorization response (success or error) of a
/// flow started at `server`.
pub fn check_response_issuer(server: &AuthServer, iss: Option<&str>) -> Result<(), OAuthError> {
    if server.issuer_assumed {
        return Ok(());
    }
    let expected = server.issuer();
    let promised = server
        .metadata
        .authorization_response_iss_parameter_supported
        .unwrap_or(false);
    match iss {
        Some(found) if found == expected => Ok(()),
        None if !promised => Ok(()),
        // The value came through the user's browser: kept short for the
        // log and the audit.
        found => Err(OAuthError::ResponseIssuerMismatch {
            expected: expected.to_owned(),
            found: found.map(|f| f.chars().take(MAX_SHOWN).collect()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    fn server(promised: Option<bool>) -> AuthServer {
        let url = |p: &str| Url::parse(&format!("https://auth.example{p}")).unwrap();
        let mut server = AuthServer::configured(&url("/mcp"), url("/authorize"), url("/token"));
        server.metadata.issuer = "https://auth.example".into();
        server.issuer_assumed = false;
        server
            .metadata
            .authorization_response_iss_parameter_supported = promised;
        server
    }

    #[test]
    fn a_present_iss_must_equal_the_issuer_exactly() {
        for promised in [None, Some(false), Some(true)] {
            let server = server(promised);
            assert!(check_response_issuer(&server, Some("https://auth.example")).is_ok());
            for other in [
                "https://evil.example",
                "https://auth.example/",
                "HTTPS://auth.example",
            ] {
                let err = check_response_issuer(&server, Some(other)).unwrap_err();
                assert!(
                    matches!(&err, OAuthError::ResponseIssuerMismatch { found: Some(f), .. } if f == other),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn configured_endpoints_have_no_issuer_to_check_against() {
        let mut configured = server(Some(true));
        configured.issuer_assumed = true;
        assert!(check_response_issuer(&configured, Some("https://login.example/tenant")).is_ok());
        assert!(check_response_issuer(&configured, None).is_ok());
    }

    #[test]
    fn an_absent_iss_is_refused_only_when_the_server_promised_it() {
        assert!(check_response_issuer(&server(None), None).is_ok());
        assert!(check_response_issuer(&server(Some(false)), None).is_ok());
        let err = check_response_issuer(&server(Some(true)), None).unwrap_err();
        assert!(err.to_string().contains("carries no `iss`"), "{err}");
    }
}
