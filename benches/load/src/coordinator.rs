//! The coordinator of a run split over child processes: it spawns one imd-load per
//! share, relays their logs, starts them together once all are ready, reads the
//! server's memory while every child still holds its sessions, and merges their parts
//! into one summary. A child that dies, or stays silent past its time, fails the run;
//! children still running when the coordinator returns are killed.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::gate;
use crate::report::{rss_kb, Part, Summary};
use crate::split::{self, Share};
use crate::{Mode, Options};

/// A stdout line of child `k`, or `None` when its stdout closed.
type Event = (usize, Option<String>);

pub fn run(o: &Options) -> Result<Summary, String> {
    let shares = split::plan(o)?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find imd-load itself: {e}"))?;
    eprintln!(
        "{} sessions over {} processes: {}",
        o.sessions,
        shares.len(),
        shares
            .iter()
            .map(|s| format!(
                "{} from 127.0.0.{}-{}",
                s.sessions,
                s.source_first,
                s.source_first + s.sources - 1
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rss_before = o.server_pid.and_then(rss_kb);
    let started = Instant::now();
    let mut fleet = Fleet::spawn(&exe, o, &shares)?;
    // A child registers, logs in and befriends its users: about as long as the driver
    // allows one process for the same work, plus room for the children sharing cores.
    let setup = Duration::from_secs(120 + o.sessions as u64 / 100);
    fleet.collect(gate::READY, "its sessions ready", setup)?;
    eprintln!("{} processes ready in {:.1} s; go", shares.len(), started.elapsed().as_secs_f64());
    fleet.go()?;
    // The measured part plus what each chat phase waits for messages in flight (5 s;
    // storm has two), storm registrations and slack for a loaded machine.
    let results = fleet.collect(gate::RESULT, "a result", o.duration + Duration::from_secs(60))?;
    let rss_after = if o.mode == Mode::Idle { o.server_pid.and_then(rss_kb) } else { None };
    fleet.release()?;
    let mut parts = Vec::with_capacity(results.len());
    for (k, json) in results.iter().enumerate() {
        let part: Part = serde_json::from_str(json)
            .map_err(|e| format!("process {k} sent an unreadable result: {e}"))?;
        parts.push(part);
    }
    let mut summary = Summary::merge(o.mode.name(), &parts)?;
    summary.server_rss_kb = rss_before.zip(rss_after);
    Ok(summary)
}

/// The child processes and what they say.
struct Fleet {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    closed: Vec<bool>,
    events: Receiver<Event>,
    tx: Sender<Event>,
}

impl Fleet {
    fn spawn(exe: &std::path::Path, o: &Options, shares: &[Share]) -> Result<Fleet, String> {
        let (tx, events) = mpsc::channel();
        let mut fleet =
            Fleet { children: Vec::new(), stdins: Vec::new(), closed: Vec::new(), events, tx };
        for (k, share) in shares.iter().enumerate() {
            let mut child = Command::new(exe)
                .args(split::child_args(o, share))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start process {k}: {e}"))?;
            let (Some(stdin), Some(stdout), Some(stderr)) =
                (child.stdin.take(), child.stdout.take(), child.stderr.take())
            else {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("process {k} started without its pipes"));
            };
            fleet.children.push(child);
            fleet.stdins.push(Some(stdin));
            fleet.closed.push(false);
            let tx = fleet.tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((k, Some(line))).is_err() {
                        return;
                    }
                }
                let _ = tx.send((k, None));
            });
            std::thread::spawn(move || relay(k, stderr));
        }
        Ok(fleet)
    }

    /// One line starting with `tag` from every child, within `limit`; the text after
    /// the tag, by child.
    fn collect(&mut self, tag: &str, what: &str, limit: Duration) -> Result<Vec<String>, String> {
        let n = self.children.len();
        let mut got: Vec<Option<String>> = vec![None; n];
        let deadline = Instant::now() + limit;
        if let Some(k) = self.closed.iter().position(|c| *c) {
            return Err(self.died(k, what));
        }
        while got.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok((k, Some(line))) => {
                    if let (Some(rest), None) = (line.strip_prefix(tag), &got[k]) {
                        got[k] = Some(rest.to_string());
                    }
                }
                Ok((k, None)) => {
                    self.closed[k] = true;
                    if got[k].is_none() {
                        return Err(self.died(k, what));
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    let late: Vec<String> =
                        (0..n).filter(|k| got[*k].is_none()).map(|k| k.to_string()).collect();
                    return Err(format!(
                        "process {} did not report {what} within {:.0} s",
                        late.join(", "),
                        limit.as_secs_f64()
                    ));
                }
            }
        }
        Ok(got.into_iter().flatten().collect())
    }

    /// The message for child `k` stopping before it reported `what`.
    fn died(&mut self, k: usize, what: &str) -> String {
        let child = &mut self.children[k];
        let pid = child.id();
        let limit = Instant::now() + Duration::from_secs(2);
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s.to_string(),
                Ok(None) if Instant::now() < limit => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => break "its output closed".to_string(),
                Err(e) => break e.to_string(),
            }
        };
        format!("process {k} (pid {pid}) stopped before {what} ({status}); its log lines start with imd-load[{k}]")
    }

    /// Starts every child's measured part.
    fn go(&mut self) -> Result<(), String> {
        for (k, stdin) in self.stdins.iter_mut().enumerate() {
            let sent = stdin.as_mut().map(|s| {
                s.write_all(format!("{}\n", gate::GO).as_bytes()).and_then(|()| s.flush())
            });
            if !matches!(sent, Some(Ok(()))) {
                return Err(format!("process {k} is gone: cannot start it"));
            }
        }
        Ok(())
    }

    /// Lets the children close their sessions and exit; each must exit cleanly.
    fn release(&mut self) -> Result<(), String> {
        self.stdins.iter_mut().for_each(|s| drop(s.take()));
        let deadline = Instant::now() + Duration::from_secs(30);
        for (k, child) in self.children.iter_mut().enumerate() {
            let status = loop {
                match child.try_wait() {
                    Ok(Some(s)) => break s,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Ok(None) => return Err(format!("process {k} did not exit once released")),
                    Err(e) => return Err(format!("process {k}: {e}")),
                }
            };
            if !status.success() {
                return Err(format!("process {k} exited with {status} after its result"));
            }
        }
        Ok(())
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for child in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Copies child `k`'s log to ours, each line marked with the child.
fn relay(k: usize, stderr: impl Read) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { return };
        eprintln!("imd-load[{k}] {line}");
    }
}
