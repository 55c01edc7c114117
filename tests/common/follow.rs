//! `mewld logs -f` left running beside a test: what it prints, as it comes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::{wait_for, DEADLINE, MEWLD};

pub struct LogsFollower {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
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
            .stderr(Stdio::null())
            .spawn()
            .expect("mewld logs -f");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push(line);
            }
        });
        let follower = LogsFollower { child, lines };
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

impl Drop for LogsFollower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
