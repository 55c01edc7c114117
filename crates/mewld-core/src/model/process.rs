//! A cluster's process as the core sees it: what to run, how it ended.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl From<ExitStatus> for ExitInfo {
    fn from(s: ExitStatus) -> Self {
        ExitInfo {
            code: s.code(),
            signal: s.signal(),
        }
    }
}

/// How it ended, for a text that already says it exited ("last exit:
/// code 3", "last exit: signal 9 (SIGKILL)").
impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "code {code}"),
            (None, Some(sig)) => match Signal::try_from(sig) {
                Ok(s) => write!(f, "signal {sig} ({})", s.as_str()),
                Err(_) => write!(f, "signal {sig}"),
            },
            (None, None) => f.write_str("unknown status"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What to run for one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub program: OsString,
    pub args: Vec<String>,
    pub cwd: PathBuf,
}

/// Why a cluster's process could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnError {
    pub error: String,
    /// The machine was short of something it may have again soon: file
    /// descriptors (EMFILE, ENFILE), memory (ENOMEM) or processes (EAGAIN).
    pub transient: bool,
}
