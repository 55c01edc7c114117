//! Where messages go (docs/protocol.md §5.5): the main channel, the
//! manager's own, one per cluster, and a request's `reply_to`.

use super::truncate;
use crate::cluster_map::ClusterId;

/// Where a message goes (§5.5). Without Redis (`ipc: unix`) there is one
/// socket, and every message goes to everyone whatever its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// `redis_channel`: every cluster hears it.
    Main,
    /// `<redis_channel>:launcher`: only the manager (every host of a fleet).
    Launcher,
    /// `<redis_channel>:<id>`: only that cluster.
    Cluster(ClusterId),
    /// A request's `reply_to`, checked to be under `<redis_channel>:`.
    Reply(String),
}

/// The channel names of one `redis_channel` (§5.5).
#[derive(Debug, Clone, Copy)]
pub struct Channels<'a>(pub &'a str);

/// Longest `reply_to` accepted: a channel name, not a payload.
pub const MAX_REPLY_TO: usize = 256;

impl Channels<'_> {
    pub fn name(&self, channel: &Channel) -> String {
        let base = self.0;
        match channel {
            Channel::Main => base.to_string(),
            Channel::Launcher => format!("{base}:launcher"),
            Channel::Cluster(id) => format!("{base}:{id}"),
            Channel::Reply(name) => name.clone(),
        }
    }

    /// A request's `reply_to` as a channel, if it lies under
    /// `<redis_channel>:` (with something after the colon): mewld never
    /// publishes where the bot's namespace does not reach.
    pub fn reply_to(&self, asked: &str) -> Result<Channel, String> {
        let ok = asked.len() <= MAX_REPLY_TO
            && asked
                .strip_prefix(self.0)
                .and_then(|rest| rest.strip_prefix(':'))
                .is_some_and(|rest| !rest.is_empty());
        if ok {
            Ok(Channel::Reply(asked.to_string()))
        } else {
            Err(format!(
                "`reply_to` {:?} is not a channel under \"{}:\"",
                truncate(asked, 64),
                self.0
            ))
        }
    }
}
