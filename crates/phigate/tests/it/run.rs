//! The built binary, run in a clean environment: none of this process's `PHIGATE_*` variables
//! reach it (a developer's shell may name a store, a key or a config), only those a test gives.

use std::io::Write;
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_phigate");

/// `phigate` without this process's `PHIGATE_*` variables, with `env` set.
pub fn command(env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PHIGATE_") {
            c.env_remove(k);
        }
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs `phigate ARGS` with `env`, writes `stdin` (or nothing) and closes it, and returns what
/// it printed.
pub fn run(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut child = command(env)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut si = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        // The binary may refuse its arguments and exit before reading stdin.
        if let Err(e) = si.write_all(s.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "writing stdin: {e}");
        }
    }
    drop(si);
    child.wait_with_output().unwrap()
}

/// `run` on the data directory `data_dir`, nothing on stdin.
pub fn at(data_dir: &std::path::Path, args: &[&str]) -> Output {
    run(args, &[("PHIGATE_DATA_DIR", data_dir.to_str().expect("a UTF-8 temp path"))], None)
}

/// The standard output of a run that succeeded.
pub fn ok(o: &Output) -> String {
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// The standard error of a run that failed.
pub fn fails(o: &Output) -> String {
    assert!(!o.status.success(), "should fail; stdout: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Whether transparent huge pages are on for the process `pid` (`THP_enabled:` in its
/// `/proc/<pid>/status`); `None` on a kernel that does not report it (before Linux 5.0).
#[cfg(target_os = "linux")]
pub fn thp_enabled(pid: u32) -> Option<bool> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("THP_enabled:"))?;
    Some(line.split_whitespace().nth(1) != Some("0"))
}
