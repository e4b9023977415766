//! The `imd-load` command line as a newcomer first meets it.

use std::process::Command;

#[test]
fn help_prints_the_usage_and_exits_zero() {
    for args in [&["--help"][..], &["-h"], &["chat", "--help"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_imd-load")).args(args).output().expect("runs");
        assert!(out.status.success(), "{args:?}: {:?}", out.status);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("usage: imd-load MODE [options]"), "{args:?}: {stdout}");
        assert!(out.stderr.is_empty(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn no_mode_is_still_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_imd-load")).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("a mode is needed"));
}
