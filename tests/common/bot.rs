//! The repo's fake bot as clusters: its directory and entry scripts, what
//! it records, and the identify rule its grants must follow.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{write_executable, MEWLD};

/// A bot directory with the fake bot behind a shell script, as a real
/// bot's entry point would be.
pub struct BotDir {
    pub dir: tempfile::TempDir,
}

impl BotDir {
    pub fn new() -> BotDir {
        let dir = tempfile::tempdir().expect("tempdir");
        // The script records exactly what it was given ($0 and every
        // argument, one per line), then becomes the fake bot.
        let script = format!(
            "#!/bin/sh\n{{ printf '%s\\n' \"$0\"; for a in \"$@\"; do printf '%s\\n' \"$a\"; done; }} > \"$FAKEBOT_RECORD/argv-$$\"\nexec '{MEWLD}' fake-bot \"$@\"\n"
        );
        write_executable(&dir.path().join("bot.sh"), &script);
        std::fs::create_dir(dir.path().join("records")).expect("records dir");
        BotDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn records_dir(&self) -> PathBuf {
        self.path().join("records")
    }

    /// The JSON each fake bot start wrote, oldest first.
    pub fn records(&self) -> Vec<Value> {
        let mut out: Vec<(std::time::SystemTime, Value)> = std::fs::read_dir(self.records_dir())
            .expect("read records")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| {
                let modified = e.metadata().ok()?.modified().ok()?;
                let text = std::fs::read_to_string(e.path()).ok()?;
                Some((modified, serde_json::from_str(&text).ok()?))
            })
            .collect();
        out.sort_by_key(|(t, _)| *t);
        out.into_iter().map(|(_, v)| v).collect()
    }

    /// Every identify grant the fake bots recorded (`shard`, `bucket`,
    /// `at_us`), oldest first.
    pub fn grants(&self) -> Vec<Value> {
        self.read_all("grant")
    }

    /// The records with this extension, by their `at_us`.
    fn read_all(&self, extension: &str) -> Vec<Value> {
        records_in(&self.records_dir(), extension)
    }

    /// Every `launch_next` the fake bots said (`cluster_id`, `pid`,
    /// `at_us`), oldest first.
    pub fn launches(&self) -> Vec<Value> {
        self.read_all("launched")
    }

    /// Every SIGTERM a fake bot got (`cluster_id`, `pid`, `at_us`),
    /// oldest first.
    pub fn sigterms(&self) -> Vec<Value> {
        self.read_all("sigterm")
    }

    /// The argv the script recorded for the fake bot with process id `pid`
    /// (the script execs, so it has the bot's pid).
    pub fn script_argv(&self, pid: u64) -> Vec<String> {
        let text = std::fs::read_to_string(self.records_dir().join(format!("argv-{pid}")))
            .expect("argv record");
        text.lines().map(String::from).collect()
    }

    /// How many times cluster `id` has been started.
    pub fn starts_of(&self, id: u64) -> usize {
        self.records()
            .iter()
            .filter(|r| r["cluster_id"] == id)
            .count()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.records()
            .iter()
            .filter_map(|r| r["pid"].as_u64())
            .map(|p| p as u32)
            .collect()
    }
}

/// The fake bots' records in `dir` with this extension, by their `at_us`.
pub fn records_in(dir: &Path, extension: &str) -> Vec<Value> {
    let mut out: Vec<Value> = std::fs::read_dir(dir)
        .expect("read records")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == extension))
        .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok())
        .collect();
    out.sort_by_key(|g| g["at_us"].as_u64());
    out
}

/// Each cluster prints this many lines of about 100 bytes (several MiB in
/// all, far beyond a pipe's 64 KiB), then leaves a `chatter-done-<pid>` mark.
pub const CHATTER_LINES: u32 = 20_000;

/// A bot entry point that chatters on stdout in the background, then
/// becomes the fake bot (the chatter is in the cluster's process group, so
/// it is stopped with the cluster). With `gated`, the chatter waits for
/// [`start_chatter`].
pub fn chatty_bot(bot: &BotDir, gated: bool) {
    let wait = if gated {
        "while [ ! -e \"$FAKEBOT_RECORD/chatter-go\" ]; do sleep 0.1; done; "
    } else {
        ""
    };
    write_executable(
        &bot.path().join("chatty.sh"),
        &format!(
            "#!/bin/sh\n( {wait}i=0; while [ $i -lt {CHATTER_LINES} ]; do echo \"chatter $i: lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor\"; i=$((i+1)); done; touch \"$FAKEBOT_RECORD/chatter-done-$$\" ) &\nexec /bin/sh \"$(dirname \"$0\")/bot.sh\" \"$@\"\n"
        ),
    );
}

/// Lets gated chatty bots start their chatter.
pub fn start_chatter(bot: &BotDir) {
    std::fs::write(bot.records_dir().join("chatter-go"), "").expect("write the chatter gate");
}

pub fn chatter_done(bot: &BotDir) -> usize {
    std::fs::read_dir(bot.records_dir())
        .expect("records dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("chatter-done-"))
        .count()
}

/// Discord's identify window for one bucket, in µs.
pub const WINDOW_US: u64 = 5_000_000;

/// Checks every recorded grant against Discord's rule: the bucket is the
/// shard's, and two grants of a bucket are at least 5 s apart.
pub fn assert_within_rate_limit(grants: &[Value], max_concurrency: u64) {
    let mut by_bucket: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for g in grants {
        let shard = g["shard"].as_u64().expect("shard");
        assert_eq!(g["bucket"].as_u64(), Some(shard % max_concurrency), "{g}");
        let at = g["at_us"].as_u64().expect("at_us");
        by_bucket
            .entry(shard % max_concurrency)
            .or_default()
            .push(at);
    }
    for (bucket, mut times) in by_bucket {
        times.sort();
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= WINDOW_US,
                "bucket {bucket} granted {} ms apart: {grants:?}",
                (pair[1] - pair[0]) / 1000
            );
        }
    }
}
