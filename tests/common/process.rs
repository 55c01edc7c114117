//! Scripts and processes: writing an executable, a process's memory and
//! whether it is alive.

use std::path::Path;

use super::{wait_for, DEADLINE};

/// Writes a script and makes it executable.
pub fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write script");
    let mut perms = std::fs::metadata(path).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(path, perms).expect("chmod");
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    rss_kib_if_alive(pid).unwrap_or_else(|| panic!("no VmRSS for process {pid}"))
}

/// As [`rss_kib`], `None` for a process that is gone.
pub fn rss_kib_if_alive(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
}

/// The CPU time (user + system) process `pid` has used, from
/// /proc/<pid>/stat; zero for a process that is gone.
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // After the command name: state is field 0, utime 11, stime 12.
            let after_name = stat[stat.rfind(')')? + 2..].to_string();
            let fields: Vec<u64> = after_name
                .split(' ')
                .skip(11)
                .take(2)
                .filter_map(|f| f.parse().ok())
                .collect();
            Some(fields.iter().sum::<u64>())
        })
        .unwrap_or(0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    std::time::Duration::from_millis(ticks * 1000 / hz)
}

/// The parent of process `pid`, from /proc.
pub fn parent_of(pid: u64) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(1)?.parse().ok()
}

/// Is `pid` a live process (not gone, not a zombie)?
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the command name in parentheses.
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
        Err(_) => false,
    }
}

pub fn assert_all_dead(pids: &[u32]) {
    assert!(!pids.is_empty(), "no cluster pids were recorded");
    wait_for("every cluster process to be gone", DEADLINE, || {
        pids.iter().all(|p| !alive(*p)).then_some(())
    });
}
