//! Health pings (docs/protocol.md §5.3): a diagnostic per running cluster
//! every `ping_interval`, answers matched by nonce, and the channel probe
//! that keeps a Redis stall from being taken for dead clusters.

use super::cluster::RestartCause;
use super::{Command, Core, Now, Timer};
use crate::actlog::LogEvent;
use crate::cluster_map::ClusterId;
use crate::health::{Phase, Ping, Timeout};
use crate::model::health::Health;
use crate::model::state::ClusterState;
use crate::protocol::{self, DiagAnswer};

/// A round of diagnostics is sent in this many slots, spread over
/// `ping_interval`: cluster `i` in slot `i mod PING_SLOTS`. All at once, a
/// thousand bots woke together every round and everything else on the
/// machine (replies to `statuses` among them) waited behind them for
/// ~100 ms (`cargo bench --bench scale`).
pub(super) const PING_SLOTS: usize = 10;

impl Core {
    /// How often a slot of the round goes out.
    pub(super) fn ping_tick(&self) -> std::time::Duration {
        self.config.ping_interval / PING_SLOTS as u32
    }

    /// Sends the next slot's diagnostics: each running cluster of it gets
    /// one, and one echo follows them. So each running cluster is pinged
    /// once per `ping_interval`.
    pub(super) fn ping_next_slot(&mut self, now: Now) {
        let slot = self.ping_slot;
        self.ping_slot = (slot + 1) % PING_SLOTS;
        if !self.transport_connected || self.exiting.is_some() {
            return;
        }
        let mut sent = false;
        for idx in (slot..self.clusters.len()).step_by(PING_SLOTS) {
            if self.clusters[idx].state == ClusterState::Running {
                self.send_ping(now, idx);
                sent = true;
            }
        }
        if sent {
            self.send_echo(now);
        }
    }

    /// One cluster's diagnostic, with the echo that shows it was delivered.
    pub(super) fn ping(&mut self, now: Now, idx: usize) {
        self.send_ping(now, idx);
        self.send_echo(now);
    }

    fn send_ping(&mut self, now: Now, idx: usize) {
        let nonce = self.next_id();
        let c = &self.clusters[idx];
        self.pings.sent(
            nonce.clone(),
            Ping {
                cluster: c.spec.id,
                generation: c.generation,
                sent_at: now.at,
                connection: self.connection,
                phase: Phase::Sent,
            },
        );
        let id = c.spec.id;
        self.publish_on(self.cluster_channel(id), protocol::diag_request(id, &nonce));
        self.set_timer(Timer::Ping(nonce), self.config.ping_timeout);
    }

    /// Publishes a probe to ourselves (see [`Phase`]). One connection
    /// publishes everything in order and one subscription hears every
    /// channel of the manager's, so the probe coming back on its channel
    /// shows what went before it delivered on theirs.
    fn send_echo(&mut self, now: Now) {
        let nonce = self.next_id();
        self.publish_on(self.own_channel(), protocol::echo(&nonce));
        self.pings.echo_sent(nonce, now.at);
    }

    pub(super) fn on_diag(&mut self, now: Now, answer: DiagAnswer) {
        let Some(ping) = self.pings.take(&answer.nonce) else {
            tracing::debug!(nonce = %answer.nonce, "a diagnostic answer nobody is waiting for");
            return;
        };
        self.emit(Command::CancelTimer(Timer::Ping(answer.nonce.clone())));
        let Ok(idx) = self.index(ping.cluster) else {
            return;
        };
        let c = &mut self.clusters[idx];
        if c.generation == ping.generation && c.is_alive() {
            let (shards, strays) = answer.health(&c.spec.shards);
            if strays > 0 && !std::mem::replace(&mut c.said_strays, true) {
                tracing::warn!(
                    cluster = c.spec.id,
                    strays,
                    "a diagnostic answer named shards that are not the cluster's; \
                     they are left out (said once per cluster)"
                );
            }
            c.health = Some(Health {
                at: now.wall,
                round_trip_ms: u64::try_from(
                    now.at.saturating_duration_since(ping.sent_at).as_millis(),
                )
                .unwrap_or(u64::MAX),
                shards,
            });
        }
    }

    pub(super) fn on_echo(&mut self, now: Now, nonce: &str) {
        let outcome = self.pings.echo_returned(nonce, now.at);
        if let Some(lasted) = outcome.stall_ended {
            self.log(LogEvent::ChannelRecovered {
                stalled_secs: lasted.as_secs(),
            });
        }
        for ping in outcome.failed {
            self.ping_failed(ping);
        }
    }

    pub(super) fn on_ping_timeout(&mut self, now: Now, nonce: String) {
        // A reconnect since the ping, or an outage now, explains the silence.
        let explained = |ping: &Ping| {
            ping.connection != self.connection
                || !self.transport_connected
                || self.exiting.is_some()
        };
        if self.pings.peek(&nonce).is_some_and(explained) {
            self.pings.take(&nonce);
            return;
        }
        let timeout = self.config.ping_timeout;
        match self.pings.timed_out(&nonce, now.at, timeout) {
            Timeout::Gone => {}
            Timeout::WaitUntil(at) => {
                self.set_timer(Timer::Ping(nonce), at.saturating_duration_since(now.at));
            }
            Timeout::Confirm { send_echo } => {
                if send_echo {
                    self.send_echo(now);
                }
                // If even this echo does not come back, it is a stall.
                self.set_timer(Timer::Ping(nonce), timeout);
            }
            Timeout::Stalled { ping, first } => {
                tracing::debug!(
                    id = ping.cluster,
                    "no answer to a diagnostic, but the channel did not show it delivered; not counted"
                );
                if first {
                    self.log(LogEvent::ChannelStall {
                        waited_secs: timeout.as_secs(),
                        error: "the channel delivered nothing the manager published; missed diagnostics are not counted until it does".into(),
                    });
                }
            }
        }
    }

    /// A diagnostic shown unanswered: the cluster is restarted.
    fn ping_failed(&mut self, ping: Ping) {
        let Ok(idx) = self.index(ping.cluster) else {
            return;
        };
        let c = &self.clusters[idx];
        if c.generation != ping.generation || !c.is_alive() || c.state == ClusterState::Stopping {
            return;
        }
        let replacing = c.replacement().is_some();
        self.log(LogEvent::PingFailure { id: ping.cluster });
        if replacing {
            // Not restarted on top of its replacement: that one takes over
            // or is given up, and the next round judges again.
            return;
        }
        self.stop(idx, Some(RestartCause::PingCheck));
    }

    /// The cluster's process is gone: its pings will not be answered.
    pub(super) fn forget_pings(&mut self, id: ClusterId) {
        for nonce in self.pings.forget(id) {
            self.emit(Command::CancelTimer(Timer::Ping(nonce)));
        }
    }
}
