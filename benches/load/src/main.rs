//! imd-load: the load generator shipped with imd. Loopback only, bounded in time.
//!
//! It provisions users as friend pairs through the protocol, opens their WebSocket
//! sessions (plain or TLS, spread over several 127.0.0.x source addresses) on one mio
//! loop, and runs one mode:
//!
//! - `idle`   — hold N sessions; report the server's RSS per session.
//! - `chat`   — an open-loop rate of messages between the pairs; latency measured from
//!   each message's intended send time (no coordinated omission), acks by code, lost,
//!   duplicated and misordered messages. Every send carries a `cid`. With history on
//!   (docs/protocol.md §10) receivers check each conversation's `seq`: no gap, no
//!   repeat, in order; with it off, each sender's own sequence in the payload.
//! - `reconnect` — chat while sessions are dropped and log in again (`--drops` a
//!   second): each resends what was not acknowledged with the same `cid` and fetches
//!   what it missed through `/im/messages`; the run must end with nothing lost,
//!   duplicated or misordered. Needs history on.
//! - `restart` — sessions log in with `"remember":true` and chat; the daemon, which
//!   this run starts itself (`--server-cmd`), is stopped with SIGTERM and started again
//!   (`--restart-cmd`, by default the same). Sessions come back with their device tokens
//!   (§11.2; `--password-relogin`: with passwords, for comparison) after a backoff with
//!   jitter, resend what was not acknowledged with the same `cid` and fetch gaps through
//!   `/im/messages`. Reports when the last session was back, counted from the new
//!   process listening, and how many needed a password; nothing acknowledged may be
//!   lost, duplicated or misordered. One process (at most `--per-process` sessions).
//! - `storm`  — chat at a fixed rate while other users log in and out as fast as they
//!   can; logins/s and the chat rate before and during the storm.
//! - `echo`   — chat mode against a plain WebSocket echo server (the raw ceiling).
//!
//! `--ws` given several times spreads the sessions over the nodes of a cluster
//! (`placement`): a pair's two users on one node, on two, or half the pairs each way,
//! with the latencies of messages that crossed nodes and of those that did not
//! reported apart.
//!
//! More sessions than `--per-process` (one process holds at most ~19,000 sockets under
//! a 20,000 open-file limit) make this process a coordinator: it splits the run into
//! child imd-load processes, starts them together and merges their figures into the
//! one summary line.
//!
//! Modules: `server` (the daemon a restart run starts, stops and starts again), `link`
//! (a non-blocking plain/TLS socket with WebSocket framing), `placement` (which node
//! each session connects to), `provision` (registration and friending over HTTP),
//! `driver` (the loop and the modes; `driver/receive` counts what sessions read, `driver/reconnect` drops, logs in
//! again, resends and fetches, `driver/restart` restarts the daemon and brings every
//! session back with backoff), `frames` (the server's frames read without a JSON
//! tree), `ledger` (the per-conversation `seq` checker), `report` (figures, the
//! machine-readable summary line, merging parts), `split` (dividing a run between
//! processes), `coordinator` (spawning, starting and collecting the children), `gate`
//! (a child's side: ready, go, result), `tick` (wakes the loop when a send is due).

mod coordinator;
mod driver;
mod frames;
mod gate;
mod ledger;
mod link;
mod placement;
mod provision;
mod report;
mod server;
mod split;
mod tick;

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use placement::Placement;

/// Everything a run is told.
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    /// WebSocket endpoints (the imd plain or TLS listener, or an echo server): one, or
    /// one per node of a cluster, sessions spread over them by `placement`.
    pub ws: Vec<SocketAddr>,
    /// How the two users of a pair are placed when there are several `ws`.
    pub placement: Placement,
    pub tls: bool,
    /// Plain HTTP listener for provisioning.
    pub http: SocketAddr,
    pub sessions: usize,
    pub rate: f64,
    pub size: usize,
    pub duration: Duration,
    pub sources: u8,
    pub server_pid: Option<u32>,
    pub prefix: String,
    pub storm_users: usize,
    /// Session drops per second in reconnect mode.
    pub drops: f64,
    /// Sessions one process may hold; more make this process a coordinator.
    pub per_process: usize,
    /// Last byte of the first source address: 127.0.0.`source_first` onwards.
    pub source_first: u8,
    /// Restart mode: the daemon's command line, and the one that starts it again.
    pub server_cmd: Option<String>,
    pub restart_cmd: Option<String>,
    /// Restart mode: log back in with passwords, not device tokens.
    pub password_relogin: bool,
    /// Restart mode: longest wait, from the new process listening, for every session.
    pub back_within: Duration,
    /// Run as a coordinator's child: talk READY/go/RESULT over stdin and stdout.
    pub child: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Idle,
    Chat,
    Storm,
    Echo,
    Reconnect,
    Restart,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Idle => "idle",
            Mode::Chat => "chat",
            Mode::Storm => "storm",
            Mode::Echo => "echo",
            Mode::Reconnect => "reconnect",
            Mode::Restart => "restart",
        }
    }

    /// Modes whose senders keep what is not acknowledged and send it again after
    /// logging in again, as a client's outbox.
    pub fn keeps_outbox(self) -> bool {
        matches!(self, Mode::Reconnect | Mode::Restart)
    }
}

const USAGE: &str = "usage: imd-load MODE [options]
modes: idle | chat | storm | echo | reconnect | restart
  --ws ADDR          WebSocket listener (default 127.0.0.1:8080); given again, one
                     per node of a cluster (not in restart mode)
  --placement P      with several --ws: same (a pair's two users on one node),
                     cross (on two nodes) or mixed (half the pairs each way, their
                     latencies reported apart; default)
  --tls              speak TLS to --ws (wss)
  --http ADDR        plain HTTP listener for provisioning (default 127.0.0.1:8080)
  --sessions N       sessions (pairs = N/2; default 100)
  --rate R           messages per second, all pairs together (default 1000)
  --size S           payload bytes (default 64)
  --duration D       seconds of measurement (default 10)
  --sources K        spread over 127.0.0.1 .. 127.0.0.K (default 8)
  --server-pid PID   read the server's RSS (idle mode)
  --prefix P         account prefix (default load<pid>)
  --storm-users L    users logging in and out in storm mode (default 20)
  --drops R          sessions dropped (and logged in again) per second in
                     reconnect mode (default 5)
  --per-process M    at most M sessions per process; more are split over child
                     processes, merged into one summary (default 19000)
  --source-first F   first source address 127.0.0.F (default 1)
  --server-cmd CMD   restart mode: the daemon's command line (run by sh); imd-load
                     starts it, stops it with SIGTERM after --duration of chat,
                     and stops it at the end
  --restart-cmd CMD  restart mode: the command line that starts it again
                     (default: --server-cmd)
  --password-relogin restart mode: log back in with passwords, not device tokens
  --back-within S    restart mode: longest wait for every session to be back,
                     from the new process listening (default 60)
  --help, -h         this text
Only loopback addresses are accepted.";

/// Sessions per process by default: the open-file limit is 20,000, and a process also
/// needs its provisioning connections, storm users and a few files.
const PER_PROCESS: usize = 19_000;

/// Options from command-line arguments (without the program name).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut args = args.into_iter();
    let mode = match args.next().as_deref() {
        Some("idle") => Mode::Idle,
        Some("chat") => Mode::Chat,
        Some("storm") => Mode::Storm,
        Some("echo") => Mode::Echo,
        Some("reconnect") => Mode::Reconnect,
        Some("restart") => Mode::Restart,
        _ => return Err("a mode is needed".into()),
    };
    let local: SocketAddr = ([127, 0, 0, 1], 8080).into();
    let mut o = Options {
        mode,
        ws: Vec::new(),
        placement: Placement::Mixed,
        tls: false,
        http: local,
        sessions: 100,
        rate: 1000.0,
        size: 64,
        duration: Duration::from_secs(10),
        sources: 8,
        server_pid: None,
        prefix: format!("load{}", std::process::id()),
        storm_users: 20,
        drops: 5.0,
        per_process: PER_PROCESS,
        source_first: 1,
        server_cmd: None,
        restart_cmd: None,
        password_relogin: false,
        back_within: Duration::from_secs(60),
        child: false,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let bad = |flag: &str| format!("bad value for {flag}");
        match flag.as_str() {
            "--ws" => o.ws.push(value()?.parse().map_err(|_| bad(&flag))?),
            "--placement" => o.placement = Placement::parse(&value()?).ok_or_else(|| bad(&flag))?,
            "--tls" => o.tls = true,
            "--http" => o.http = value()?.parse().map_err(|_| bad(&flag))?,
            "--sessions" => o.sessions = value()?.parse().map_err(|_| bad(&flag))?,
            "--rate" => o.rate = value()?.parse().map_err(|_| bad(&flag))?,
            "--size" => o.size = value()?.parse().map_err(|_| bad(&flag))?,
            "--duration" => {
                o.duration = Duration::from_secs_f64(value()?.parse().map_err(|_| bad(&flag))?)
            }
            "--sources" => o.sources = value()?.parse().map_err(|_| bad(&flag))?,
            "--server-pid" => o.server_pid = Some(value()?.parse().map_err(|_| bad(&flag))?),
            "--prefix" => o.prefix = value()?,
            "--storm-users" => o.storm_users = value()?.parse().map_err(|_| bad(&flag))?,
            "--drops" => o.drops = value()?.parse().map_err(|_| bad(&flag))?,
            "--per-process" => o.per_process = value()?.parse().map_err(|_| bad(&flag))?,
            "--source-first" => o.source_first = value()?.parse().map_err(|_| bad(&flag))?,
            "--server-cmd" => o.server_cmd = Some(value()?),
            "--restart-cmd" => o.restart_cmd = Some(value()?),
            "--password-relogin" => o.password_relogin = true,
            "--back-within" => {
                let s: f64 = value()?.parse().map_err(|_| bad(&flag))?;
                if !(s.is_finite() && s > 0.0 && s <= 600.0) {
                    return Err(bad(&flag));
                }
                o.back_within = Duration::from_secs_f64(s);
            }
            "--child" => o.child = true,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if o.ws.is_empty() {
        o.ws.push(local);
    }
    for addr in o.ws.iter().copied().chain([o.http]) {
        if !is_loopback(addr.ip()) {
            return Err(format!(
                "{addr} is not a loopback address: imd-load only targets this machine"
            ));
        }
    }
    if o.sessions < 2 || o.sessions % 2 != 0 {
        return Err("--sessions must be an even number ≥ 2".into());
    }
    if o.duration > Duration::from_secs(600) || o.rate <= 0.0 || o.sources == 0 {
        return Err("--duration at most 600 s, --rate and --sources positive".into());
    }
    if !(o.drops.is_finite() && o.drops >= 0.0) {
        return Err("--drops must be a number ≥ 0".into());
    }
    if o.per_process < 2 {
        return Err("--per-process must be at least 2".into());
    }
    let restart_only = o.server_cmd.is_some() || o.restart_cmd.is_some() || o.password_relogin;
    if o.mode != Mode::Restart && restart_only {
        return Err(
            "--server-cmd, --restart-cmd and --password-relogin belong to restart mode".into()
        );
    }
    if o.mode == Mode::Restart {
        if o.server_cmd.is_none() {
            return Err("restart mode needs --server-cmd: it stops and starts the daemon".into());
        }
        if o.ws.len() > 1 {
            return Err("restart mode restarts one daemon: give --ws once".into());
        }
        if o.sessions > o.per_process {
            return Err(format!(
                "restart mode runs in one process: at most --per-process {} sessions",
                o.per_process
            ));
        }
    }
    if o.placement == Placement::Cross && o.ws.len() < 2 {
        return Err("--placement cross needs two --ws or more: one per node".into());
    }
    if (1..o.ws.len()).any(|k| o.ws[..k].contains(&o.ws[k])) {
        return Err("--ws given twice with the same address: one per node".into());
    }
    if o.source_first == 0 || usize::from(o.source_first) + usize::from(o.sources) > 255 {
        return Err("source addresses must stay within 127.0.0.1 .. 127.0.0.254".into());
    }
    Ok(o)
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

fn main() -> ExitCode {
    // Asking for help is not a mistake: usage on stdout, exit 0, whatever else was given.
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("imd-load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if options.child {
        return match gate::run(&options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("imd-load: {e}");
                ExitCode::from(1)
            }
        };
    }
    let result = if options.sessions > options.per_process {
        coordinator::run(&options)
    } else {
        driver::run(&options, None).map_err(|e| e.to_string())
    };
    match result {
        Ok(summary) => {
            summary.print();
            if summary.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("imd-load: {e}");
            ExitCode::from(1)
        }
    }
}
