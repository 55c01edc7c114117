//! Cluster processes: the exact command line of docs/protocol.md §4, spawning,
//! capturing output line by line, and stopping with SIGTERM then SIGKILL.
//!
//! Each process gets its own supervisor task that owns the `Child`; the
//! engine talks to it through a [`ProcHandle`] and hears back through the
//! callbacks it passed in. Signals go out only while the child is not yet
//! reaped, so its pid (and group id) cannot have been recycled; the one
//! exception is the final sweep of the group, explained where it happens.

use std::ffi::OsString;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgid, Pid};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

use crate::guardian;

/// Longest output line passed on whole; the rest of a longer one is dropped.
const MAX_LINE: usize = 16 * 1024;
/// How long output may still drain after the process exited.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

use mewld_core::model::{CommandLine, ExitInfo, SpawnError, Stream};

/// The engine's end of a running process.
#[derive(Debug)]
pub struct ProcHandle {
    pub pid: u32,
    /// Holds one request: the supervisor acts on the first, so a second
    /// one while it is stopping is dropped.
    stop: mpsc::Sender<Duration>,
}

impl ProcHandle {
    /// Asks the process to stop: SIGTERM to its process group now, SIGKILL
    /// after `grace`. The exit is reported through the spawn callback, at
    /// the latest [`KILL_TIMEOUT`] (plus the output drain) after SIGKILL.
    pub fn stop(&self, grace: Duration) {
        let _ = self.stop.try_send(grace);
    }
}

/// How long a SIGKILLed process may take to end before its exit is
/// reported anyway: only a process stuck in the kernel (a hung NFS read)
/// outlives SIGKILL, and shutdown must not wait for it for ever.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why `program` could not be started, from the OS's error.
fn spawn_error(program: &OsString, e: &std::io::Error) -> SpawnError {
    use nix::errno::Errno;
    let shortage = [Errno::EMFILE, Errno::ENFILE, Errno::ENOMEM, Errno::EAGAIN];
    SpawnError {
        error: format!("{}: {e}", Path::new(program).display()),
        transient: e
            .raw_os_error()
            .is_some_and(|code| shortage.contains(&Errno::from_raw(code))),
    }
}

/// Starts `cmd` with `env` added to the manager's environment. `on_line`
/// gets every output line; `on_exit` is called once, when the process has
/// ended and its output is drained.
pub fn spawn(
    cmd: &CommandLine,
    env: &[(String, String)],
    on_line: impl Fn(Stream, String) + Send + Sync + 'static,
    on_exit: impl FnOnce(ExitInfo) + Send + 'static,
) -> Result<ProcHandle, SpawnError> {
    let mut child = command(cmd, env)
        .spawn()
        .map_err(|e| spawn_error(&cmd.program, &e))?;
    let pid = child.id().unwrap_or(0);
    if pid > 0 {
        guardian::register(pid);
    }
    let on_line = std::sync::Arc::new(on_line);
    let mut readers = Vec::with_capacity(2);
    if let Some(out) = child.stdout.take() {
        let on_line = on_line.clone();
        readers.push(tokio::spawn(read_lines(out, Stream::Stdout, on_line)));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(err, Stream::Stderr, on_line)));
    }
    let (stop_tx, stop_rx) = mpsc::channel::<Duration>(1);
    tokio::spawn(async move {
        let info = supervise(child, pid, stop_rx).await;
        // Let the readers pass on the last lines, but not wait for ever: a
        // descendant in another group may hold the pipes open. One deadline
        // for both, so such a descendant costs one timeout, not two.
        let drained_by = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        for mut reader in readers {
            if tokio::time::timeout_at(drained_by, &mut reader)
                .await
                .is_err()
            {
                reader.abort();
            }
        }
        on_exit(info);
    });
    Ok(ProcHandle { pid, stop: stop_tx })
}

/// The command for `cmd`: its own process group, piped output, and the
/// tag and parent-death signal that keep it from outliving the manager.
fn command(cmd: &CommandLine, env: &[(String, String)]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .current_dir(&cmd.cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        // Inherited by everything the cluster starts, so the guardian can
        // find descendants that left the process group.
        .env(guardian::TAG_VAR, guardian::tag())
        // systemd's notification socket is the manager's, not the bot's.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so stopping it reaches whatever it started.
        .process_group(0)
        // Belt and braces: if the supervisor task is dropped, kill the child.
        .kill_on_drop(true);
    die_with_parent(&mut command);
    command
}

/// Waits for the child to end (or stops it when asked), sweeps what its
/// group left behind, and says how it ended.
async fn supervise(
    mut child: tokio::process::Child,
    pid: u32,
    mut stop_rx: mpsc::Receiver<Duration>,
) -> ExitInfo {
    let status = tokio::select! {
        status = child.wait() => Some(status),
        Some(grace) = stop_rx.recv() => stop(&mut child, pid, grace).await,
    };
    let info = match &status {
        Some(Ok(status)) => ExitInfo::from(*status),
        Some(Err(e)) => {
            tracing::error!(pid, error = %e, "waiting for a cluster failed");
            UNKNOWN_EXIT
        }
        None => {
            tracing::error!(
                pid,
                ?KILL_TIMEOUT,
                "cluster still running after SIGKILL (stuck in the kernel?); reporting it stopped and reaping it when it ends"
            );
            UNKNOWN_EXIT
        }
    };
    match status {
        Some(_) => sweep(pid),
        // Still unreaped, so its pid stays ours: reap and sweep later.
        None => {
            tokio::spawn(async move {
                let _ = child.wait().await;
                sweep(pid);
            });
        }
    }
    info
}

const UNKNOWN_EXIT: ExitInfo = ExitInfo {
    code: None,
    signal: None,
};

/// SIGTERM, then SIGKILL after `grace`. Returns `None` if the child has
/// not ended [`KILL_TIMEOUT`] after SIGKILL.
async fn stop(
    child: &mut tokio::process::Child,
    pid: u32,
    grace: Duration,
) -> Option<std::io::Result<ExitStatus>> {
    signal_group(pid, Signal::SIGTERM);
    // A child that moved itself to another group is not reached through
    // its old one. (Only then: a second SIGTERM can mean "force" to a bot.)
    if let Ok(raw) = i32::try_from(pid) {
        if getpgid(Some(Pid::from_raw(raw))).is_ok_and(|g| g.as_raw() != raw) {
            let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
        }
    }
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        return Some(status);
    }
    tracing::warn!(pid, ?grace, "cluster ignored SIGTERM; sending SIGKILL");
    signal_group(pid, Signal::SIGKILL);
    // The child itself too, wherever its group is; tokio signals only a
    // child it has not reaped yet, so this pid is still ours.
    let _ = child.start_kill();
    tokio::time::timeout(KILL_TIMEOUT, child.wait()).await.ok()
}

/// After the leader is reaped: whatever its process group left behind has
/// no parent to reap it, so SIGKILL the group, then tell the guardian to
/// forget it. Linux keeps a pid from reuse while it names a live group, so
/// this only reaches a stranger if the group is empty and the pid was taken
/// by a new group leader in the last microseconds.
fn sweep(pid: u32) {
    signal_group(pid, Signal::SIGKILL);
    if pid > 0 {
        guardian::unregister(pid);
    }
}

fn signal_group(pid: u32, signal: Signal) {
    let Ok(pid) = i32::try_from(pid) else { return };
    if pid > 0 {
        // ESRCH (already gone) is the expected case after an exit.
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

/// On Linux the kernel sends the child SIGKILL when the manager dies, even
/// by SIGKILL; the guardian (src/guardian.rs) takes care of what the child
/// started.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut tokio::process::Command) {
    let parent = nix::unistd::getpid();
    let open_files = crate::fd_budget::original_open_files();
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe system calls (prctl, getppid, setrlimit).
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The manager may have died between fork and prctl.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other("the manager exited during spawn"));
            }
            // A cluster gets the limit mewld was given, not the raised one
            // (programs that still use select() break above 1024).
            if let Some((soft, hard)) = open_files {
                let _ = setrlimit(Resource::RLIMIT_NOFILE, soft, hard);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut tokio::process::Command) {}

async fn read_lines(
    source: impl AsyncRead + Unpin,
    stream: Stream,
    on_line: std::sync::Arc<impl Fn(Stream, String) + Send + Sync + 'static>,
) {
    let mut reader = BufReader::new(source);
    let mut line = Vec::new();
    loop {
        // Read through the buffer so a line without end cannot grow memory.
        let (used, ended) = match reader.fill_buf().await {
            Ok([]) | Err(_) => {
                if !line.is_empty() {
                    on_line(stream, finish_line(&mut line));
                }
                return;
            }
            Ok(buf) => match buf.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    keep(&mut line, &buf[..i]);
                    (i + 1, true)
                }
                None => {
                    keep(&mut line, buf);
                    (buf.len(), false)
                }
            },
        };
        reader.consume(used);
        if ended {
            on_line(stream, finish_line(&mut line));
        }
    }
}

fn keep(line: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_LINE.saturating_sub(line.len());
    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

fn finish_line(line: &mut Vec<u8>) -> String {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let text = String::from_utf8_lossy(line).into_owned();
    line.clear();
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_shortage_is_a_transient_spawn_error() {
        let program = OsString::from("/srv/bot/bot.sh");
        let of = |errno: nix::errno::Errno| {
            spawn_error(&program, &std::io::Error::from_raw_os_error(errno as i32))
        };
        use nix::errno::Errno::*;
        for errno in [EMFILE, ENFILE, ENOMEM, EAGAIN] {
            assert!(of(errno).transient, "{errno}");
        }
        for errno in [ENOENT, EACCES, ENOEXEC, E2BIG] {
            assert!(!of(errno).transient, "{errno}");
        }
        let e = of(EMFILE).error;
        assert!(e.starts_with("/srv/bot/bot.sh: Too many open files"), "{e}");
    }

    #[test]
    fn exit_info_reads_well() {
        assert_eq!(
            ExitInfo {
                code: Some(3),
                signal: None
            }
            .to_string(),
            "code 3"
        );
        assert_eq!(
            ExitInfo {
                code: None,
                signal: Some(9)
            }
            .to_string(),
            "signal 9 (SIGKILL)"
        );
    }
}
