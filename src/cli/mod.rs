//! The one-shot commands (`mewld status`, `mewld stop 3`, `mewld
//! rolling-restart --wait`, `mewld logs -f`): each reaches the running
//! engine as a client of its control socket (or the whole fleet through
//! its Redis, with `--redis`), does one thing, prints something short, and
//! exits with a status a script can test (docs/operations.md, "The command
//! line"). Operations are logged `via: "cli"` with this process's pid and
//! uid, as the console's are.

pub mod logs;
pub mod roll;
pub mod status;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::control::client::{self, Attached, LinkStatus};
use crate::control::Client;
use crate::fleet;
use mewld_core::model::state::Snapshot;
use mewld_core::model::{Operation, Refused, Via};

/// Done as asked (for `status`: every cluster runs).
pub const OK: u8 = 0;
/// Answered, but not as hoped: refused, a cluster not running, a roll
/// that did not finish.
pub const NOT_OK: u8 = 1;
/// The engine could not be reached.
pub const UNREACHABLE: u8 = 2;

/// How long the engine's first snapshot may take to arrive.
const FIRST_SNAPSHOT: Duration = Duration::from_secs(10);

/// Where the engine is.
pub enum Target {
    /// One manager's control socket.
    Socket(PathBuf),
    /// The fleet sharing this config's Redis.
    Fleet(Box<Config>),
}

/// An engine reached, with its first snapshot in, or the step of its
/// start if it does not run yet.
pub struct Reached {
    pub attached: Attached,
    /// Empty while the engine is `starting`.
    pub snapshot: Arc<Snapshot>,
    /// The engine does not run yet: the step of its start ("asking
    /// Discord"). It refuses every operation but `shutdown` and
    /// `restart-process`, which abandon the start.
    pub starting: Option<String>,
}

impl Target {
    /// Reaches the engine as `client`, or says why not.
    pub async fn reach(&self, client: Client) -> Result<Reached, String> {
        let mut attached = match self {
            Target::Socket(path) => client::attach(path, client).await?,
            Target::Fleet(config) => fleet::attach::attach(config).await?,
        };
        let mut snapshots = attached.handle.snapshot();
        let first = async {
            loop {
                tokio::select! {
                    changed = snapshots.changed() => return changed.map(|()| None),
                    Some(news) = attached.status.recv() => {
                        if let LinkStatus::Starting(phase) = news {
                            return Ok(Some(phase));
                        }
                    }
                }
            }
        };
        let starting = match tokio::time::timeout(FIRST_SNAPSHOT, first).await {
            Ok(Ok(starting)) => starting,
            Ok(Err(_)) => return Err("the engine went away before it said anything".into()),
            Err(_) => return Err(format!("the engine sent nothing for {FIRST_SNAPSHOT:?}")),
        };
        let snapshot = snapshots.borrow_and_update().clone();
        Ok(Reached {
            attached,
            snapshot,
            starting,
        })
    }
}

/// Exit status when whoever read our output went away (`mewld logs |
/// head`): what a process killed by SIGPIPE reports to its shell, so
/// `set -o pipefail` sees it as it sees `cat`'s.
const READER_GONE: i32 = 128 + 13;

/// Prints `text` and a newline. A closed stdout ends the command quietly
/// with [`READER_GONE`], where `println!` would panic.
pub fn say(text: impl std::fmt::Display) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").is_err() {
        std::process::exit(READER_GONE);
    }
}

/// Says why the engine could not be reached, and the status for it.
pub fn unreachable(why: &str) -> u8 {
    eprintln!("mewld: {why}");
    UNREACHABLE
}

/// Who asks, as the action log names a command's process. Over the
/// control socket the engine reads it from the socket itself.
fn me() -> Via {
    Via::Cli(fleet::attach::this_process())
}

/// `mewld start|stop|restart <id>`, `shutdown`, `restart-process`: asks
/// once and says what the engine answered. `shutdown` and
/// `restart-process` then wait until the engine has stopped every
/// cluster and gone (or, during its start, given the start up and gone).
pub async fn operate(target: &Target, op: Operation) -> u8 {
    let mut reached = match target.reach(Client::Command).await {
        Ok(reached) => reached,
        Err(why) => return unreachable(&why),
    };
    if let Err(refused) = reached.attached.handle.request(op, me()).await {
        return refusal(op, &refused);
    }
    let what = match op.cluster() {
        Some(id) => format!("{} cluster {id}", op.name()),
        None => op.name().to_string(),
    };
    if !matches!(op, Operation::Shutdown | Operation::RestartProcess) {
        say(format_args!(
            "{what}: accepted (`mewld status` shows how it goes)"
        ));
        return OK;
    }
    match &reached.starting {
        Some(phase) => say(format_args!(
            "{what}: accepted; giving up the start ({phase})…"
        )),
        None => say(format_args!("{what}: accepted; stopping every cluster…")),
    }
    if matches!(target, Target::Fleet(_)) {
        // Each host stops its own; the fleet's records show it.
        return OK;
    }
    while let Some(news) = reached.attached.status.recv().await {
        if let LinkStatus::Ended(why) = news {
            say(why);
            break;
        }
    }
    OK
}

/// Prints a refusal and returns the status for it.
fn refusal(op: Operation, refused: &Refused) -> u8 {
    match refused {
        Refused::NotConnected | Refused::EngineStopped => {
            unreachable(&format!("{}: {refused}", op.name()))
        }
        _ => {
            eprintln!("mewld: {} refused: {refused}", op.name());
            NOT_OK
        }
    }
}
