//! The guardian: a tiny process that outlives the manager just long enough
//! to kill whatever its clusters left behind, however the manager died.
//!
//! Why it exists: the parent-death signal (see engine/process.rs) reaches
//! only a cluster's direct child. A bot started through a wrapper script
//! without `exec`, or one that daemonises a helper, leaves processes that a
//! SIGKILLed manager cannot clean up any more, and the next start then runs
//! two bots per shard set.
//!
//! How it works: at start-up the manager runs its own binary again as the
//! hidden `mewld guardian <tag>` (a fresh exec, so no fork of a threaded
//! process). The guardian's stdin is one end of a socket pair; only the
//! manager holds the other (close-on-exec, so clusters never inherit it).
//! The manager sends `+<pgid>` when it spawns a cluster (each cluster leads
//! its own process group) and `-<pgid>` once the cluster is reaped and its
//! group swept, so a recycled pid is never killed. When the socket reaches
//! end-of-file, the manager is gone (SIGKILL, crash or a clean exit alike),
//! and the guardian SIGKILLs every group still registered, then every
//! process whose environment carries this manager's tag
//! (`MEWLD_MANAGER_ID=<tag>`, set on every cluster and inherited by what it
//! starts), which catches descendants that left their group (`setsid`).
//! Only a process that both left the group and dropped its environment
//! (`env -i`) escapes.
//!
//! The guardian runs in a process group of its own and ignores SIGTERM,
//! SIGINT and SIGHUP: an operator's Ctrl-C or `kill` of the manager's group,
//! or a terminal hang-up, must not take it before the manager has finished.
//! Under systemd with `KillMode=mixed` (the unit in contrib/, docs/operations.md), SIGTERM goes to
//! the manager alone and systemd's final SIGKILL sweeps the whole cgroup,
//! guardian included, so nothing depends on the guardian there; it matters
//! under a console in tmux, `KillMode=process`, supervisord, containers.
//! Its stdout is closed; its stderr is the manager's, written only when it
//! had something to kill.
//!
//! Not used, on purpose: PR_SET_CHILD_SUBREAPER on the manager (tokio reaps
//! only the children it spawned, so adopted orphans would pile up as
//! zombies, and the adoption is lost anyway when the manager dies), and
//! cgroups (v2 with a delegated, writable subtree is not available in
//! general; where systemd runs the manager it already kills by cgroup).

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nix::sys::signal::{kill, killpg, signal, SigHandler, Signal};
use nix::unistd::Pid;

/// The environment variable that marks every process of this manager's clusters.
pub const TAG_VAR: &str = "MEWLD_MANAGER_ID";

/// How long the guardian keeps killing tagged processes that fork while
/// being killed, before it gives up (a process stuck in the kernel).
const SWEEP_ROUNDS: u32 = 250;
const SWEEP_PAUSE: Duration = Duration::from_millis(20);

/// This manager's tag: random, so a guardian never touches the clusters of
/// another manager (or of this manager's successor after `restartproc`).
pub fn tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| format!("{:032x}", rand::random::<u128>()))
}

/// The manager's end. Process-wide, because what it guards against is this
/// process dying; `None` until [`start`] (unit tests and benches run
/// without one).
static LINK: Mutex<Option<Link>> = Mutex::new(None);

struct Link {
    child: Child,
    socket: UnixStream,
    /// The groups the guardian has been told of: bounded by the clusters
    /// running; kept so a replacement guardian can be told them again.
    groups: BTreeSet<u32>,
}

/// Starts the guardian. On failure the manager runs on without one (the
/// parent-death signal still covers each cluster's direct child).
pub fn start() {
    match Link::spawn(BTreeSet::new()) {
        Ok(link) => *lock() = Some(link),
        Err(e) => tracing::warn!(
            error = %e,
            "could not start the guardian; if the manager is killed, processes started by a cluster's own children may be left running"
        ),
    }
}

/// Tells the guardian about the process group a cluster leads.
pub fn register(pgid: u32) {
    send(pgid, true);
}

/// The cluster leading `pgid` was reaped and its group swept: forget it,
/// so that a new process reusing the number is never killed.
pub fn unregister(pgid: u32) {
    send(pgid, false);
}

fn lock() -> std::sync::MutexGuard<'static, Option<Link>> {
    // A panic elsewhere while holding the lock leaves the set usable.
    LINK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn send(pgid: u32, add: bool) {
    let mut guard = lock();
    let Some(link) = guard.as_mut() else { return };
    if add {
        link.groups.insert(pgid);
    } else {
        link.groups.remove(&pgid);
    }
    let line = format!("{}{pgid}\n", if add { '+' } else { '-' });
    // Non-blocking: the engine never waits on the guardian. A guardian that
    // died or stopped reading is replaced by one told every group at once.
    if let Err(e) = link.socket.write_all(line.as_bytes()) {
        tracing::warn!(error = %e, "the guardian stopped listening; starting a new one");
        let groups = std::mem::take(&mut link.groups);
        let _ = link.child.kill();
        let _ = link.child.try_wait();
        match Link::spawn(groups) {
            Ok(new) => *guard = Some(new),
            Err(e) => {
                tracing::error!(error = %e, "could not restart the guardian; running without one");
                *guard = None;
            }
        }
    }
}

impl Link {
    fn spawn(groups: BTreeSet<u32>) -> std::io::Result<Link> {
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        // /proc/self/exe is the running binary even if it was replaced on disk.
        let child = Command::new("/proc/self/exe")
            .arg0("mewld")
            .arg("guardian")
            .arg(tag())
            .args(groups.iter().map(u32::to_string))
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Out of the manager's group, so signals meant for it miss the guardian.
            .process_group(0)
            .spawn()?;
        Ok(Link {
            child,
            socket: ours,
            groups,
        })
    }
}

/// The guardian process (`mewld guardian <tag> [pgid…]`): follows the
/// registrations until the manager's end closes, then kills what is left.
pub fn run(tag: &str, groups: &[u32]) -> u8 {
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: setting a signal to be ignored installs no handler code.
        if let Err(e) = unsafe { signal(sig, SigHandler::SigIgn) } {
            eprintln!("mewld guardian: cannot ignore {sig}: {e}");
        }
    }
    let mut live: BTreeSet<u32> = groups.iter().copied().collect();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock();
    let mut line = String::new();
    loop {
        line.clear();
        // End-of-file or an error: either way the manager is gone.
        match lines.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let text = line.trim();
        let (add, number) = match text.split_at_checked(1) {
            Some(("+", n)) => (true, n),
            Some(("-", n)) => (false, n),
            _ => continue,
        };
        let Ok(pgid) = number.parse::<u32>() else {
            continue;
        };
        if add {
            live.insert(pgid);
        } else {
            live.remove(&pgid);
        }
    }
    let groups_killed = live
        .iter()
        .filter(|pgid| {
            i32::try_from(**pgid)
                .ok()
                .filter(|p| *p > 1)
                .is_some_and(|p| killpg(Pid::from_raw(p), Signal::SIGKILL).is_ok())
        })
        .count();
    let tagged = kill_tagged(tag);
    if groups_killed > 0 || tagged > 0 {
        eprintln!(
            "mewld guardian: the manager is gone; killed {groups_killed} cluster process group(s) and {tagged} other cluster process(es) it left behind"
        );
    }
    0
}

/// SIGKILLs every process whose environment holds `TAG_VAR=tag`, scanning
/// again until none is left (one may fork while its parent is killed).
/// Returns how many distinct processes were signalled.
fn kill_tagged(tag: &str) -> usize {
    let needle = format!("{TAG_VAR}={tag}");
    let me = std::process::id();
    let mut signalled = BTreeSet::new();
    for _ in 0..SWEEP_ROUNDS {
        let found: Vec<u32> = tagged_pids(needle.as_bytes())
            .into_iter()
            .filter(|p| *p != me)
            .collect();
        if found.is_empty() {
            break;
        }
        for pid in found {
            // The window between reading its environment and this kill is
            // microseconds; the pid cannot be recycled that fast.
            if let Ok(raw) = i32::try_from(pid) {
                if kill(Pid::from_raw(raw), Signal::SIGKILL).is_ok() {
                    signalled.insert(pid);
                }
            }
        }
        std::thread::sleep(SWEEP_PAUSE);
    }
    signalled.len()
}

/// Live processes whose environment has the entry `needle` exactly. A zombie
/// has no environment left, so it is not counted; processes of other users
/// cannot be read and are skipped.
fn tagged_pids(needle: &[u8]) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|entry| entry == needle))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_process_by_its_environment_entry_only() {
        let tag = format!("{:032x}", rand::random::<u128>());
        let spawn = |value: &str| {
            Command::new("sleep")
                .arg("30")
                .env(TAG_VAR, value)
                .spawn()
                .expect("run sleep")
        };
        let mut marked = spawn(&tag);
        // A value that merely starts with the tag is someone else's.
        let mut other = spawn(&format!("{tag}0"));
        let needle = format!("{TAG_VAR}={tag}");
        // Until `sleep` has exec'd, its environ is still the test's own.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut found = tagged_pids(needle.as_bytes());
        while found.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            found = tagged_pids(needle.as_bytes());
        }
        assert_eq!(found, vec![marked.id()]);
        assert_eq!(kill_tagged(&tag), 1);
        assert!(marked.wait().expect("wait").code().is_none(), "killed");
        assert!(other.try_wait().expect("try_wait").is_none(), "untouched");
        let _ = other.kill();
        let _ = other.wait();
    }
}
