//! Managers meeting in Redis (docs/protocol.md §10): every manager claims
//! its clusters there before it starts any; several act as one fleet.
//!
//! Each host runs a slice of the cluster map ([`slice`]; alone, all of
//! it). Its task ([`member`]) keeps the host's record in Redis under a TTL
//! (its heartbeat), reads the other hosts' records ([`store`]), and holds
//! the leader election with atomic scripts ([`scripts`]); after each
//! heartbeat it hands the engine a [`FleetView`]. The rules that use it (which host
//! answers, the launch order across hosts, host loss) are the engine
//! core's. Redis being down is a state here too: the record lapses, the
//! lease with it, and the task keeps trying.

pub mod attach;
mod member;
mod reads;
mod scripts;
mod store;

use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use crate::redis_link::{Keys, Link, COMMAND_TIMEOUT};
use member::{boot_id, Member};
use mewld_core::actlog::unix_secs;
use mewld_core::cluster_map::MapPrint;
use mewld_core::fleet::heartbeat::Heartbeat;
use mewld_core::fleet::per_host::HostSlot;
use mewld_core::fleet::{FleetView, Membership, Refusal};
use mewld_core::model::state::Snapshot;
use store::{FleetStore, RedisStore};

/// Why this host did not join the fleet: refused by what Redis holds, or
/// Redis failed while it asked.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The running fleet task's handle: its views for the engine, and `leave`.
pub struct Fleet {
    pub view: watch::Receiver<Option<FleetView>>,
    leave: Option<oneshot::Sender<oneshot::Sender<()>>>,
}

impl Fleet {
    /// Leaves the fleet: the record and the lease (if held) are deleted,
    /// so the others see this host go at once rather than after the TTL.
    pub async fn leave(mut self) {
        if let Some(leave) = self.leave.take() {
            let (done_tx, done) = oneshot::channel();
            if leave.send(done_tx).is_ok() {
                let _ = tokio::time::timeout(COMMAND_TIMEOUT, done).await;
            }
        }
    }
}

/// Joins the fleet on `url` (alone, `me.solo`: claims every cluster):
/// refuses (with the reason) if a live manager claims one of our clusters,
/// runs another map or counts other hosts; if Redis cannot be reached,
/// goes on and keeps trying in the background (the engine holds the
/// launch until the first view).
pub async fn join(
    url: &str,
    channel: &str,
    me: Membership,
    map: MapPrint,
    snapshot: watch::Receiver<Arc<Snapshot>>,
) -> Result<Fleet, JoinError> {
    let mut store = RedisStore::new(Link::new(redis::Client::open(url)?), Keys::new(channel));
    let member = Member {
        me,
        map,
        started_at: unix_secs(std::time::SystemTime::now()),
        boot_id: boot_id(),
        snapshot,
    };
    let mut old_order = None;
    match store.reach().await {
        Ok(()) => {
            member.claim(&mut store, 0).await?;
            old_order = store.read_exit_order().await?;
        }
        Err(e) => tracing::warn!(error = %e, "cannot reach Redis to join the fleet; retrying"),
    }
    let (view_tx, view) = watch::channel(None);
    let (leave, leave_rx) = oneshot::channel();
    tokio::spawn(member.run(store, Heartbeat::new(old_order), view_tx, leave_rx));
    Ok(Fleet {
        view,
        leave: Some(leave),
    })
}

/// A random id: command ids of messages the manager starts itself (one
/// host per fleet question), run tokens.
pub fn random_id() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 16)
}

/// A random token that makes a host id unique to this run.
pub fn run_token() -> String {
    random_id()[..8].to_string()
}

/// This host's name: the machine's, unless given; made safe for a key.
pub fn host_name(given: Option<&str>) -> String {
    fleet_host_name(given, None)
}

/// The name of this host of a fleet: as given, else the machine's and,
/// with a slot, the slot's number (`vm-1`), so that hosts on one machine
/// differ; made safe for a key.
pub fn fleet_host_name(given: Option<&str>, slot: Option<HostSlot>) -> String {
    let name = match given {
        Some(n) => n.to_string(),
        None => {
            let machine = nix::unistd::gethostname()
                .ok()
                .and_then(|n| n.into_string().ok())
                .unwrap_or_else(|| "host".into());
            slot.map_or_else(|| machine.clone(), |s| s.host_name(&machine))
        }
    };
    name.chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::reads::parse_leader;
    use super::*;
    use mewld_core::fleet::Leader;

    #[test]
    fn leader_values_parse() {
        assert_eq!(
            parse_leader("box-a:12 7"),
            Some(Leader {
                host: "box-a:12".into(),
                epoch: 7
            })
        );
        assert_eq!(parse_leader("nonsense"), None);
        assert_eq!(host_name(Some("a b\tc")), "a_b_c");
        let slot = Some(HostSlot::Index(2));
        assert_eq!(fleet_host_name(Some("given"), slot), "given");
        assert_eq!(
            fleet_host_name(None, slot),
            format!("{}-2", host_name(None))
        );
    }
}
