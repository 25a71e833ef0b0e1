//! A watch on Redis streams for new entries (the console's live tails share one per instance,
//! `live_tails`). Names no key: the streams are given by `Cache`.

use std::time::Duration;

use super::CacheError;

/// Waits for new entries on streams, on a connection of its own: `XREAD BLOCK` on the shared
/// multiplexed connection would hold up every command queued behind it.
pub struct StreamWatch {
    client: redis::Client,
    connection: Option<redis::aio::MultiplexedConnection>,
    streams: Vec<String>,
    /// The last entry seen on each stream (`$` at first: only what comes after the watch).
    last_ids: Vec<String>,
    timeout: Duration,
}

impl StreamWatch {
    pub(super) fn new(client: redis::Client, streams: Vec<String>, timeout: Duration) -> Self {
        Self {
            client,
            connection: None,
            last_ids: vec!["$".to_string(); streams.len()],
            streams,
            timeout,
        }
    }

    /// Whether anything arrived on the streams within `block`.
    pub async fn wait(&mut self, block: Duration) -> Result<bool, CacheError> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(block + self.timeout));
                let connection = self
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                self.connection.insert(connection)
            }
        };
        let reply: Result<Option<redis::streams::StreamReadReply>, _> = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(&self.streams)
            .arg(&self.last_ids)
            .query_async(connection)
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => {
                // A new connection next time.
                self.connection = None;
                return Err(e.into());
            }
        };
        let Some(reply) = reply else {
            return Ok(false);
        };
        for key in &reply.keys {
            if let (Some(at), Some(last)) = (
                self.streams.iter().position(|s| *s == key.key),
                key.ids.last(),
            ) {
                self.last_ids[at] = last.id.clone();
            }
        }
        Ok(true)
    }
}
