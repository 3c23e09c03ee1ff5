//! OAuth 2.1 client for remote MCP servers (MCP authorization spec
//! 2025-06-18, discovery order of 2025-11-25).
//!
//! Pure logic and HTTP, no storage: the agent runtime keeps client
//! registrations, pending flows (state, [`PkceVerifier`], [`AuthServer`]) and
//! [`TokenSet`]s in the credentials crate, and hands them back here. Every
//! type it must store is plain `serde` data.
//!
//! A flow, as the runtime drives it:
//! 1. the MCP server answers 401 → [`discover`] with its `WWW-Authenticate`
//!    (or [`AuthServer::configured`] when the tool's `auth:` block names the
//!    endpoints; [`AuthServer::with_overrides`] when it names one);
//! 2. no configured `client_id` → the gateway's Client ID Metadata Document
//!    ([`client_metadata_url`]) where the server supports it, else
//!    [`register`] (RFC 7591), stored per issuer;
//!    A stored registration is first checked with [`check_client`]: a
//!    provider that forgot it gets a new one;
//! 3. [`authorization_request`] with the pending flow's `state` → URL for the user;
//! 4. callback → [`check_response_issuer`] (RFC 9207) → [`exchange_code`] → [`TokenSet`];
//! 5. access token near expiry → [`refresh`]; [`OAuthError::needs_reauthorization`]
//!    says when only a new flow helps.
//!
//! Design: the `oauth2` crate (v5, no default features) builds the
//! authorization URL and PKCE pair and runs the code and refresh grants; it
//! runs on the workspace reqwest 0.13 through [`ReqwestAdapter`], which
//! avoids the second reqwest its own adapter would bring. Discovery and
//! registration are plain reqwest + serde: `oauth2` has neither.
//!
//! Every request goes through an [`OAuthHttp`] built for the MCP server it
//! serves: no target more internal than that server unless allow-listed
//! ([`AddressClass`], [`permits`]), no answer read past [`MAX_OAUTH_BODY`], no request longer
//! than its timeout. Errors are for the log; users get
//! [`OAuthError::user_reason`].

mod challenge;
mod client_check;
mod client_metadata;
mod discover;
mod endpoint;
mod error;
mod flow;
mod http;
mod issuer;
mod metadata;
mod redirect;
mod register;
mod revoke;
mod target;

pub use challenge::{BearerChallenge, Challenge, parse_www_authenticate, split_scopes};
pub use client_check::{ClientStatus, check_client, names_unknown_client};
pub use client_metadata::{CLIENT_METADATA_PATH, client_metadata_document, client_metadata_url};
pub use discover::{AuthServer, discover};
pub use endpoint::endpoint_url;
pub use error::{OAuthError, OAuthStep};
pub use flow::{PkceVerifier, Refreshed, TokenSet, authorization_request, exchange_code, refresh};
pub use http::{AdapterError, MAX_OAUTH_BODY, OAuthHttp, ReqwestAdapter};
pub use issuer::check_response_issuer;
pub use metadata::{
    AuthorizationServerMetadata, ProtectedResourceMetadata, authorization_server_metadata_urls,
    canonical_resource, protected_resource_metadata_urls, resource_covers,
};
pub(crate) use redirect::is_loopback;
pub use redirect::{CALLBACK_PATH, validate_redirect_uri};
pub use register::{
    ClientRegistration, OAuthClient, TokenEndpointAuth, client_name_for_agent, register,
};
pub use revoke::revoke;
pub use target::{AddressClass, AllowedHost, TargetRefused, classify, permits};
