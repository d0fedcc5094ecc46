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

static BUF: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static FLUSHER: Once = Once::new();

fn lock() -> MutexGuard<'static, Vec<u8>> {
    BUF.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes `buf` to stderr and empties it. A write that fails (stderr closed) drops the lines:
/// there is nowhere else to put them, and keeping them would grow without bound.
fn write_out(buf: &mut Vec<u8>) {
    if !buf.is_empty() {
        let _ = std::io::stderr().lock().write_all(buf);
        buf.clear();
    }
}

/// Writes out every line gathered so far.
pub fn flush() {
    write_out(&mut lock());
}

/// The `MakeWriter` for `tracing_subscriber::fmt`: info and debug lines gathered, warnings and
/// errors written out at once. Starts the thread that writes the lines out, and chains a panic
/// hook that writes them out first.
#[derive(Clone, Copy, Debug)]
pub struct Batched;

impl Batched {
    /// The writer (starts its thread on first use).
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
                if let Ok(mut b) = BUF.try_lock() {
                    write_out(&mut b);
                }
                previous(info);
            }));
        });
        Batched
    }
}

impl Default for Batched {
    fn default() -> Self {
        Batched::new()
    }
}

static IMMEDIATE_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// One event's writer: `tracing_subscriber::fmt` writes a whole line through it, then drops it.
#[derive(Debug)]
pub struct LineWriter {
    now: bool,
}

impl std::io::Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut b = lock();
        b.extend_from_slice(bytes);
        if self.now || b.len() >= HIGH_WATER {
            write_out(&mut b);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { now: IMMEDIATE_ONLY.load(std::sync::atomic::Ordering::Relaxed) }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter {
        let now = *meta.level() <= tracing::Level::WARN
            || IMMEDIATE_ONLY.load(std::sync::atomic::Ordering::Relaxed);
        LineWriter { now }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the buffer is process-wide, and no other test of this binary logs through it.
    #[test]
    fn lines_gather_and_go_out_in_order_on_a_warning_or_when_full() {
        let w = Batched::new();
        let gathered = || String::from_utf8_lossy(&lock()).to_string();
        w.make_writer().write_all(b"one\n").unwrap();
        w.make_writer().write_all(b"two\n").unwrap();
        // Still gathered, or both taken by the writer thread; never "two" before "one".
        let s = gathered();
        assert!(s.is_empty() || s == "one\ntwo\n" || s == "two\n", "{s:?}");
        let mut warn = LineWriter { now: true };
        warn.write_all(b"three\n").unwrap();
        assert_eq!(gathered(), "", "a warning goes out at once, with what came before it");
        w.make_writer().write_all(&vec![b'x'; HIGH_WATER - 1]).unwrap();
        w.make_writer().write_all(b"\n").unwrap();
        assert_eq!(gathered(), "", "a full buffer goes out at once");
        w.make_writer().write_all(b"four\n").unwrap();
        std::thread::sleep(EVERY * 10);
        assert_eq!(gathered(), "", "the writer thread writes the lines out");
    }
}
