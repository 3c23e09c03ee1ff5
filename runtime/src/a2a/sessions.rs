//! `amesh/sessions/delete`: forget the user's conversation history of one
//! `contextId` at an agent (its session store). Sent by the gateway when a
//! user deletes a conversation in the web page, with the user's signed
//! identity; an agent deletes only that user's own history.

use serde::{Deserialize, Serialize};

pub const DELETE: &str = "amesh/sessions/delete";

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContextParams {
    pub context_id: String,
}
