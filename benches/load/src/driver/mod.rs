//! The event loop of a run: sessions on one mio `Poll`, the open-loop sender, and the
//! bookkeeping that finds lost, duplicated and misordered messages.
//!
//! `receive` counts what the sessions read (messages, replies, pushes); `reconnect`
//! drops sessions mid-run, logs them in again, resends what was not acknowledged and
//! fetches what the dropped sessions missed; `restart` stops and starts the daemon and
//! brings every session back with backoff, by device token or by password.

mod receive;
mod reconnect;
mod restart;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use serde_json::Value;

use crate::gate::{self, Gate};
use crate::ledger::Ledger;
use crate::link::{self, Link, Ws};
use crate::provision;
use crate::report::{rss_kb, Summary};
use crate::tick::Ticker;
use crate::{Mode, Options};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Upgrading,
    LoggingIn,
    Ready,
    Dead,
}

struct Client {
    link: Link,
    ws: Option<Ws>,
    phase: Phase,
    /// Index of the user (and of the session) in this run.
    user: usize,
    id: String,
    token: String,
    /// A storm user: logs in, then out, again and again.
    stormer: bool,
    /// The friends of the login reply: id and, with history on, the conversation's
    /// `last_seq`, where this run's messages start.
    friends: Vec<(String, u64)>,
    /// This session replaces one the run dropped: once logged in, it resends and fetches.
    relogin: bool,
    /// Logged in once: a session the run may drop, and log in again if it dies.
    been_ready: bool,
    /// Its login frame carried a device token, not a password (restart mode).
    device: bool,
}

/// Per-sender bookkeeping at the receiver.
#[derive(Default)]
struct Track {
    seen: Vec<u64>,
    highest: Option<u64>,
    unique: u64,
}

impl Track {
    /// Records `seq`; returns (duplicate, misordered).
    fn record(&mut self, seq: u64) -> (bool, bool) {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            return (true, false);
        }
        self.seen[word] |= 1 << bit;
        self.unique += 1;
        let misordered = self.highest.is_some_and(|h| seq < h);
        self.highest = Some(self.highest.map_or(seq, |h| h.max(seq)));
        (false, misordered)
    }
}

/// Sessions of one process between connect and login reply. Opened all at once,
/// thousands of TLS handshakes and argon2 checks queue in the server together (more so
/// with several processes): 19,500 sessions were ready in 38 s instead of 23 s and left
/// the server with 18.3 KB per session instead of 14.7 KB.
const MAX_OPENING: usize = 500;

/// How long a phase waits, after its last send, for the replies and messages in flight.
const GRACE: Duration = Duration::from_secs(5);

/// How many connections a turn services between two looks at what is due to send.
const SERVICES_PER_SEND_CHECK: usize = 16;

/// The ticker's wake-ups; session tokens are their indices.
const TICK: Token = Token(usize::MAX);

/// The open-loop schedule of a chat run: message k is due at `start` + k / rate.
struct Pacer {
    start: Instant,
    /// `start` on the run's microsecond clock, which receivers read.
    start_us: u64,
    /// The senders, in turn.
    ready: Vec<usize>,
    sent: u64,
}

struct Run<'a> {
    o: &'a Options,
    poll: Poll,
    clients: Vec<Option<Client>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    scratch: Vec<u8>,
    t0: Instant,
    by_id: HashMap<String, usize>,
    /// Per sender, by the sequence in the payload (history off, echo).
    tracks: Vec<Track>,
    /// Per pair, by the conversation's `seq` (history on).
    ledgers: Vec<Ledger>,
    /// Whether replies carry `seq` (history on); `None` before the first success reply.
    history: Option<bool>,
    next_seq: Vec<u64>,
    /// This run's part of every `cid`: unique per sender across runs on the same accounts.
    nonce: String,
    /// Per user, the id of its last login: its peer keeps addressing it while it is away.
    ids: Vec<String>,
    /// Restart mode: the daemon, and every session's way back.
    restart: Option<restart::Restart>,
    /// Reconnect and restart modes: per user, the messages not yet acknowledged.
    unacked: Vec<BTreeMap<u64, reconnect::Unacked>>,
    /// Reconnect mode: when the next session is dropped.
    dropper: Option<reconnect::Dropper>,
    /// Provisioning's keep-alive connection, reused for `/im/messages`.
    http: Option<provision::Http>,
    summary: Summary,
    counting: bool,
    logins: u64,
    /// Set while a chat run sends.
    pacer: Option<Pacer>,
    /// Wakes the loop while a pacer is set (modes that send).
    ticker: Option<Ticker>,
}

/// Runs `o`; as a coordinator's child when `gate` is given: it announces when its
/// sessions are ready, waits for the go, and holds its sessions after its result until
/// the coordinator has measured the server.
pub fn run(o: &Options, gate: Option<&Gate>) -> io::Result<Summary> {
    let mode_name = o.mode.name();
    let tls = if o.tls {
        Some(imd::loopback_tls::trusting_client().map_err(io::Error::other)?)
    } else {
        None
    };
    let poll = Poll::new()?;
    let ticker = match o.mode {
        Mode::Idle => None,
        Mode::Chat | Mode::Storm | Mode::Echo | Mode::Reconnect | Mode::Restart => {
            Some(Ticker::start(Waker::new(poll.registry(), TICK)?)?)
        }
    };
    let mut r = Run {
        o,
        poll,
        clients: Vec::new(),
        tls,
        scratch: vec![0; 64 * 1024],
        t0: Instant::now(),
        by_id: HashMap::new(),
        tracks: (0..o.sessions).map(|_| Track::default()).collect(),
        ledgers: Vec::new(),
        history: None,
        next_seq: vec![0; o.sessions],
        nonce: nonce(),
        ids: vec![String::new(); o.sessions],
        restart: None,
        unacked: vec![BTreeMap::new(); o.sessions],
        dropper: None,
        http: None,
        summary: Summary::new(mode_name, o.sessions),
        counting: false,
        logins: 0,
        pacer: None,
        ticker,
    };
    if o.mode == Mode::Restart {
        r.restart = Some(restart::Restart::start(o)?);
    }
    let rss_before = o.server_pid.and_then(rss_kb);

    if o.mode != Mode::Echo {
        let started = Instant::now();
        let failed = provision::register_all(o.http, &o.prefix, o.sessions);
        if failed > 0 {
            return Err(io::Error::other(format!("{failed} registrations failed")));
        }
        eprintln!("registered {} users in {:.1} s", o.sessions, started.elapsed().as_secs_f64());
    }
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60 + o.sessions as u64 / 200);
    let mut opened = 0;
    loop {
        let settled = r.count(Phase::Ready) + r.count(Phase::Dead);
        if settled >= o.sessions || Instant::now() >= deadline {
            break;
        }
        while opened < o.sessions && opened - settled < MAX_OPENING {
            r.open(opened, false)?;
            opened += 1;
        }
        r.turn(Duration::from_millis(5))?;
    }
    r.summary.failed_sessions = o.sessions - r.count(Phase::Ready);
    eprintln!(
        "{} sessions ready in {:.1} s ({} failed)",
        r.count(Phase::Ready),
        started.elapsed().as_secs_f64(),
        r.summary.failed_sessions
    );
    if o.mode != Mode::Echo {
        let auth: Vec<(String, String)> = r
            .clients
            .iter()
            .map(|c| {
                c.as_ref()
                    .map_or((String::new(), String::new()), |c| (c.id.clone(), c.token.clone()))
            })
            .collect();
        let failed = provision::befriend_pairs(o.http, &auth);
        if failed > 0 {
            return Err(io::Error::other(format!("{failed} friendships failed")));
        }
        // Let the friend pushes arrive before measuring.
        let settle = Instant::now() + Duration::from_millis(500);
        while Instant::now() < settle {
            r.turn(Duration::from_millis(5))?;
        }
    }
    r.ledgers = r.opening_ledgers();

    if let Some(gate) = gate {
        gate.ready()?;
        let limit = Instant::now() + gate::WAIT_FOR_GO;
        while !gate.started() {
            if Instant::now() > limit {
                return Err(io::Error::other("no go from the coordinator"));
            }
            r.turn(Duration::from_millis(20))?;
        }
    }

    match o.mode {
        Mode::Idle => {
            let end = Instant::now() + o.duration;
            while Instant::now() < end {
                r.turn(Duration::from_millis(50))?;
            }
            r.summary.seconds = o.duration.as_secs_f64();
            r.summary.server_rss_kb = rss_before.zip(o.server_pid.and_then(rss_kb));
        }
        Mode::Chat | Mode::Echo | Mode::Reconnect => r.chat(o.duration)?,
        Mode::Restart => r.restart_chat()?,
        Mode::Storm => {
            let half = o.duration / 2;
            r.chat(half)?;
            let baseline = r.summary.received as f64 / r.summary.seconds.max(1e-9);
            let mut reset = Summary::new("storm", o.sessions);
            reset.failed_sessions = r.summary.failed_sessions;
            let before = std::mem::replace(&mut r.summary, reset);
            r.tracks = (0..o.sessions).map(|_| Track::default()).collect();
            r.ledgers = r.ledgers.iter().map(Ledger::rebased).collect();
            // Numbers go on: a `cid` is the sender's for good, and one used again with
            // another payload is refused (529).
            let failed = provision::register_all(o.http, &format!("{}s", o.prefix), o.storm_users);
            if failed > 0 {
                return Err(io::Error::other(format!("{failed} storm registrations failed")));
            }
            for i in 0..o.storm_users {
                r.open(o.sessions + i, true)?;
            }
            r.chat(half)?;
            r.summary.baseline_rate = Some(baseline);
            r.summary.logins = r.logins;
            r.summary.lost += before.lost;
            r.summary.unanswered += before.unanswered;
            r.summary.duplicated += before.duplicated;
            r.summary.misordered += before.misordered;
        }
    }
    if o.mode.keeps_outbox() && r.history != Some(true) {
        return Err(io::Error::other(format!(
            "{mode_name} mode needs history on the server ([history] enabled = true): \
             its replies carry no seq"
        )));
    }
    if let Some(gate) = gate {
        gate.report(&r.summary)?;
        let limit = Instant::now() + gate::WAIT_FOR_RELEASE;
        while !gate.released() && Instant::now() < limit {
            r.turn(Duration::from_millis(20))?;
        }
    }
    Ok(r.summary)
}

impl Run<'_> {
    fn count(&self, phase: Phase) -> usize {
        self.clients.iter().flatten().filter(|c| c.phase == phase && !c.stormer).count()
    }

    /// Opens session `i` (a storm user when `stormer`).
    fn open(&mut self, i: usize, stormer: bool) -> io::Result<()> {
        let last = self.o.source_first + (i % usize::from(self.o.sources)) as u8;
        let source = SocketAddr::from(([127, 0, 0, last], 0));
        let node = self.o.placement.node_of(i, self.o.ws.len());
        let mut link = Link::connect(source, self.o.ws[node], self.tls.as_ref())?;
        link.output.extend_from_slice(&link::upgrade_request("/im/login"));
        self.poll.registry().register(
            &mut link.sock,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        if self.clients.len() <= i {
            self.clients.resize_with(i + 1, || None);
        }
        self.clients[i] = Some(Client {
            link,
            ws: None,
            phase: Phase::Upgrading,
            user: i,
            id: String::new(),
            token: String::new(),
            stormer,
            friends: Vec::new(),
            relogin: false,
            been_ready: false,
            device: false,
        });
        Ok(())
    }

    /// One poll and everything it reports.
    fn turn(&mut self, timeout: Duration) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let ticker = self.ticker.as_ref().filter(|_| self.pacer.is_some());
        ticker.inspect(|t| t.asleep(true));
        let polled = self.poll.poll(&mut events, Some(timeout));
        ticker.inspect(|t| t.asleep(false));
        match polled {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let ready: Vec<(usize, bool)> = events
            .iter()
            .filter(|e| e.token() != TICK)
            .map(|e| (e.token().0, e.is_read_closed() || e.is_error()))
            .collect();
        for (n, (i, closing)) in ready.into_iter().enumerate() {
            self.service(i, closing);
            if n % SERVICES_PER_SEND_CHECK == SERVICES_PER_SEND_CHECK - 1 {
                self.send_due();
            }
        }
        Ok(())
    }

    /// Reads, answers and writes for client `i`; `closing` when the poller saw the
    /// server's end close.
    fn service(&mut self, i: usize, closing: bool) {
        let Some(mut c) = self.clients.get_mut(i).and_then(Option::take) else { return };
        if c.phase != Phase::Dead {
            let ok =
                c.link.flush().and_then(|()| c.link.read_all(&mut self.scratch, closing)).is_ok();
            if !ok {
                c.phase = Phase::Dead;
            } else {
                self.advance(&mut c);
                if c.link.flush().is_err() {
                    c.phase = Phase::Dead;
                }
            }
        }
        if c.phase == Phase::Dead && (c.been_ready || c.relogin) && self.restart.is_some() {
            // Restart mode: a session that lost its server comes back after a backoff.
            return self.away(c);
        }
        if c.phase == Phase::Dead && c.been_ready && self.dropper.is_some() {
            // Reconnect mode: a session that died of itself comes back like a dropped one.
            return self.reopen(c);
        }
        if c.stormer && c.phase != Phase::Ready && c.phase != Phase::Dead {
            self.clients[i] = Some(c);
            return;
        }
        if c.stormer {
            // A storm user logs out (drops the socket) and comes straight back.
            let _ = self.poll.registry().deregister(&mut c.link.sock);
            drop(c);
            if self.open(i, true).is_err() {
                self.clients[i] = None;
            }
            return;
        }
        self.clients[i] = Some(c);
    }

    fn advance(&mut self, c: &mut Client) {
        if c.phase == Phase::Upgrading {
            let Some((ok, len)) = link::upgrade_response(&c.link.input) else { return };
            if !ok {
                c.phase = Phase::Dead;
                return;
            }
            let leftover = c.link.input.split_off(len);
            c.link.input.clear();
            let mut ws = Ws::new(leftover);
            if self.o.mode == Mode::Echo {
                c.phase = Phase::Ready;
            } else {
                let (account, password) = if c.stormer {
                    provision::credentials(&format!("{}s", self.o.prefix), c.user - self.o.sessions)
                } else {
                    provision::credentials(&self.o.prefix, c.user)
                };
                let token = self.device_token(c.user).filter(|_| !c.stormer);
                c.device = token.is_some();
                let frame = match token {
                    Some(token) => {
                        serde_json::json!({"account": account, "device_token": token}).to_string()
                    }
                    // Restart mode remembers every login (docs/protocol.md §11.2).
                    None if self.o.mode == Mode::Restart => serde_json::json!(
                        {"account": account, "password": password, "remember": true}
                    )
                    .to_string(),
                    None => {
                        serde_json::json!({"account": account, "password": password}).to_string()
                    }
                };
                if ws.send(&mut c.link, frame).is_err() {
                    c.phase = Phase::Dead;
                    return;
                }
                c.phase = Phase::LoggingIn;
            }
            c.ws = Some(ws);
        }
        let Some(mut ws) = c.ws.take() else { return };
        let now_us = self.t0.elapsed().as_micros() as u64;
        let closed = if c.phase == Phase::Ready {
            // The bulk of a run: frames are counted where they lie, never copied.
            let (counting, user) = (self.counting, c.user);
            let closed = ws.read_texts(&mut c.link, |t| {
                if counting {
                    self.on_counted(user, t, now_us);
                }
            });
            c.ws = Some(ws);
            closed
        } else {
            let mut texts = Vec::new();
            let closed = ws.read_texts(&mut c.link, |t| texts.push(t.to_string()));
            // Back in place first: a session that logs in again resends on its socket.
            c.ws = Some(ws);
            for t in texts {
                self.on_text(c, &t, now_us);
            }
            closed
        }
        .unwrap_or(true);
        if closed || c.link.eof {
            c.phase = Phase::Dead;
        }
    }

    fn on_text(&mut self, c: &mut Client, text: &str, now_us: u64) {
        match c.phase {
            Phase::Ready if self.counting => self.on_counted(c.user, text, now_us),
            Phase::LoggingIn => {
                let Ok(v) = serde_json::from_str::<Value>(text) else { return };
                if v["code"] == 200 {
                    c.id = v["profile"]["id"].as_str().unwrap_or_default().to_string();
                    c.token = v["token"].as_str().unwrap_or_default().to_string();
                    c.friends = v["friends"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|f| {
                            let id = f["id"].as_str()?.to_string();
                            Some((id, f["last_seq"].as_u64().unwrap_or(0)))
                        })
                        .collect();
                    c.phase = Phase::Ready;
                    c.been_ready = true;
                    if c.stormer {
                        self.logins += 1;
                    } else {
                        self.by_id.insert(c.id.clone(), c.user);
                        self.ids[c.user] = c.id.clone();
                    }
                    if let Some(r) = self.restart.as_mut() {
                        r.logged_in(c.user, c.device, v["device_token"].as_str());
                    }
                    if c.relogin {
                        self.after_relogin(c, now_us);
                    }
                } else {
                    if let (Some(r), Some(code)) = (self.restart.as_mut(), v["code"].as_u64()) {
                        r.refused(c.user, c.device, code);
                    }
                    c.phase = Phase::Dead;
                }
            }
            _ => {}
        }
    }

    /// Each pair's ledger, starting after the `seq` its conversation had reached at
    /// login (0 for a new friendship).
    fn opening_ledgers(&self) -> Vec<Ledger> {
        (0..self.o.sessions / 2)
            .map(|p| {
                let (a, b) = (self.clients[2 * p].as_ref(), self.clients[2 * p + 1].as_ref());
                let base = a.zip(b).and_then(|(a, b)| {
                    a.friends.iter().find(|(id, _)| *id == b.id).map(|(_, seq)| *seq)
                });
                Ledger::new(base.unwrap_or(0))
            })
            .collect()
    }

    /// Sends at `rate` for `duration`, open loop (in reconnect mode dropping sessions
    /// at `--drops` a second), then waits for what is in flight.
    fn chat(&mut self, duration: Duration) -> io::Result<()> {
        let ready: Vec<usize> = (0..self.o.sessions)
            .filter(|i| self.clients[*i].as_ref().is_some_and(|c| c.phase == Phase::Ready))
            .collect();
        if ready.is_empty() {
            return Err(io::Error::other("no session is ready"));
        }
        self.counting = true;
        let start = Instant::now();
        self.pacer =
            Some(Pacer { start, start_us: self.t0.elapsed().as_micros() as u64, ready, sent: 0 });
        if self.o.mode == Mode::Reconnect {
            self.dropper = Some(reconnect::Dropper::new(start));
        }
        while start.elapsed() < duration {
            self.send_due();
            self.drop_due();
            self.turn(Duration::from_micros(200))?;
        }
        if let Some(d) = self.dropper.as_mut() {
            d.stop();
        }
        let sent = self.pacer.take().map_or(0, |p| p.sent);
        self.summary.sent += sent;
        self.summary.seconds += start.elapsed().as_secs_f64();
        // Whatever is still in flight gets a few seconds to arrive.
        let grace = Instant::now() + GRACE;
        while Instant::now() < grace && !self.settled(sent) {
            self.turn(Duration::from_millis(5))?;
        }
        if self.o.mode.keeps_outbox() {
            self.fetch_all_missed(self.t0.elapsed().as_micros() as u64);
            self.summary.failed_sessions = self.o.sessions - self.count(Phase::Ready);
        } else if self.o.mode != Mode::Echo {
            // Reconnect and restart count theirs as lost (still in the outbox); echo
            // has no replies, and counts what never came back as lost.
            let replied: u64 = self.summary.acks.values().sum();
            self.summary.unanswered = sent.saturating_sub(replied);
        }
        self.summary.lost = self.lost();
        self.counting = false;
        self.dropper = None;
        Ok(())
    }

    /// Whether everything sent in this phase (`sent`) has its reply and has reached its
    /// receiver, and in reconnect mode every session is back.
    fn settled(&self, sent: u64) -> bool {
        if self.o.mode == Mode::Echo {
            return self.summary.received >= self.summary.sent;
        }
        let replied: u64 = self.summary.acks.values().sum();
        let all_replied = if self.o.mode.keeps_outbox() {
            let opening = |c: &Client| matches!(c.phase, Phase::Upgrading | Phase::LoggingIn);
            self.unacked.iter().all(BTreeMap::is_empty)
                && !self.clients.iter().flatten().any(opening)
        } else {
            replied >= sent
        };
        all_replied && self.summary.received >= self.accepted()
    }

    /// Messages the server accepted: 200, and 202 (stored for an offline friend).
    fn accepted(&self) -> u64 {
        [200, 202].iter().map(|c| self.summary.acks.get(c).copied().unwrap_or(0)).sum()
    }

    /// Messages lost: with history on, the conversations' gaps and what a receiver
    /// misses, and what the server refused (every message to a friend is to be
    /// accepted; in reconnect mode, what is still unacknowledged); with it off,
    /// accepted messages never received (a 508 for an offline friend is the seed's
    /// rule, not a loss).
    fn lost(&self) -> u64 {
        if self.o.mode == Mode::Echo {
            return self.summary.sent.saturating_sub(self.summary.received);
        }
        if self.history != Some(true) {
            return self.accepted().saturating_sub(self.summary.received);
        }
        let refused = if self.o.mode.keeps_outbox() {
            self.unacked.iter().map(BTreeMap::len).sum::<usize>() as u64
        } else {
            self.summary.acks.values().sum::<u64>().saturating_sub(self.accepted())
        };
        self.ledgers.iter().map(Ledger::lost).sum::<u64>() + refused
    }

    /// Sends every message due by now. Called between the connections a turn services
    /// too, not only between turns: a turn that reads a few thousand frames takes
    /// milliseconds, and a message sent that late counts that lateness against the
    /// server.
    fn send_due(&mut self) {
        let Some(mut p) = self.pacer.take() else { return };
        let interval_us = 1e6 / self.o.rate;
        // Message k is due at k / rate: the first goes at once, none goes late.
        let due = (p.start.elapsed().as_secs_f64() * self.o.rate) as u64 + 1;
        let first = p.sent;
        while p.sent < due {
            let sender = p.ready[(p.sent as usize) % p.ready.len()];
            let intended = p.start_us + (p.sent as f64 * interval_us) as u64;
            p.sent += 1;
            self.send_one(sender, intended);
            let lag = (self.t0.elapsed().as_micros() as u64).saturating_sub(intended);
            let _ = self.summary.send_lag_us.record(lag.max(1));
        }
        // Each sender once, however many of its frames went out.
        let senders = ((due - first) as usize).min(p.ready.len());
        for k in 0..senders {
            let sender = p.ready[(first as usize + k) % p.ready.len()];
            if let Some(c) = self.clients[sender].as_mut() {
                let _ = c.link.flush();
            }
        }
        self.pacer = Some(p);
    }

    fn send_one(&mut self, sender: usize, intended_us: u64) {
        use std::fmt::Write as _;
        let peer = if self.o.mode == Mode::Echo { sender } else { sender ^ 1 };
        let seq = self.next_seq[sender];
        self.next_seq[sender] += 1;
        // Written by hand: ids, user ids and payloads here never need escaping, and at
        // hundreds of thousands of frames a second a JSON value per frame shows.
        let to = self.ids[peer].as_str();
        let mut frame = String::with_capacity(64 + to.len() + self.nonce.len() + self.o.size);
        let nonce = &self.nonce;
        let _ =
            write!(frame, r#"{{"id":"d{seq}","toFriend":"{to}","cid":"{nonce}.{seq}","payload":""#);
        let start = frame.len();
        let _ = write!(frame, "{sender}:{seq}:{intended_us}:");
        let written = frame.len() - start;
        if written < self.o.size {
            frame.extend(std::iter::repeat_n('x', self.o.size - written));
        }
        frame.push_str(r#""}"#);
        if self.o.mode.keeps_outbox() {
            let ready = self.clients[sender].as_ref().is_some_and(|c| c.phase == Phase::Ready);
            let unacked = reconnect::Unacked { frame: frame.clone(), sent: ready };
            self.unacked[sender].insert(seq, unacked);
            if !ready {
                // Away: it goes out when the session is back.
                return;
            }
        }
        if let Some(c) = self.clients[sender].as_mut() {
            if let Some(ws) = c.ws.as_mut() {
                let _ = ws.send(&mut c.link, frame);
            }
        }
    }
}

/// This run's part of every `cid`. Accounts outlive a run, and a `cid` a sender used
/// before with another payload would be refused (529): the clock and the process id
/// keep each run's apart.
fn nonce() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}{:x}", std::process::id())
}
