//! A child process's side of a split run. Its stdout carries two lines to the
//! coordinator: `READY` once its sessions are up, then `RESULT {part}`; its stdin
//! carries `go` to start the measured part together with the other children. Closing
//! its stdin releases it; stdin closing before the result means the coordinator is
//! gone, and the child stops at once rather than hold sessions for nobody.

use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::report::Summary;
use crate::{driver, Options};

pub const READY: &str = "READY";
pub const GO: &str = "go";
pub const RESULT: &str = "RESULT ";

/// Longest wait for the go: the slowest sibling's setup (registration, logins).
pub const WAIT_FOR_GO: Duration = Duration::from_secs(600);
/// Longest hold of the sessions after the result, while the coordinator reads the
/// server's memory.
pub const WAIT_FOR_RELEASE: Duration = Duration::from_secs(60);

/// What the coordinator has said so far.
pub struct Gate {
    started: Arc<AtomicBool>,
    reported: Arc<AtomicBool>,
    released: Arc<AtomicBool>,
}

/// Runs this child's share of a split run.
pub fn run(o: &Options) -> Result<(), String> {
    let gate = Gate::open();
    driver::run(o, Some(&gate)).map(drop).map_err(|e| e.to_string())
}

impl Gate {
    /// Starts listening to the coordinator on stdin.
    pub fn open() -> Gate {
        let gate = Gate {
            started: Arc::new(AtomicBool::new(false)),
            reported: Arc::new(AtomicBool::new(false)),
            released: Arc::new(AtomicBool::new(false)),
        };
        let (started, reported, released) =
            (gate.started.clone(), gate.reported.clone(), gate.released.clone());
        std::thread::spawn(move || {
            for line in io::stdin().lock().lines() {
                match line {
                    Ok(l) if l.trim() == GO => started.store(true, Ordering::SeqCst),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            if reported.load(Ordering::SeqCst) {
                released.store(true, Ordering::SeqCst);
            } else {
                // Not eprintln: with the coordinator gone, stderr is a broken pipe too.
                let _ = writeln!(io::stderr(), "the coordinator is gone: stopping");
                std::process::exit(1);
            }
        });
        gate
    }

    /// Tells the coordinator this child's sessions are up.
    pub fn ready(&self) -> io::Result<()> {
        let mut out = io::stdout().lock();
        writeln!(out, "{READY}")?;
        out.flush()
    }

    pub fn started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// Hands this child's figures to the coordinator.
    pub fn report(&self, summary: &Summary) -> io::Result<()> {
        let part = summary.to_part().map_err(io::Error::other)?;
        let json = serde_json::to_string(&part).map_err(io::Error::other)?;
        // Before the line leaves: the coordinator may release us the moment it reads it.
        self.reported.store(true, Ordering::SeqCst);
        let mut out = io::stdout().lock();
        writeln!(out, "{RESULT}{json}")?;
        out.flush()
    }

    pub fn released(&self) -> bool {
        self.released.load(Ordering::SeqCst)
    }
}
