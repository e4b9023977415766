//! Restart mode: the sessions log in with `"remember":true` (docs/protocol.md §11.2) and
//! chat; after `--duration` the daemon gets SIGTERM (it closes every WebSocket with
//! 1001), and once it has exited it is started again. Every session then comes back as
//! a client would: after a backoff with full jitter (a random wait up to 100 ms, doubling
//! per failed attempt up to 2 s), by its device token (by password with
//! `--password-relogin`, or when the token is refused with 505), resending what was not
//! acknowledged with the same `cid`. What the login backlog did not bring is fetched
//! through `/im/messages` at the end. The figures: SIGTERM to exit, start to listening,
//! and from listening to the last session back; how many needed a password.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::time::{Duration, Instant};

use super::{Client, Pacer, Phase, Run, GRACE, MAX_OPENING};
use crate::report::RestartFigures;
use crate::server::{self, Server};
use crate::Options;

/// The first retry waits up to this long; each failed attempt doubles it ...
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// ... up to this: a client never waits longer than this between two attempts.
const BACKOFF_CAP: Duration = Duration::from_secs(2);
/// Chat goes on this long after the last session is back: messages flow on the new
/// process too before the run ends.
const AFTER_BACK: Duration = Duration::from_secs(2);
/// How often the sessions between connect and login reply are counted again.
const RECOUNT: Duration = Duration::from_millis(2);
/// How often the loop looks whether the new process listens.
const LISTEN_PROBE: Duration = Duration::from_millis(10);

/// Where the daemon is in its restart.
#[derive(Clone, Copy, Debug)]
enum Stage {
    Chatting,
    /// SIGTERM sent at `since`; waiting for it to exit.
    Stopping {
        since: Instant,
    },
    /// Started again at `since`; waiting for it to listen.
    Starting {
        since: Instant,
        probed: Instant,
    },
    /// The new process listens since `listening`.
    Up {
        listening: Instant,
    },
}

/// The daemon and every session's way back to it.
pub struct Restart {
    server: Server,
    restart_cmd: String,
    by_password: bool,
    stage: Stage,
    /// Per user: its device token, once a login gave one.
    tokens: Vec<Option<String>>,
    /// Per user: failed attempts since its last login, for the backoff.
    attempts: Vec<u32>,
    /// Sessions waiting to try again, by when.
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Per user: when it logged in on the new process.
    back_at: Vec<Option<Instant>>,
    /// Per user: it logged in on the new process with its password.
    used_password: Vec<bool>,
    /// How many are back, and when the last one came.
    back: usize,
    last_back: Option<Instant>,
    /// Sessions between connect and login reply as last counted, plus those opened
    /// since; counted afresh every `RECOUNT`, not on every pass of a loop that runs
    /// every 200 µs over 19,000 sessions.
    opening: usize,
    counted: Option<Instant>,
    figures: RestartFigures,
    rng: u64,
}

impl Restart {
    /// Starts the daemon with `--server-cmd` and waits for both its listeners.
    pub fn start(o: &Options) -> io::Result<Restart> {
        let cmd = o.server_cmd.clone().unwrap_or_default();
        // Else the wait below would take another server for ours.
        if let Some(busy) = [o.ws[0], o.http].into_iter().find(|a| server::listening(*a)) {
            return Err(io::Error::other(format!(
                "something already listens on {busy}: restart mode starts its own daemon"
            )));
        }
        let mut server = Server::spawn(&cmd)?;
        server.wait_listening(&[o.ws[0], o.http])?;
        eprintln!("daemon started (pid {})", server.pid());
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Ok(Restart::new(server, o.restart_cmd.clone().unwrap_or(cmd), o, seed | 1))
    }

    /// The run's state before anything is sent: chatting, nobody back yet.
    fn new(server: Server, restart_cmd: String, o: &Options, rng: u64) -> Restart {
        Restart {
            server,
            restart_cmd,
            by_password: o.password_relogin,
            stage: Stage::Chatting,
            tokens: vec![None; o.sessions],
            attempts: vec![0; o.sessions],
            due: BinaryHeap::new(),
            back_at: vec![None; o.sessions],
            used_password: vec![false; o.sessions],
            back: 0,
            last_back: None,
            opening: 0,
            counted: None,
            figures: RestartFigures { password_relogin: o.password_relogin, ..Default::default() },
            rng,
        }
    }

    /// The device token `user` logs in with, if it has one and the run uses them.
    pub fn token(&self, user: usize) -> Option<String> {
        if self.by_password {
            return None;
        }
        self.tokens.get(user).cloned().flatten()
    }

    /// `user` logged in (`device`: by its device token), and was given `token`.
    pub fn logged_in(&mut self, user: usize, device: bool, token: Option<&str>) {
        if let Some(t) = token {
            self.tokens[user] = Some(t.to_string());
        }
        self.attempts[user] = 0;
        if let Stage::Starting { since, .. } = self.stage {
            // A login on the new process before the probe saw it listen (a device-token
            // login takes a few ms): it listens, and this session is back.
            self.figures.start_s = since.elapsed().as_secs_f64();
            self.stage = Stage::Up { listening: Instant::now() };
            eprintln!(
                "daemon started again (pid {}), a login on it {:.2} s after its start",
                self.server.pid(),
                self.figures.start_s
            );
        }
        if let Stage::Up { .. } = self.stage {
            if self.back_at[user].is_none() {
                let now = Instant::now();
                self.back_at[user] = Some(now);
                self.used_password[user] = !device;
                self.back += 1;
                self.last_back = Some(now);
            }
        }
    }

    /// `user`'s login was refused with `code`. A device token refused (505) is spent:
    /// the next attempt uses the password.
    pub fn refused(&mut self, user: usize, device: bool, code: u64) {
        if device && code == 505 {
            self.tokens[user] = None;
        }
    }

    /// Queues `user` for another attempt after its backoff.
    fn schedule(&mut self, user: usize) {
        let attempt = self.attempts[user].min(16);
        self.attempts[user] = self.attempts[user].saturating_add(1);
        let ceiling = BACKOFF_CAP.min(BACKOFF_BASE * 2u32.pow(attempt));
        let wait = ceiling.mul_f64(self.random());
        self.due.push(Reverse((Instant::now() + wait, user)));
    }

    /// A number in [0, 1): xorshift64, enough for jitter.
    fn random(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn all_back(&self) -> bool {
        self.back == self.back_at.len()
    }

    /// The figures once the run is over, `window` after the new process listened.
    fn finish(&mut self, listening: Option<Instant>, window: Duration) -> RestartFigures {
        let mut f = self.figures.clone();
        let mut times: Vec<f64> = match listening {
            Some(l) => self
                .back_at
                .iter()
                .flatten()
                .map(|t| t.saturating_duration_since(l).as_secs_f64())
                .collect(),
            None => Vec::new(),
        };
        times.sort_by(f64::total_cmp);
        f.back = times.len();
        f.p50_s = times.get(times.len() / 2).copied().unwrap_or(0.0);
        f.all_back_s = self.all_back().then(|| times.last().copied().unwrap_or(0.0));
        f.window_s = f.all_back_s.unwrap_or(window.as_secs_f64());
        f.passwords = self.used_password.iter().filter(|p| **p).count();
        f
    }
}

impl Run<'_> {
    /// The device token session `user` logs in with, in restart mode.
    pub(super) fn device_token(&self, user: usize) -> Option<String> {
        self.restart.as_ref()?.token(user)
    }

    /// `c` lost its connection (or its attempt failed): it tries again after a backoff.
    pub(super) fn away(&mut self, mut c: Client) {
        let _ = self.poll.registry().deregister(&mut c.link.sock);
        let user = c.user;
        // Dropping the client closes its socket.
        drop(c);
        if let Some(r) = self.restart.as_mut() {
            r.schedule(user);
        }
    }

    /// Opens the sessions whose backoff is over, keeping at most `MAX_OPENING` between
    /// connect and login reply.
    fn reconnect_due(&mut self) {
        let now = Instant::now();
        let due = |r: &Option<Restart>| {
            r.as_ref().and_then(|r| r.due.peek()).is_some_and(|Reverse((at, _))| *at <= now)
        };
        if !due(&self.restart) {
            return;
        }
        let stale =
            self.restart.as_ref().is_some_and(|r| r.counted.is_none_or(|t| t.elapsed() >= RECOUNT));
        if stale {
            let opening = self
                .clients
                .iter()
                .flatten()
                .filter(|c| matches!(c.phase, Phase::Upgrading | Phase::LoggingIn))
                .count();
            if let Some(r) = self.restart.as_mut() {
                (r.opening, r.counted) = (opening, Some(now));
            }
        }
        let opening = self.restart.as_ref().map_or(MAX_OPENING, |r| r.opening);
        for _ in opening..MAX_OPENING {
            if !due(&self.restart) {
                return;
            }
            let Some(Reverse((_, user))) = self.restart.as_mut().and_then(|r| r.due.pop()) else {
                return;
            };
            self.summary.reconnects += 1;
            if let Some(r) = self.restart.as_mut() {
                r.opening += 1;
            }
            match self.open(user, false) {
                Ok(()) => {
                    if let Some(c) = self.clients[user].as_mut() {
                        c.relogin = true;
                    }
                }
                Err(_) => {
                    self.clients[user] = None;
                    if let Some(r) = self.restart.as_mut() {
                        r.schedule(user);
                    }
                }
            }
        }
    }

    /// Chats for `--duration`, restarts the daemon, chats on until every session is
    /// back (and `AFTER_BACK` more) or `--back-within` has passed since the new process
    /// listened, then waits for what is in flight and fetches what is missing.
    pub(super) fn restart_chat(&mut self) -> io::Result<()> {
        let ready: Vec<usize> = (0..self.o.sessions)
            .filter(|i| self.clients[*i].as_ref().is_some_and(|c| c.phase == Phase::Ready))
            .collect();
        if ready.is_empty() {
            return Err(io::Error::other("no session is ready"));
        }
        let missing_tokens =
            self.restart.as_ref().map_or(0, |r| r.tokens.iter().filter(|t| t.is_none()).count());
        if missing_tokens > 0 && !self.o.password_relogin {
            return Err(io::Error::other(format!(
                "{missing_tokens} logins with \"remember\":true got no device_token: \
                 does the daemon remember logins (docs/protocol.md §11.2, remember_days > 0)?"
            )));
        }
        self.counting = true;
        let start = Instant::now();
        self.pacer =
            Some(Pacer { start, start_us: self.t0.elapsed().as_micros() as u64, ready, sent: 0 });
        let (listening, window) = loop {
            self.send_due();
            self.reconnect_due();
            if let Some(end) = self.restart_step(start)? {
                break end;
            }
            self.turn(Duration::from_micros(200))?;
        };
        let sent = self.pacer.take().map_or(0, |p| p.sent);
        self.summary.sent += sent;
        self.summary.seconds += start.elapsed().as_secs_f64();
        let mut figures = RestartFigures::default();
        if let Some(r) = self.restart.as_mut() {
            // Past the window nobody tries again: those not back are failed sessions.
            r.due.clear();
            figures = r.finish(Some(listening), window);
        }
        let grace = Instant::now() + GRACE;
        while Instant::now() < grace && !self.settled(sent) {
            self.turn(Duration::from_millis(5))?;
        }
        self.fetch_all_missed(self.t0.elapsed().as_micros() as u64);
        self.summary.failed_sessions = self.o.sessions - self.count(Phase::Ready);
        self.summary.lost = self.lost_among_back();
        self.counting = false;
        self.summary.restart = Some(figures);
        Ok(())
    }

    /// Moves the restart on; once the run is to end, when the new process listened and
    /// how long the run waited for the sessions from then.
    fn restart_step(&mut self, start: Instant) -> io::Result<Option<(Instant, Duration)>> {
        let Some(r) = self.restart.as_mut() else {
            return Err(io::Error::other("restart mode without its daemon"));
        };
        let now = Instant::now();
        match r.stage {
            Stage::Chatting if start.elapsed() >= self.o.duration => {
                eprintln!("SIGTERM to the daemon (pid {})", r.server.pid());
                r.server.terminate()?;
                r.stage = Stage::Stopping { since: now };
            }
            Stage::Chatting => {}
            Stage::Stopping { since } => {
                if let Some(status) = r.server.exited()? {
                    r.figures.stop_s = since.elapsed().as_secs_f64();
                    eprintln!("daemon exited ({status}) {:.2} s after SIGTERM", r.figures.stop_s);
                    r.server = Server::spawn(&r.restart_cmd)?;
                    r.stage = Stage::Starting { since: Instant::now(), probed: now };
                } else if since.elapsed() > server::EXIT_LIMIT {
                    return Err(io::Error::other("the daemon did not exit after SIGTERM"));
                }
            }
            Stage::Starting { since, probed } => {
                if probed.elapsed() < LISTEN_PROBE {
                    return Ok(None);
                }
                if let Some(status) = r.server.exited()? {
                    return Err(io::Error::other(format!(
                        "the restarted daemon exited ({status})"
                    )));
                }
                if server::listening(self.o.ws[0]) {
                    r.figures.start_s = since.elapsed().as_secs_f64();
                    eprintln!(
                        "daemon started again (pid {}), listening {:.2} s after its start",
                        r.server.pid(),
                        r.figures.start_s
                    );
                    r.stage = Stage::Up { listening: Instant::now() };
                } else if since.elapsed() > server::LISTEN_LIMIT {
                    return Err(io::Error::other("the restarted daemon does not listen"));
                } else {
                    r.stage = Stage::Starting { since, probed: Instant::now() };
                }
            }
            Stage::Up { listening } => {
                let over = match r.last_back {
                    Some(last) if r.all_back() => last.elapsed() >= AFTER_BACK,
                    _ => listening.elapsed() >= self.o.back_within,
                };
                if over {
                    return Ok(Some((listening, listening.elapsed())));
                }
            }
        }
        Ok(None)
    }

    /// What was lost in the conversations of the pairs whose two sessions are both
    /// back (every pair when all are): a pair with one side missing cannot have had
    /// its messages, and its sessions already count as failed.
    fn lost_among_back(&self) -> u64 {
        let back = |u: usize| self.clients[u].as_ref().is_some_and(|c| c.phase == Phase::Ready);
        (0..self.o.sessions / 2)
            .filter(|p| back(2 * p) && back(2 * p + 1))
            .map(|p| {
                let unacked = self.unacked[2 * p].len() + self.unacked[2 * p + 1].len();
                self.ledgers.get(p).map_or(0, |l| l.lost()) + unacked as u64
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_args;

    fn restart(args: &str) -> Restart {
        let o = parse_args(args.split_whitespace().map(String::from)).expect("options");
        Restart::new(Server::spawn("sleep 30").expect("sleep runs"), String::new(), &o, 12345)
    }

    #[test]
    fn restart_mode_needs_its_command_and_one_process() {
        let parse = |a: &str| parse_args(a.split_whitespace().map(String::from));
        assert!(parse("restart --sessions 4").unwrap_err().contains("--server-cmd"));
        let err = parse("restart --sessions 40 --per-process 10 --server-cmd x").unwrap_err();
        assert!(err.contains("one process"), "{err}");
        let o = parse(
            "restart --sessions 4 --server-cmd x --restart-cmd y --password-relogin \
                       --back-within 7.5",
        )
        .expect("options");
        assert_eq!((o.server_cmd.as_deref(), o.restart_cmd.as_deref()), (Some("x"), Some("y")));
        assert!(o.password_relogin && o.mode.keeps_outbox());
        assert_eq!(o.back_within, Duration::from_millis(7500));
        assert!(parse("restart --sessions 4 --server-cmd x --back-within 0").is_err());
        assert!(parse("chat --sessions 4 --password-relogin").unwrap_err().contains("restart"));
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_cap() {
        let mut r = restart("restart --sessions 2 --server-cmd x");
        let mut ceilings = Vec::new();
        for attempt in 0..8u32 {
            let before = Instant::now();
            r.schedule(0);
            let Some(Reverse((at, 0))) = r.due.pop() else { panic!("scheduled") };
            let wait = at.saturating_duration_since(before);
            let ceiling = BACKOFF_CAP.min(BACKOFF_BASE * 2u32.pow(attempt));
            assert!(wait <= ceiling + Duration::from_millis(5), "{attempt}: {wait:?}");
            ceilings.push(ceiling);
        }
        assert_eq!(ceilings[0], Duration::from_millis(100));
        assert_eq!(ceilings[4], Duration::from_millis(1600));
        assert_eq!(ceilings[7], BACKOFF_CAP);
        // A login starts the doubling again.
        r.logged_in(0, true, None);
        assert_eq!(r.attempts[0], 0);
    }

    #[test]
    fn jitter_spreads_the_attempts() {
        let mut r = restart("restart --sessions 2 --server-cmd x");
        let draws: Vec<f64> = (0..1000).map(|_| r.random()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let low = draws.iter().filter(|d| **d < 0.5).count();
        assert!((400..600).contains(&low), "{low} of 1000 below one half");
    }

    #[test]
    fn a_token_logs_in_until_refused_then_the_password_does() {
        let mut r = restart("restart --sessions 2 --server-cmd x");
        assert_eq!(r.token(1), None);
        r.logged_in(1, false, Some("ab"));
        assert_eq!(r.token(1).as_deref(), Some("ab"));
        r.refused(1, true, 524);
        assert_eq!(r.token(1).as_deref(), Some("ab"), "a busy server is no verdict on it");
        r.refused(1, true, 505);
        assert_eq!(r.token(1), None);
        let p = restart("restart --sessions 2 --server-cmd x --password-relogin");
        let mut p = p;
        p.logged_in(0, false, Some("cd"));
        assert_eq!(p.token(0), None);
    }

    #[test]
    fn a_login_before_the_probe_saw_the_new_process_listen_is_back() {
        let mut r = restart("restart --sessions 2 --server-cmd x");
        r.stage = Stage::Stopping { since: Instant::now() };
        r.logged_in(0, true, None);
        assert_eq!(r.back, 0, "the old process, stopping: it will close this session");
        r.stage = Stage::Starting { since: Instant::now(), probed: Instant::now() };
        r.logged_in(0, true, None);
        assert!(matches!(r.stage, Stage::Up { .. }));
        assert_eq!(r.back, 1);
    }

    #[test]
    fn only_logins_on_the_new_process_count_as_back() {
        let mut r = restart("restart --sessions 2 --server-cmd x");
        r.logged_in(0, false, Some("t0"));
        r.logged_in(1, false, Some("t1"));
        assert!(!r.all_back());
        let listening = Instant::now();
        r.stage = Stage::Up { listening };
        r.logged_in(0, true, None);
        let f = r.finish(Some(listening), Duration::from_secs(9));
        assert_eq!((f.back, f.all_back_s, f.window_s, f.passwords), (1, None, 9.0, 0));
        r.logged_in(1, false, None);
        let f = r.finish(Some(listening), Duration::from_secs(9));
        assert_eq!((f.back, f.passwords), (2, 1));
        assert!(f.all_back_s.is_some_and(|s| s < 1.0));
    }
}
