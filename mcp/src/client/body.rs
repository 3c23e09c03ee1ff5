//! Reading a whole response body with a ceiling: the one reader for every
//! answer this crate buffers, MCP tool results and OAuth documents alike.
//!
//! A server that sends more than the limit is cut off there, so a broken or
//! hostile one costs at most `limit` bytes of memory however long it talks:
//! a declared `Content-Length` above the limit is refused before any of the
//! body is read, and a streamed body is dropped (closing the connection) as
//! soon as the next chunk would pass the limit.

use bytes::Bytes;
use futures::StreamExt;

/// Why a bounded read stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// The body is (or says it is) longer than the limit.
    #[error("larger than {limit} bytes")]
    TooLarge {
        /// The limit that was passed.
        limit: usize,
    },
    /// The connection failed or timed out while reading.
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// Reads `response`'s body into memory, refusing more than `limit` bytes.
pub(crate) async fn read_bounded(
    response: reqwest::Response,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let too_large = BodyError::TooLarge { limit };
    if response
        .content_length()
        .is_some_and(|declared| declared > limit as u64)
    {
        return Err(too_large);
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}
