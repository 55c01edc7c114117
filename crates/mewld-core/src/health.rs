//! Diagnostics in flight (docs/protocol.md §5.3): each ping has its own nonce,
//! so every answer reaches its own request however many are in flight.
//! (The original funnelled all answers through one channel and lost some.)

use std::collections::HashMap;
use std::time::Instant;

use crate::cluster_map::ClusterId;

/// One ping waiting for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    pub cluster: ClusterId,
    /// The process it was sent to; an answer for an older one is stale.
    pub generation: u64,
    pub sent_at: Instant,
    /// The transport connection it was sent on; after a reconnect a missing
    /// answer says nothing about the cluster.
    pub connection: u64,
    pub phase: Phase,
}

/// How much the manager knows about a ping's trip. A missing answer only
/// counts against a cluster once the channel is shown to have worked: the
/// ping was delivered (an echo published after it came back), the cluster
/// then had the whole `ping_timeout` to answer, and an echo published after
/// that came back too, so an answer sent in time would have been seen.
/// A Redis stall (`CLIENT PAUSE`, a slow network) shows as neither, and
/// counts against nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Sent,
    /// An echo published after the ping came back at this instant.
    Delivered(Instant),
    /// Out of time; waiting for an echo published at or after `since`.
    Confirming {
        since: Instant,
    },
}

/// What a ping's timer firing means.
#[derive(Debug, PartialEq, Eq)]
pub enum Timeout {
    /// Answered, forgotten, or already decided.
    Gone,
    /// The channel did not show it delivered the ping (or the check) in
    /// time: the silence says nothing about the cluster. `first` is true
    /// for the first one of a stall, so it is logged once.
    Stalled { ping: Ping, first: bool },
    /// Delivered late: the cluster gets its full time from delivery.
    WaitUntil(Instant),
    /// Out of time: it fails if the answer is still missing when an echo
    /// published from now on comes back. `send_echo` is false when one
    /// such echo is already on its way.
    Confirm { send_echo: bool },
}

/// Diagnostics in flight, and the manager's echoes on the channel that
/// tell whether the channel itself works.
#[derive(Debug, Default)]
pub struct Pings {
    in_flight: HashMap<String, Ping>,
    /// Echo nonce → when it was published.
    echoes: HashMap<String, Instant>,
    /// Since when the channel has failed to deliver, if it has.
    stalled_since: Option<Instant>,
}

/// Echoes that have not come back are forgotten past this many; only the
/// newest matter for any decision.
const MAX_ECHOES: usize = 64;

/// What an echo coming back decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EchoOutcome {
    /// Pings now shown to be unanswered: each is a `ping_failure`.
    pub failed: Vec<Ping>,
    /// The stall this echo ended, and how long it lasted.
    pub stall_ended: Option<std::time::Duration>,
}

impl Pings {
    pub fn sent(&mut self, nonce: String, ping: Ping) {
        self.in_flight.insert(nonce, ping);
    }

    /// The ping with this nonce, if it is still waited for; an answer and a
    /// failure each take it, so whichever comes second finds nothing.
    pub fn take(&mut self, nonce: &str) -> Option<Ping> {
        self.in_flight.remove(nonce)
    }

    pub fn peek(&self, nonce: &str) -> Option<&Ping> {
        self.in_flight.get(nonce)
    }

    /// Forgets the pings of a cluster whose process has gone; returns
    /// their nonces.
    pub fn forget(&mut self, cluster: ClusterId) -> Vec<String> {
        let gone: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, p)| p.cluster == cluster)
            .map(|(n, _)| n.clone())
            .collect();
        for n in &gone {
            self.in_flight.remove(n);
        }
        gone
    }

    /// Records an echo published at `at`.
    pub fn echo_sent(&mut self, nonce: String, at: Instant) {
        if self.echoes.len() >= MAX_ECHOES {
            if let Some(oldest) = self
                .echoes
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(n, _)| n.clone())
            {
                self.echoes.remove(&oldest);
            }
        }
        self.echoes.insert(nonce, at);
    }

    /// The transport reconnected: echoes sent before will not come back.
    pub fn connection_lost(&mut self) {
        self.echoes.clear();
    }

    /// An echo came back at `now`: everything published before it has been
    /// delivered.
    pub fn echo_returned(&mut self, nonce: &str, now: Instant) -> EchoOutcome {
        let Some(published) = self.echoes.remove(nonce) else {
            return EchoOutcome::default();
        };
        // Older echoes are answered by this one.
        self.echoes.retain(|_, t| *t > published);
        let mut failed_nonces = Vec::new();
        for (n, ping) in &mut self.in_flight {
            match ping.phase {
                Phase::Sent if ping.sent_at <= published => ping.phase = Phase::Delivered(now),
                Phase::Confirming { since } if since <= published => failed_nonces.push(n.clone()),
                _ => {}
            }
        }
        EchoOutcome {
            failed: failed_nonces
                .iter()
                .filter_map(|n| self.in_flight.remove(n))
                .collect(),
            stall_ended: self
                .stalled_since
                .take()
                .map(|t| now.saturating_duration_since(t)),
        }
    }

    /// The timer of ping `nonce` fired at `now`; `timeout` is `ping_timeout`.
    pub fn timed_out(
        &mut self,
        nonce: &str,
        now: Instant,
        timeout: std::time::Duration,
    ) -> Timeout {
        let Some(ping) = self.in_flight.get_mut(nonce) else {
            return Timeout::Gone;
        };
        match ping.phase {
            Phase::Delivered(at) if now < at + timeout => Timeout::WaitUntil(at + timeout),
            Phase::Delivered(_) => {
                ping.phase = Phase::Confirming { since: now };
                let pending = self.echoes.values().any(|t| *t >= now);
                Timeout::Confirm {
                    send_echo: !pending,
                }
            }
            Phase::Sent | Phase::Confirming { .. } => {
                let ping = *ping;
                self.in_flight.remove(nonce);
                let first = self.stalled_since.is_none();
                if first {
                    self.stalled_since = Some(ping.sent_at);
                }
                Timeout::Stalled { ping, first }
            }
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::model::health::Health;
    use crate::protocol::ShardHealth;
    use std::time::Duration;

    fn ping(cluster: ClusterId) -> Ping {
        Ping {
            cluster,
            generation: 1,
            sent_at: Instant::now(),
            connection: 1,
            phase: Phase::Sent,
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A ping sent at `t0` and an echo right behind it.
    fn one_ping(t0: Instant) -> Pings {
        let mut p = Pings::default();
        p.sent(
            "p".into(),
            Ping {
                sent_at: t0,
                ..ping(1)
            },
        );
        p.echo_sent("e0".into(), t0);
        p
    }

    #[test]
    fn a_delivered_unanswered_ping_fails_once_the_channel_is_shown_working() {
        let t0 = Instant::now();
        let mut p = one_ping(t0);
        assert_eq!(p.echo_returned("e0", t0 + ms(5)), EchoOutcome::default());
        let deadline = t0 + TIMEOUT;
        // Delivered 5 ms late: the cluster gets those 5 ms too.
        assert_eq!(
            p.timed_out("p", deadline, TIMEOUT),
            Timeout::WaitUntil(t0 + ms(5) + TIMEOUT)
        );
        let now = t0 + ms(5) + TIMEOUT;
        assert_eq!(
            p.timed_out("p", now, TIMEOUT),
            Timeout::Confirm { send_echo: true }
        );
        p.echo_sent("e1".into(), now);
        let out = p.echo_returned("e1", now + ms(3));
        assert_eq!(
            out.failed.iter().map(|f| f.cluster).collect::<Vec<_>>(),
            vec![1]
        );
        assert!(p.is_empty());
    }

    #[test]
    fn an_answer_while_confirming_saves_the_cluster() {
        let t0 = Instant::now();
        let mut p = one_ping(t0);
        p.echo_returned("e0", t0);
        let now = t0 + TIMEOUT;
        assert_eq!(
            p.timed_out("p", now, TIMEOUT),
            Timeout::Confirm { send_echo: true }
        );
        p.echo_sent("e1".into(), now);
        assert!(p.take("p").is_some(), "the answer arrives first");
        assert_eq!(p.echo_returned("e1", now + ms(1)).failed, vec![]);
    }

    #[test]
    fn a_stall_counts_against_nobody_and_is_reported_once() {
        let t0 = Instant::now();
        let mut p = one_ping(t0);
        p.sent(
            "q".into(),
            Ping {
                sent_at: t0,
                ..ping(2)
            },
        );
        // The echo never comes back: the pings were never shown delivered.
        let now = t0 + TIMEOUT;
        assert!(matches!(
            p.timed_out("p", now, TIMEOUT),
            Timeout::Stalled { first: true, .. }
        ));
        assert!(matches!(
            p.timed_out("q", now, TIMEOUT),
            Timeout::Stalled { first: false, .. }
        ));
        assert!(p.is_empty());
        // The next echo back ends the stall and says how long it was.
        p.echo_sent("e1".into(), now);
        let out = p.echo_returned("e1", now + TIMEOUT);
        assert_eq!(out.stall_ended, Some(2 * TIMEOUT));
    }

    #[test]
    fn a_stall_after_delivery_is_not_a_failure_either() {
        let t0 = Instant::now();
        let mut p = one_ping(t0);
        p.echo_returned("e0", t0);
        let now = t0 + TIMEOUT;
        assert_eq!(
            p.timed_out("p", now, TIMEOUT),
            Timeout::Confirm { send_echo: true }
        );
        p.echo_sent("e1".into(), now);
        // The confirming echo does not come back within another timeout.
        assert!(matches!(
            p.timed_out("p", now + TIMEOUT, TIMEOUT),
            Timeout::Stalled { .. }
        ));
        assert_eq!(p.echo_returned("e1", now + 3 * TIMEOUT).failed, vec![]);
    }

    #[test]
    fn pings_timing_out_together_share_one_echo() {
        let t0 = Instant::now();
        let mut p = one_ping(t0);
        p.sent(
            "q".into(),
            Ping {
                sent_at: t0,
                ..ping(2)
            },
        );
        p.echo_returned("e0", t0);
        let now = t0 + TIMEOUT;
        assert_eq!(
            p.timed_out("p", now, TIMEOUT),
            Timeout::Confirm { send_echo: true }
        );
        p.echo_sent("e1".into(), now);
        assert_eq!(
            p.timed_out("q", now, TIMEOUT),
            Timeout::Confirm { send_echo: false }
        );
        assert_eq!(p.echo_returned("e1", now).failed.len(), 2);
    }

    #[test]
    fn echoes_in_flight_are_bounded() {
        let mut p = Pings::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ECHOES as u64 * 3) {
            p.echo_sent(format!("e{i}"), t0 + ms(i));
        }
        assert_eq!(p.echoes.len(), MAX_ECHOES);
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn each_answer_reaches_its_own_ping() {
        let mut p = Pings::default();
        for c in 0..40 {
            p.sent(format!("n{c}"), ping(c));
        }
        // Answers in any order all match.
        for c in (0..40).rev() {
            assert_eq!(p.take(&format!("n{c}")).map(|x| x.cluster), Some(c));
        }
        assert!(p.is_empty());
        assert_eq!(p.take("n1"), None, "an answer counts once");
    }

    #[test]
    fn a_timeout_after_the_answer_is_nothing() {
        let mut p = Pings::default();
        p.sent("a".into(), ping(0));
        assert!(p.take("a").is_some());
        assert!(p.take("a").is_none());
        p.sent("b".into(), ping(3));
        p.forget(3);
        assert!(p.take("b").is_none());
    }

    #[test]
    fn health_summaries() {
        let h = Health {
            at: SystemTime::now(),
            round_trip_ms: 3,
            shards: vec![
                ShardHealth {
                    shard_id: 0,
                    up: true,
                    latency: Some(40.0),
                    guilds: Some(10),
                    users: None,
                },
                ShardHealth {
                    shard_id: 1,
                    up: false,
                    latency: None,
                    guilds: Some(5),
                    users: None,
                },
                ShardHealth {
                    shard_id: 2,
                    up: true,
                    latency: Some(60.0),
                    guilds: None,
                    users: None,
                },
            ],
        };
        assert_eq!(h.shards_up(), 2);
        assert_eq!(h.mean_latency(), Some(50.0));
        assert_eq!(h.guilds(), 15);
    }
}
