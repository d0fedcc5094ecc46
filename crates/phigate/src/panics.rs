//! A panic hook that never prints the panic's message. A message can quote the data being
//! worked on (a slice out of bounds "of `Patient John …`", an `expect` on a parsed value), and
//! PHI must not reach stderr. The location and the thread are printed; a backtrace too when
//! `RUST_BACKTRACE` asks for one (it holds code addresses and names, no data).

use std::fmt::Write as _;
use std::panic::PanicHookInfo;

/// Installs the hook (before anything else runs).
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        let mut line = report(info);
        let bt = std::backtrace::Backtrace::capture();
        if bt.status() == std::backtrace::BacktraceStatus::Captured {
            let _ = write!(line, "\n{bt}");
        }
        eprintln!("{line}");
    }));
}

/// The line printed for a panic: where, in which thread; never the message.
fn report(info: &PanicHookInfo<'_>) -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("<unnamed>");
    let place = match info.location() {
        Some(l) => format!("{}:{}:{}", l.file(), l.line(), l.column()),
        None => "an unknown place".to_string(),
    };
    format!(
        "phigate: thread '{name}' panicked at {place} (the message is withheld: it could quote \
         PHI; set RUST_BACKTRACE=1 for a backtrace)"
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

    #[test]
    fn the_message_is_never_printed() {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|info| SEEN.lock().unwrap().push(super::report(info))));
        let note = String::from("Patient Alan Smith, MRN 4471902");
        let r = std::panic::catch_unwind(|| {
            let _ = &note[..note.len() + 1];
        });
        let r2 = std::panic::catch_unwind(|| panic!("could not parse {note}"));
        std::panic::set_hook(previous);
        assert!(r.is_err() && r2.is_err());
        // Only this test's panics (another test's could land here while the hook is set).
        let seen: Vec<String> =
            SEEN.lock().unwrap().iter().filter(|l| l.contains("panics.rs:")).cloned().collect();
        assert_eq!(seen.len(), 2, "{seen:?}");
        for line in &seen {
            assert!(line.contains("panics.rs:"), "{line}");
            assert!(!line.contains("Alan") && !line.contains("4471902"), "{line}");
        }
    }
}
