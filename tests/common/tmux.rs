//! The console in a real terminal: a tmux server of a test's own.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{wait_for, write_executable, DEADLINE, MEWLD};

/// A script that runs `mewld <args>` in `dir` (after the shell lines of
/// `setup`) and records its exit status, which tmux does not keep. Returns
/// the script and the status file; both are named after `name`.
pub fn mewld_script(dir: &Path, name: &str, setup: &str, args: &str) -> (PathBuf, PathBuf) {
    let script = dir.join(format!("{name}.sh"));
    let status = dir.join(format!("{name}-status"));
    write_executable(
        &script,
        &format!(
            "#!/bin/sh\nexport TERM=xterm-256color\n{setup}\ncd '{}'\n'{MEWLD}' {args}\necho $? > '{}'\n",
            dir.display(),
            status.display()
        ),
    );
    (script, status)
}

/// A tmux server of the test's own, killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start(name: &str, script: &Path, width: u16, height: u16) -> Tmux {
        let socket = format!("mewld-test-{name}-{}", std::process::id());
        let status = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ])
            .arg(script)
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run tmux ({e}); install it with `apt-get install tmux`")
            });
        assert!(status.success(), "tmux new-session failed");
        Tmux { socket }
    }

    pub fn keys(&self, keys: &[&str]) {
        for k in keys {
            let status = Command::new("tmux")
                .args(["-L", &self.socket, "send-keys", "-t", "t", k])
                .status()
                .expect("tmux send-keys");
            assert!(status.success());
        }
    }

    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "t"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn wait_screen(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        wait_for(what, DEADLINE, || {
            let s = self.screen();
            pred(&s).then_some(s)
        })
    }

    /// Waits for the program in the session to end and returns the exit
    /// status its script recorded in `status_file`.
    pub fn wait_exit_status(&self, status_file: &Path) -> String {
        wait_for("the console to exit", DEADLINE, || {
            (!self.session_alive()).then_some(())
        });
        std::fs::read_to_string(status_file)
            .expect("exit status")
            .trim()
            .to_string()
    }

    pub fn session_alive(&self) -> bool {
        Command::new("tmux")
            .args(["-L", &self.socket, "has-session", "-t", "t"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}
