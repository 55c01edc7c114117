//! `mewld logs -f` left running beside a test: what it prints, as it comes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::{collect, wait_for, DEADLINE, MEWLD};

pub struct LogsFollower {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    said: Arc<Mutex<Vec<String>>>,
}

impl LogsFollower {
    /// `mewld logs -f -n 1 --json --config <config>`, entries as stored,
    /// once it has printed the newest stored entry: it follows the engine
    /// from then on. The action log must not be empty.
    pub fn start(config: &Path) -> LogsFollower {
        let mut child = Command::new(MEWLD)
            .args(["logs", "-f", "-n", "1", "--json", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mewld logs -f");
        let lines = collect(child.stdout.take().expect("piped"));
        let said = collect(child.stderr.take().expect("piped"));
        let follower = LogsFollower { child, lines, said };
        wait_for("logs -f to catch up", DEADLINE, || {
            (!follower.lines.lock().expect("lock").is_empty()).then_some(())
        });
        follower
    }

    /// Waits until a line printed since the start contains `text`.
    pub fn wait_for_line(&self, what: &str, text: &str) {
        wait_for(what, DEADLINE, || {
            let lines = self.lines.lock().expect("lock");
            lines.iter().skip(1).any(|l| l.contains(text)).then_some(())
        });
    }
}

impl LogsFollower {
    /// Waits for it to end (the engine gone): its exit status and what it
    /// said on stderr.
    pub fn ended(mut self) -> (Option<i32>, String) {
        let status = wait_for("logs -f to end", DEADLINE, || {
            self.child.try_wait().ok().flatten()
        });
        // The collecting thread holds the other handle until stderr closes.
        let said = wait_for("logs -f's stderr to close", DEADLINE, || {
            (Arc::strong_count(&self.said) == 1).then(|| self.said.lock().expect("lock").join("\n"))
        });
        (status.code(), said)
    }
}

impl Drop for LogsFollower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
