//! The `oauth/callback` method: finishing a tool authorization the gateway
//! forwarded, on whichever replica it landed.
//!
//! The gateway has already checked that the browser session belongs to the
//! flow's user (by the user tag in `state`); here the flow itself is taken
//! from the store with the forwarded, verified identity — single use,
//! unexpired, same user — the response's `iss` is checked (RFC 9207) and
//! the code is exchanged with the client and authorization server stored
//! in the flow. A response saying the server no longer knows the client
//! drops the stored registration, so the next attempt registers again.
//! The caller gets back the paused task's state to resume, or an error
//! with that state so it can end the waiting task with the message.

use amesh_credentials::{CredentialError, CredentialKey};
use amesh_mcp::oauth::{self, OAuthError, PkceVerifier};
use amesh_trust::RequestIdentity;
use url::Url;

use super::auth::{FlowResume, issuer_host};
use super::{McpTools, lock, refresh, store_failure};
use crate::a2a::jsonrpc::{INTERNAL_ERROR, INVALID_PARAMS, RpcError, UNAUTHENTICATED};
use crate::a2a::oauth_callback::CallbackParams;
use crate::telemetry::metrics;

/// A completed authorization: the credential is stored; the paused task's
/// state comes back to its owner to resume.
#[derive(Debug)]
pub(crate) struct Authorized {
    pub task: serde_json::Value,
    pub tool_id: String,
    pub step_up: bool,
}

/// A refused callback: the error for the gateway, and the paused task's
/// state when the flow was found (so the task can end with the reason).
pub(crate) type CallbackRefusal = (Option<serde_json::Value>, RpcError);

impl McpTools {
    /// The `oauth/callback` method: takes the flow for the verified
    /// identity, exchanges the code, stores the credential and returns the
    /// call to run again. Errors carry the flow's context when there is
    /// one, so the caller can end the waiting task with the message.
    pub(crate) async fn on_callback(
        &self,
        params: CallbackParams,
        identity: &RequestIdentity,
    ) -> Result<Authorized, CallbackRefusal> {
        let inner = &self.inner;
        let agent = inner.agent.as_str();
        let who = match identity {
            RequestIdentity::Verified(who) => who,
            RequestIdentity::Unverified(u) => {
                tracing::info!(agent, user = %u.claimed_user_id(), reason = %u.reason(), "tool authorization callback refused: identity not verified");
                return Err((
                    None,
                    RpcError::new(
                        UNAUTHENTICATED,
                        format!(
                            "completing a tool authorization needs a verified identity; this request's identity was not verified: {}",
                            u.reason()
                        ),
                    ),
                ));
            }
        };
        let user = who.user_id();
        let Some(store) = &inner.store else {
            return Err((
                None,
                RpcError::new(
                    INTERNAL_ERROR,
                    format!("agent {agent} has no credential store configured"),
                ),
            ));
        };
        let flow = match metrics::store_op("take_flow", store.take_flow(&params.state, who)).await {
            Ok(flow) => flow,
            Err(e) => {
                let refusal = flow_refusal(&e);
                tracing::info!(agent, user, reason = %refusal.message, "tool authorization callback refused");
                return Err((None, refusal));
            }
        };
        let tool = flow.tool_id.clone();
        let resume: FlowResume = match serde_json::from_value(flow.resume.into_inner()) {
            Ok(resume) => resume,
            Err(e) => {
                // The serde message may quote stored values: log its class only.
                tracing::warn!(agent, user, %tool, error = ?e.classify(), "stored flow is unreadable");
                let text = format!(
                    "the pending authorization of tool {tool} is unreadable (written by another amesh version?); ask again"
                );
                return Err((None, RpcError::new(INTERNAL_ERROR, text)));
            }
        };
        let ctx = resume.task;
        // RFC 9207, before anything of the response is believed.
        if let Err(e) = oauth::check_response_issuer(&resume.auth_server, params.iss.as_deref()) {
            tracing::warn!(agent, user, %tool, error = %e, "tool authorization callback refused: issuer check failed");
            let key = CredentialKey::new(user, tool.clone());
            if let Err(audit) = store.audit_refused_authorization(&key, e.to_string()) {
                tracing::warn!(agent, user, %tool, error = %audit, "could not audit the refused authorization");
            }
            let text = format!(
                "the authorization of {tool} was refused and nothing was stored: {}; ask again",
                e.user_reason()
            );
            return Err((Some(ctx), RpcError::new(INVALID_PARAMS, text)));
        }
        if let Some(error) = params.error {
            if oauth::names_unknown_client(&error, params.error_description.as_deref()) {
                let evidence = format!("the authorization endpoint answered {error}");
                self.forget_registration(&resume.auth_server, &resume.client, &tool, &evidence)
                    .await;
                let text = format!(
                    "the authorization server at {} no longer knows amesh's client (it may have restarted); amesh will register again: ask again",
                    issuer_host(resume.auth_server.issuer())
                );
                return Err((Some(ctx), RpcError::new(INVALID_PARAMS, text)));
            }
            if error == "access_denied" {
                tracing::info!(agent, user, %tool, %error, "the user refused the tool authorization");
            } else {
                tracing::warn!(agent, user, %tool, %error, description = params.error_description.as_deref().unwrap_or(""), "provider refused the tool authorization");
            }
            let text = match params.error_description {
                Some(d) => format!("the provider refused the authorization: {error} ({d})"),
                None => format!("the provider refused the authorization: {error}"),
            };
            return Err((Some(ctx), RpcError::new(INVALID_PARAMS, text)));
        }
        let Some(code) = params.code.filter(|c| !c.is_empty()) else {
            let text = "the provider's redirect carried neither a code nor an error; ask again";
            return Err((Some(ctx), RpcError::new(INVALID_PARAMS, text)));
        };
        let redirect = match Url::parse(&flow.redirect_uri) {
            Ok(url) => url,
            Err(e) => {
                let text = format!("the pending authorization has an unusable redirect URI: {e}");
                return Err((Some(ctx), RpcError::new(INTERNAL_ERROR, text)));
            }
        };
        let Some(http) = inner
            .servers
            .iter()
            .find(|s| s.tool_id == tool)
            .and_then(|s| s.oauth_http().ok())
        else {
            let text = format!(
                "tool {tool} is no longer configured for OAuth on agent {agent}; ask again"
            );
            return Err((Some(ctx), RpcError::new(INTERNAL_ERROR, text)));
        };
        let verifier = PkceVerifier::from(flow.pkce_verifier.clone());
        let exchanged = oauth::exchange_code(
            http,
            &resume.auth_server,
            &resume.client,
            &code,
            &verifier,
            &redirect,
            &resume.scopes,
        )
        .await;
        let tokens = match exchanged {
            Ok(tokens) => tokens,
            Err(e) => {
                let reason = self.oauth_failure(&tool, "authorization code exchange", &e);
                if e.is_client_rejected() {
                    self.forget_registration(
                        &resume.auth_server,
                        &resume.client,
                        &tool,
                        &e.to_string(),
                    )
                    .await;
                }
                let code = match e {
                    OAuthError::TokenRefused { .. } => INVALID_PARAMS,
                    _ => INTERNAL_ERROR,
                };
                let text = format!(
                    "could not complete the authorization of {tool} at {}; ask again ({reason})",
                    issuer_host(resume.auth_server.issuer())
                );
                return Err((Some(ctx), RpcError::new(code, text)));
            }
        };
        let credential = refresh::to_credential(&tokens, &resume.auth_server, &resume.client);
        let key = CredentialKey::new(user, tool.clone());
        if let Err(e) = metrics::store_op("put", store.put(&key, who, &credential)).await {
            return Err((Some(ctx), RpcError::new(INTERNAL_ERROR, store_failure(&e))));
        }
        lock(&inner.auth_servers).insert(tool.clone(), resume.auth_server);
        tracing::info!(agent, user, %tool, scopes = %tokens.scopes.join(" "), "tool authorized; credential stored");
        if tokens.refresh_token.is_none() {
            // Without one, the user is asked again at every expiry of the
            // access token; the operator can usually fix that with a scope.
            tracing::warn!(
                agent,
                user,
                %tool,
                requested = %resume.scopes.join(" "),
                "the provider issued no refresh token: this user must authorize again when the access token expires; if the provider offers refresh tokens, request them (add offline_access, or the provider's equivalent, to auth.scopes)"
            );
        }
        Ok(Authorized {
            task: ctx,
            tool_id: tool,
            step_up: resume.step_up,
        })
    }
}

/// The JSON-RPC error for a flow the store would not hand out.
fn flow_refusal(e: &CredentialError) -> RpcError {
    match e {
        CredentialError::FlowNotFound => RpcError::new(
            INVALID_PARAMS,
            "this authorization link is unknown; ask again",
        ),
        CredentialError::FlowExpired { .. } => RpcError::new(
            INVALID_PARAMS,
            "this authorization link has expired; ask again",
        ),
        CredentialError::FlowAlreadyUsed => RpcError::new(
            INVALID_PARAMS,
            "this authorization link was already used; ask again",
        ),
        CredentialError::FlowUserMismatch { .. } => RpcError::new(
            UNAUTHENTICATED,
            "this authorization was started by another user; sign in as that user to complete it",
        ),
        other => RpcError::new(INTERNAL_ERROR, store_failure(other)),
    }
}
