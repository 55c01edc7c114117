//! In a fleet, every host runs its own identify queue for its own clusters,
//! and Discord's limits are the bot's, not the host's: before granting in
//! a bucket, a host takes that bucket's window in Redis, and the session
//! budget is one counter in Redis that every host's grants spend
//! (docs/protocol.md §10). A host that cannot reach Redis grants nothing:
//! an identify too many costs a session, one too few only time.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::redis_link::{within, Keys, Link};

/// For each bucket asked (`ARGV[7..]`), in order: if the shared budget is
/// down to the reserve, held (-1); else take the bucket's window (`SET NX
/// PX`) and spend one session start (0), or say when the window frees
/// (its PTTL, at least 1 ms; a window with no TTL: after a window). The budget key is made at the first spend after it lapsed,
/// from this host's count, and lives for Discord's day. Returns the
/// budget left (-1: not counted), then one answer per bucket.
const ACQUIRE: &str = r"
local counted = tonumber(ARGV[5]) >= 0
local remaining = tonumber(redis.call('GET', KEYS[1]) or ARGV[5])
local fresh = redis.call('EXISTS', KEYS[1]) == 0
local out = {}
local spent = 0
for i = 7, #ARGV do
  local key = ARGV[1] .. ARGV[i]
  if counted and remaining <= tonumber(ARGV[4]) then
    table.insert(out, -1)
  elseif redis.call('SET', key, ARGV[2], 'NX', 'PX', ARGV[3]) then
    table.insert(out, 0)
    spent = spent + 1
    if counted then remaining = remaining - 1 end
  else
    -- 0 means taken, and a window about to lapse reads 0: say 1. A key
    -- with no TTL (not ours) is asked about again after a window.
    local ttl = redis.call('PTTL', key)
    if ttl == 0 then ttl = 1 elseif ttl < 0 then ttl = tonumber(ARGV[3]) end
    table.insert(out, ttl)
  end
end
if counted and spent > 0 then
  if fresh then
    redis.call('SET', KEYS[1], remaining, 'PX', ARGV[6])
  else
    redis.call('SET', KEYS[1], remaining, 'KEEPTTL')
  end
end
table.insert(out, 1, counted and remaining or -1)
return out
";

/// Where the fleet's identify state lives, and who this host is.
pub struct FleetGate {
    link: Link,
    script: redis::Script,
    keys: Keys,
    holder: String,
}

/// What Redis allowed this time.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Allowed {
    pub buckets: BTreeSet<u32>,
    /// The shared budget after this round's grants, if counted.
    pub remaining: Option<u32>,
    /// The soonest another host's window in an asked bucket frees.
    pub retry_at: Option<Instant>,
}

/// After a failure, how long until the next try.
pub const RETRY: Duration = Duration::from_millis(500);

impl FleetGate {
    pub fn new(url: &str, channel: &str, holder: &str) -> Result<FleetGate, redis::RedisError> {
        Ok(FleetGate {
            link: Link::new(redis::Client::open(url)?),
            script: redis::Script::new(ACQUIRE),
            keys: Keys::new(channel),
            holder: holder.to_string(),
        })
    }

    /// Takes the windows of `buckets` that are free (each for `spacing`),
    /// spending the shared budget (`remaining`: this host's count, used if
    /// the fleet has none; `None`: not counted) down to `reserve`.
    pub async fn acquire(
        &mut self,
        buckets: &[u32],
        spacing: Duration,
        remaining: Option<u32>,
        reserve: u32,
        day: Duration,
    ) -> Result<Allowed, redis::RedisError> {
        let asked_at = Instant::now();
        let mut script = self.script.prepare_invoke();
        script
            .key(&self.keys.identify_budget)
            .arg(&self.keys.identify_bucket_prefix)
            .arg(&self.holder)
            .arg(spacing.as_millis() as u64)
            .arg(reserve)
            .arg(remaining.map_or(-1, i64::from))
            .arg(day.as_millis() as u64);
        for b in buckets {
            script.arg(*b);
        }
        let result: redis::RedisResult<Vec<i64>> = async {
            let conn = self.link.conn().await?;
            within(script.invoke_async(conn)).await
        }
        .await;
        let answers = result.inspect_err(|_| self.link.reset())?;
        let mut allowed = Allowed {
            remaining: answers.first().and_then(|r| u32::try_from(*r).ok()),
            ..Allowed::default()
        };
        for (bucket, answer) in buckets.iter().zip(answers.iter().skip(1)) {
            match *answer {
                0 => {
                    allowed.buckets.insert(*bucket);
                }
                ms if ms > 0 => {
                    let at = asked_at + Duration::from_millis(ms as u64);
                    allowed.retry_at = Some(allowed.retry_at.map_or(at, |t| t.min(at)));
                }
                // Held for the budget: the local queue holds too, and says
                // when to look again.
                _ => {}
            }
        }
        Ok(allowed)
    }
}
