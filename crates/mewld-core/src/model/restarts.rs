//! Why clusters are restarted, and how often for each reason. One list:
//! the console's detail and the `reason` label of the metric
//! `mewld_cluster_restarts_total` both name these.

use serde::{Deserialize, Serialize};

/// Why a cluster was started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    /// It exited unasked and the crash rules started it again.
    Crash,
    /// It left a diagnostic unanswered and was stopped to be restarted.
    PingFailure,
    /// An operator's `restart`.
    Operator,
    /// Its turn in a rolling restart.
    RollingRestart,
    /// Its shards changed in a reshard.
    Reshard,
}

impl RestartReason {
    /// Every reason, in the order they are shown.
    pub const ALL: [RestartReason; 5] = [
        RestartReason::Crash,
        RestartReason::PingFailure,
        RestartReason::Operator,
        RestartReason::RollingRestart,
        RestartReason::Reshard,
    ];

    /// The reason's name, as the metric's label and the detail write it.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::Crash => "crash",
            RestartReason::PingFailure => "ping_failure",
            RestartReason::Operator => "operator",
            RestartReason::RollingRestart => "rolling_restart",
            RestartReason::Reshard => "reshard",
        }
    }
}

/// A cluster's restarts by reason. The fields are named as the reasons
/// (a test holds them to [`RestartReason::as_str`]); a field missing from
/// the JSON reads 0 and an unknown one is ignored, so managers and
/// attached consoles of other versions read each other's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestartCounts {
    pub crash: u32,
    pub ping_failure: u32,
    pub operator: u32,
    pub rolling_restart: u32,
    pub reshard: u32,
}

impl RestartCounts {
    pub fn get(&self, reason: RestartReason) -> u32 {
        match reason {
            RestartReason::Crash => self.crash,
            RestartReason::PingFailure => self.ping_failure,
            RestartReason::Operator => self.operator,
            RestartReason::RollingRestart => self.rolling_restart,
            RestartReason::Reshard => self.reshard,
        }
    }

    /// One more restart for `reason`.
    pub fn count(&mut self, reason: RestartReason) {
        let n = match reason {
            RestartReason::Crash => &mut self.crash,
            RestartReason::PingFailure => &mut self.ping_failure,
            RestartReason::Operator => &mut self.operator,
            RestartReason::RollingRestart => &mut self.rolling_restart,
            RestartReason::Reshard => &mut self.reshard,
        };
        *n = n.saturating_add(1);
    }

    /// Every restart, whatever the reason.
    pub fn total(&self) -> u32 {
        RestartReason::ALL
            .iter()
            .fold(0, |sum: u32, r| sum.saturating_add(self.get(*r)))
    }

    /// The reasons with at least one restart, in [`RestartReason::ALL`]'s order.
    pub fn nonzero(&self) -> impl Iterator<Item = (RestartReason, u32)> + '_ {
        RestartReason::ALL
            .into_iter()
            .map(|r| (r, self.get(r)))
            .filter(|(_, n)| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_are_named_as_the_reasons() {
        let mut counts = RestartCounts::default();
        for (n, reason) in RestartReason::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                counts.count(reason);
            }
        }
        let json = serde_json::to_value(counts).expect("serialises");
        for (n, reason) in RestartReason::ALL.into_iter().enumerate() {
            assert_eq!(json[reason.as_str()], n + 1, "{}", reason.as_str());
        }
        assert_eq!(json.as_object().map(|o| o.len()), Some(5));
        assert_eq!(counts.total(), 1 + 2 + 3 + 4 + 5);
    }

    #[test]
    fn missing_and_unknown_fields_read_as_zero_and_are_ignored() {
        let read: RestartCounts =
            serde_json::from_str(r#"{"operator": 2, "from_a_later_version": 7}"#).expect("reads");
        assert_eq!(read.total(), 2);
        assert_eq!(
            read.nonzero().collect::<Vec<_>>(),
            vec![(RestartReason::Operator, 2)]
        );
    }
}
