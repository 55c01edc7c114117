//! Where mewld's own output goes, written so that it never blocks or aborts
//! the engine: the daemon's log (stderr), the daemon's cluster output
//! (stdout) and the console's log file all go through [`LossyLines`], a
//! bounded queue drained by a thread of its own. A stalled reader (a paused
//! terminal, a stuck pipe) or a broken destination (disk full, closed pipe)
//! costs lines, which are counted and reported, never the engine's time.
//!
//! Nothing here writes with `eprintln!`/`println!`: those panic when the
//! stream fails, and a panic whose report cannot be printed aborts the
//! process. That is why the fmt layers below also turn tracing-subscriber's
//! own `eprintln!` fallback (`log_internal_errors`) off.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Bytes a queue may hold; a line that does not fit is dropped. About
/// 5,000 log lines, or a few seconds of a chatty bot's output.
const QUEUE_BYTES: usize = 1024 * 1024;
/// Dropped lines are reported (as a warning in the log) at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// How long the last lines get to reach their destination at exit.
const FLUSH_AT_EXIT: Duration = Duration::from_secs(1);

/// What happened to a queue's lines: how many were dropped, and the first
/// write error, if any. Shared with whoever wants to show it (the console).
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<HealthInner>);

#[derive(Debug, Default)]
struct HealthInner {
    dropped: AtomicU64,
    failure: OnceLock<String>,
}

impl Health {
    /// Lines dropped so far: the queue was full, or the write failed.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    /// The first error the destination gave, e.g. "No space left on device".
    pub fn failure(&self) -> Option<&str> {
        self.0.failure.get().map(String::as_str)
    }

    fn drop_line(&self) {
        self.0.dropped.fetch_add(1, Ordering::Relaxed);
    }

    fn fail(&self, error: String) {
        let _ = self.0.failure.set(error);
    }
}

/// Lines for a destination that may be slow or broken. [`LossyLines::send`]
/// never waits: the line goes into a queue of at most [`QUEUE_BYTES`] that a
/// thread of its own writes out; when the queue is full, or the write fails,
/// the line is dropped and counted in [`Health`], and the thread logs a
/// warning with the count (itself a lossy log line) at most every
/// [`REPORT_EVERY`].
#[derive(Debug, Clone)]
pub struct LossyLines {
    tx: mpsc::Sender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    health: Health,
}

impl LossyLines {
    /// Starts the writing thread for `dest`; `what` names the lines in the
    /// drop report ("log lines on stderr"). Without a thread (the system
    /// refused one) every line is dropped, and counted.
    pub fn start(what: &'static str, dest: impl Write + Send + 'static) -> LossyLines {
        let (tx, rx) = mpsc::channel();
        let lines = LossyLines {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            health: Health::default(),
        };
        let (queued, health) = (lines.queued.clone(), lines.health.clone());
        let spawned = std::thread::Builder::new()
            .name("mewld-output".into())
            .spawn(move || drain(rx, dest, &queued, &health, what));
        if let Err(e) = spawned {
            lines
                .health
                .fail(format!("cannot start its writing thread: {e}"));
        }
        lines
    }

    /// Queues `line` (which should end with a newline), or drops it.
    pub fn send(&self, line: Vec<u8>) {
        // An empty line still costs a message: count it as one byte.
        let cost = line.len().max(1);
        let before = self.queued.fetch_add(cost, Ordering::AcqRel);
        if before + cost > QUEUE_BYTES || self.tx.send(line).is_err() {
            self.queued.fetch_sub(cost, Ordering::AcqRel);
            self.health.drop_line();
        }
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Waits until every queued line is written, or `deadline` has passed
    /// (the destination may be stuck for good). Blocks: for the way out.
    pub fn flush_within(&self, deadline: Duration) {
        let start = Instant::now();
        while self.queued.load(Ordering::Acquire) > 0 && start.elapsed() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The writing thread: writes each line, counts the ones that fail, and
/// reports drops. Ends when every sender is gone.
fn drain(
    rx: mpsc::Receiver<Vec<u8>>,
    mut dest: impl Write,
    queued: &AtomicUsize,
    health: &Health,
    what: &str,
) {
    let mut reported = 0;
    let mut last_report = Instant::now();
    // The error since the last report, which says why lines were lost.
    let mut error: Option<String> = None;
    loop {
        match rx.recv_timeout(REPORT_EVERY) {
            Ok(line) => {
                if let Err(e) = dest.write_all(&line).and_then(|()| dest.flush()) {
                    health.drop_line();
                    health.fail(e.to_string());
                    error = Some(e.to_string());
                }
                queued.fetch_sub(line.len().max(1), Ordering::AcqRel);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if last_report.elapsed() >= REPORT_EVERY {
            last_report = Instant::now();
            let dropped = health.dropped();
            if dropped > reported {
                let why = match error.take() {
                    Some(e) => format!("not writable: {e}"),
                    None => "too slow: its reader is not keeping up".into(),
                };
                tracing::warn!(lines = dropped - reported, "dropped {what}: {why}");
                reported = dropped;
            }
        }
    }
}

impl<'a> MakeWriter<'a> for LossyLines {
    type Writer = &'a LossyLines;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// tracing's fmt layer writes each event with one `write_all`, so one
/// `write` is one line.
impl Write for &LossyLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.send(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Gives the last log lines [`FLUSH_AT_EXIT`] to be written when dropped.
#[must_use = "the last log lines are lost if this is dropped at once"]
pub struct LogGuard(LossyLines);

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.0.flush_within(FLUSH_AT_EXIT);
    }
}

/// One line straight to stderr, for before the log exists or after it has
/// gone (start-up errors). A failed write is ignored: there is nowhere else
/// to say it.
pub fn to_stderr(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Colour codes only for a terminal, and not when `NO_COLOR` is set.
fn ansi_for(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && color_wanted()
}

/// Colour unless `NO_COLOR` is set to something (https://no-color.org):
/// for the log's lines and the console's screen alike.
pub fn color_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// For people: time, level, target, message and fields.
    #[default]
    Text,
    /// For log shippers: one JSON object per line (`timestamp`, `level`,
    /// `target`, `message` and the fields).
    Json,
}

/// Installs the global subscriber writing to `writer`. Internal errors of
/// the subscriber are not printed: on a broken stderr that print aborted.
fn install<W>(writer: W, ansi: bool, format: LogFormat)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .log_internal_errors(false)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// The daemon's log: stderr, through a lossy queue, so a full disk, a closed
/// pipe or a stalled reader never stops the engine.
pub fn init_daemon(format: LogFormat) -> LogGuard {
    let stderr = LossyLines::start("log lines on stderr", std::io::stderr());
    install(stderr.clone(), ansi_for(&std::io::stderr()), format);
    LogGuard(stderr)
}

/// A cluster's log (the fake bot's): straight to stderr, as a bot's would
/// be, without a thread of its own, but never panicking on a write error.
pub fn init_cluster() {
    install(
        std::io::stderr,
        ansi_for(&std::io::stderr()),
        LogFormat::Text,
    );
}

/// The console's log file and how writing it goes, for the status line.
#[derive(Debug, Clone)]
pub struct ConsoleLog {
    /// The absolute path, as shown in the help; `None`: no log file.
    pub path: Option<String>,
    /// Why it could not be opened; then nothing is logged.
    open_error: Option<String>,
    health: Health,
}

impl ConsoleLog {
    /// No log file (`mewld attach` without `--log-file`): the console's
    /// own log lines are dropped.
    pub fn off() -> ConsoleLog {
        ConsoleLog {
            path: None,
            open_error: None,
            health: Health::default(),
        }
    }

    /// The problem to show the operator, if there is one: the file could not
    /// be opened, or a write to it failed (disk full, …).
    pub fn problem(&self) -> Option<String> {
        let path = self.path.as_deref().unwrap_or("-");
        if let Some(e) = &self.open_error {
            return Some(format!("log file {path} unwritable: {e}; logging off"));
        }
        self.health
            .failure()
            .map(|e| format!("log file {path} unwritable: {e}; log lines are dropped"))
    }
}

/// In console mode the log goes to a file: the screen belongs to the
/// console. A file that cannot be opened or written is not an error: the
/// console runs without a log and says so in its status line.
pub fn init_console(path: &Path, format: LogFormat) -> (ConsoleLog, Option<LogGuard>) {
    let shown = std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    match file {
        Ok(file) => {
            let lines = LossyLines::start("log lines to the log file", file);
            install(lines.clone(), false, format);
            let log = ConsoleLog {
                path: Some(shown),
                open_error: None,
                health: lines.health().clone(),
            };
            (log, Some(LogGuard(lines)))
        }
        Err(e) => {
            let log = ConsoleLog {
                path: Some(shown),
                open_error: Some(e.to_string()),
                health: Health::default(),
            };
            (log, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A destination that fails every write, as /dev/full does.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(28))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A destination whose reader never reads: the first write never returns.
    struct Stuck(Arc<Mutex<()>>);

    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            let _held = self.0.lock();
            Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A destination that keeps what it is given.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl Write for Kept {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_reach_a_working_destination_in_order() {
        let kept = Kept::default();
        let lines = LossyLines::start("test lines", kept.clone());
        for i in 0..100 {
            lines.send(format!("line {i}\n").into_bytes());
        }
        lines.flush_within(Duration::from_secs(30));
        let text = String::from_utf8(kept.0.lock().expect("lock").clone()).expect("utf-8");
        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);
        assert_eq!(lines.health().dropped(), 0);
        assert_eq!(lines.health().failure(), None);
    }

    #[test]
    fn a_failing_destination_drops_and_counts_and_keeps_the_error() {
        let lines = LossyLines::start("test lines", Full);
        for _ in 0..10 {
            lines.send(b"x\n".to_vec());
        }
        lines.flush_within(Duration::from_secs(30));
        assert_eq!(lines.health().dropped(), 10);
        let failure = lines.health().failure().expect("a failure");
        assert!(failure.contains("No space left on device"), "{failure}");
    }

    #[test]
    fn a_stuck_destination_never_blocks_the_sender_and_bounds_the_queue() {
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().expect("lock");
        let lines = LossyLines::start("test lines", Stuck(gate.clone()));
        let line = vec![b'x'; 1023];
        let sent = 4 * QUEUE_BYTES / 1024;
        for _ in 0..sent {
            lines.send(line.clone());
        }
        // What the queue holds is bounded; everything past it was dropped.
        let fit = QUEUE_BYTES / line.len();
        assert_eq!(lines.health().dropped(), (sent - fit) as u64);
        assert!(lines.queued.load(Ordering::Acquire) <= QUEUE_BYTES);
        // Flushing gives up after its deadline.
        lines.flush_within(Duration::from_millis(100));
        drop(held);
    }

    #[test]
    fn an_unopenable_log_file_is_a_problem_to_show_not_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, guard) = init_console(&dir.path().join("missing/dir/mewld.log"), LogFormat::Text);
        assert!(guard.is_none());
        let problem = log.problem().expect("a problem");
        assert!(
            problem.contains("missing/dir/mewld.log unwritable"),
            "{problem}"
        );
        assert!(problem.contains("No such file"), "{problem}");
        assert!(problem.ends_with("logging off"), "{problem}");
    }
}
