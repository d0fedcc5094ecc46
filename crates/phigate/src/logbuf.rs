//! The log writer of `phigate serve`: lines gathered in memory and written to stderr in
//! batches, off the request's path.
//!
//! The gateway logs one line per request. Written straight to stderr, each line was a
//! `write(2)` on the thread that answers the request, under stderr's lock that both runtime
//! threads contend for (about 2% of the CPU a request takes at saturation). Here a line is
//! appended to a buffer instead, and a thread writes the buffer out every [`EVERY`] (one
//! `write(2)` for all the lines gathered meanwhile, at any request rate), or at once when it
//! holds [`HIGH_WATER`] bytes. No thread is woken per line: a channel to a writer thread (as
//! `tracing-appender`'s non-blocking writer does) would wake it for each line when it is idle.
//!
//! Nothing is dropped: a writer that cannot keep up (stderr is a pipe nobody reads) holds the
//! lines back under the lock, as stderr itself would. Warnings and errors are written out at
//! once, with every line before them, in order. A panic writes the buffer out before its
//! message; a clean exit does at its end ([`flush`]). A process killed outright (SIGKILL, the
//! OOM killer) loses the info and debug lines of its last [`EVERY`] at most; the ledger, not
//! the log, is the record of each request.

use std::io::Write as _;
use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How often the gathered lines are written out.
pub const EVERY: Duration = Duration::from_millis(20);
/// A buffer this large is written out at once, by the thread that filled it.
pub const HIGH_WATER: usize = 64 * 1024;

/// Lines gathered for one output.
struct Lines {
    buf: Mutex<Vec<u8>>,
    /// Where the lines go. A write that fails (stderr closed) drops them: there is nowhere
    /// else to put them, and keeping them would grow without bound.
    out: fn(&[u8]),
}

impl Lines {
    const fn new(out: fn(&[u8])) -> Lines {
        Lines { buf: Mutex::new(Vec::new()), out }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.buf.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_out(&self, buf: &mut Vec<u8>) {
        if !buf.is_empty() {
            (self.out)(buf);
            buf.clear();
        }
    }

    /// Adds a line; writes everything out when `now` or when the buffer is full.
    fn append(&self, bytes: &[u8], now: bool) {
        let mut b = self.lock();
        b.extend_from_slice(bytes);
        if now || b.len() >= HIGH_WATER {
            self.write_out(&mut b);
        }
    }

    fn flush(&self) {
        self.write_out(&mut self.lock());
    }
}

fn to_stderr(bytes: &[u8]) {
    let _ = std::io::stderr().lock().write_all(bytes);
}

static STDERR: Lines = Lines::new(to_stderr);
static FLUSHER: Once = Once::new();
static IMMEDIATE_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes out every line gathered so far.
pub fn flush() {
    STDERR.flush();
}

/// The `MakeWriter` for `tracing_subscriber::fmt`: info and debug lines gathered, warnings and
/// errors written out at once. Starts the thread that writes the lines out, and chains a panic
/// hook that writes them out first.
#[derive(Clone, Copy)]
pub struct Batched {
    lines: &'static Lines,
}

impl std::fmt::Debug for Batched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batched").finish_non_exhaustive()
    }
}

impl Batched {
    /// The writer to stderr (starts its thread on first use).
    pub fn new() -> Batched {
        FLUSHER.call_once(|| {
            let spawned = std::thread::Builder::new().name("log-writer".into()).spawn(|| loop {
                std::thread::sleep(EVERY);
                flush();
            });
            if spawned.is_err() {
                // No thread: every line is written as it comes (as without this module).
                IMMEDIATE_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                // `try_lock`: a panic while the buffer is locked (inside a write) must not
                // deadlock; its lines then stay where they are.
                if let Ok(mut b) = STDERR.buf.try_lock() {
                    STDERR.write_out(&mut b);
                }
                previous(info);
            }));
        });
        Batched { lines: &STDERR }
    }
}

impl Default for Batched {
    fn default() -> Self {
        Batched::new()
    }
}

/// One event's writer: `tracing_subscriber::fmt` writes a whole line through it, then drops it.
pub struct LineWriter {
    lines: &'static Lines,
    now: bool,
}

impl std::io::Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.lines.append(bytes, self.now);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            lines: self.lines,
            now: IMMEDIATE_ONLY.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter {
        let now = *meta.level() <= tracing::Level::WARN
            || IMMEDIATE_ONLY.load(std::sync::atomic::Ordering::Relaxed);
        LineWriter { lines: self.lines, now }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static WRITTEN: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    fn record(bytes: &[u8]) {
        WRITTEN.lock().unwrap().push(bytes.to_vec());
    }
    static TEST: Lines = Lines::new(record);

    #[test]
    fn lines_gather_and_go_out_in_order_on_a_warning_or_when_full() {
        let w = Batched { lines: &TEST };
        let written = || WRITTEN.lock().unwrap().clone();
        w.make_writer().write_all(b"one\n").unwrap();
        w.make_writer().write_all(b"two\n").unwrap();
        assert!(written().is_empty(), "info lines wait");
        LineWriter { lines: &TEST, now: true }.write_all(b"three\n").unwrap();
        assert_eq!(
            written(),
            [b"one\ntwo\nthree\n".to_vec()],
            "a warning goes out with all before it"
        );
        w.make_writer().write_all(&vec![b'x'; HIGH_WATER - 1]).unwrap();
        assert_eq!(written().len(), 1);
        w.make_writer().write_all(b"\n").unwrap();
        assert_eq!(written().len(), 2, "a full buffer goes out at once");
        assert_eq!(written()[1].len(), HIGH_WATER);
        w.make_writer().write_all(b"four\n").unwrap();
        TEST.flush();
        assert_eq!(written()[2], b"four\n", "a flush writes out what is left");
        TEST.flush();
        assert_eq!(written().len(), 3, "nothing left, nothing written");
    }

    #[test]
    fn warnings_are_written_at_once() {
        let w = Batched::new();
        let warn = tracing::Metadata::new(
            "w",
            "t",
            tracing::Level::WARN,
            None,
            None,
            None,
            tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&CALLSITE)),
            tracing::metadata::Kind::EVENT,
        );
        assert!(w.make_writer_for(&warn).now);
        assert!(!w.make_writer().now || IMMEDIATE_ONLY.load(std::sync::atomic::Ordering::Relaxed));
    }

    struct Callsite;
    impl tracing::callsite::Callsite for Callsite {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &tracing::Metadata<'_> {
            unreachable!()
        }
    }
    static CALLSITE: Callsite = Callsite;
}
