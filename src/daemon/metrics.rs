//! Counters for `/im/metrics` (Prometheus text format) and the `/im/health` answer.
//! Every counter is a relaxed atomic add: nothing here takes a lock on the hot path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use proto::Code;
use reactor::{Remote, Response};

use crate::app::App;
use crate::routes::Route;

/// Codes are counted in slots `code - 200`; anything outside 200..600 goes to the last.
const CODE_SLOTS: usize = 401;

fn slot(code: u16) -> usize {
    usize::from(code).checked_sub(200).filter(|s| *s < CODE_SLOTS - 1).unwrap_or(CODE_SLOTS - 1)
}

fn code_of_slot(slot: usize) -> Option<usize> {
    (slot < CODE_SLOTS - 1).then_some(slot + 200)
}

/// A fixed array of counters indexed by protocol code.
struct ByCode([AtomicU64; CODE_SLOTS]);

impl Default for ByCode {
    fn default() -> Self {
        ByCode(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl ByCode {
    fn add(&self, code: u16) {
        self.0[slot(code)].fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (i, c) in self.0.iter().enumerate() {
            let n = c.load(Relaxed);
            if n > 0 {
                let code = code_of_slot(i).map_or("other".to_string(), |c| c.to_string());
                let _ = writeln!(out, "{name}{{{labels}code=\"{code}\"}} {n}");
            }
        }
    }
}

/// Upper bounds of the store latency buckets, in microseconds.
const LATENCY_BOUNDS_US: [u64; 12] =
    [25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000];

/// A latency histogram with fixed buckets.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Counts one observation.
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BOUNDS_US.iter().position(|b| us <= *b).unwrap_or(LATENCY_BOUNDS_US.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Relaxed);
            let le = LATENCY_BOUNDS_US
                .get(i)
                .map_or("+Inf".to_string(), |us| format!("{}", *us as f64 / 1e6));
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Upper bounds of the group-commit batch size buckets (sends per commit).
const BATCH_BOUNDS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/// How many sends each history commit carried: how the batch forms under load.
#[derive(Default)]
pub struct BatchSizes {
    buckets: [AtomicU64; BATCH_BOUNDS.len() + 1],
    sum: AtomicU64,
}

impl BatchSizes {
    /// Counts one commit of `n` sends.
    pub fn record(&self, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        let i = BATCH_BOUNDS.iter().position(|b| n <= *b).unwrap_or(BATCH_BOUNDS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(n, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            cumulative += b.load(Relaxed);
            let le = BATCH_BOUNDS.get(i).map_or("+Inf".to_string(), u64::to_string);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum.load(Relaxed);
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// Rate limiters, in the order they are reported.
/// "hasher" counts checks refused because the password pool's queue was full.
const LIMITERS: [&str; 8] =
    ["register", "query", "login", "send", "heartbeat", "search", "hasher", "typing"];

/// The daemon's counters.
pub struct Metrics {
    http: Vec<ByCode>,
    ws_replies: ByCode,
    pushes: ByCode,
    logins_ok: AtomicU64,
    logins_failed: AtomicU64,
    offline_stored: AtomicU64,
    offline_delivered: AtomicU64,
    rate_limited: [AtomicU64; LIMITERS.len()],
    /// Latency of store operations.
    pub store_latency: Histogram,
    /// Sends per group commit of the history writer.
    pub history_batch: BatchSizes,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            http: Route::ALL.iter().map(|_| ByCode::default()).collect(),
            ws_replies: ByCode::default(),
            pushes: ByCode::default(),
            logins_ok: AtomicU64::new(0),
            logins_failed: AtomicU64::new(0),
            offline_stored: AtomicU64::new(0),
            offline_delivered: AtomicU64::new(0),
            rate_limited: std::array::from_fn(|_| AtomicU64::new(0)),
            store_latency: Histogram::default(),
            history_batch: BatchSizes::default(),
        }
    }
}

impl Metrics {
    /// An HTTP request on `route` answered with protocol `code`.
    pub fn http(&self, route: Route, code: u16) {
        self.http[route.index()].add(code);
    }

    /// A reply to a tunnel frame with `code`.
    pub fn ws_reply(&self, code: Code) {
        self.ws_replies.add(code.code());
    }

    /// A push with `code` queued to a session.
    pub fn pushed(&self, code: Code) {
        self.pushes.add(code.code());
    }

    /// A login attempt's outcome.
    pub fn login(&self, ok: bool) {
        let c = if ok { &self.logins_ok } else { &self.logins_failed };
        c.fetch_add(1, Relaxed);
    }

    /// Messages stored for offline friends.
    pub fn offline_stored(&self, n: u64) {
        self.offline_stored.fetch_add(n, Relaxed);
    }

    /// Stored messages delivered at login.
    pub fn offline_delivered(&self, n: u64) {
        self.offline_delivered.fetch_add(n, Relaxed);
    }

    /// A request refused by the named rate limiter.
    pub fn rate_limited(&self, limiter: &str) {
        if let Some(i) = LIMITERS.iter().position(|l| *l == limiter) {
            self.rate_limited[i].fetch_add(1, Relaxed);
        }
    }

    /// `GET /im/health`: 200 while serving; 503 while shutting down, or once the
    /// database file was deleted or replaced under the daemon.
    pub fn health(&self, remote: &Remote, db_replaced: bool) -> Response {
        let (status, body) = if remote.is_shutting_down() {
            (503, r#"{"status":"shutting down"}"#)
        } else if db_replaced {
            (503, r#"{"status":"database file deleted or replaced"}"#)
        } else {
            (200, r#"{"status":"ok"}"#)
        };
        Response::new(status, "application/json; charset=utf-8", body)
            .with_header("Cache-Control", "no-store")
    }

    /// `GET /im/metrics` in the Prometheus text exposition format.
    pub fn render(&self, app: &App, remote: &Remote) -> Response {
        let mut out = String::with_capacity(4096);
        let stats = remote.stats();
        let gauge = |out: &mut String, name: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        };
        let _ = writeln!(
            out,
            "# HELP imd_open_connections Open connections by listener.\n\
             # TYPE imd_open_connections gauge\n\
             imd_open_connections{{listener=\"plain\"}} {}\n\
             imd_open_connections{{listener=\"tls\"}} {}",
            stats.open_plain(),
            stats.open_tls()
        );
        gauge(
            &mut out,
            "imd_open_websockets",
            "Open WebSockets.",
            stats.open_websockets().to_string(),
        );
        gauge(
            &mut out,
            "imd_live_sessions",
            "Logged-in sessions.",
            app.sessions.live().to_string(),
        );
        gauge(
            &mut out,
            "imd_worker_queue_depth",
            "Jobs waiting for a worker.",
            stats.queue_depth().to_string(),
        );
        gauge(
            &mut out,
            "imd_output_pending_bytes",
            "Output queued for all connections, not yet taken by their sockets.",
            stats.output_bytes().to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP imd_http_requests_total HTTP API requests by route and reply code.\n\
             # TYPE imd_http_requests_total counter"
        );
        for (route, counts) in Route::ALL.iter().zip(&self.http) {
            counts.render(
                &mut out,
                "imd_http_requests_total",
                &format!("route=\"{}\",", route.name()),
            );
        }
        let _ = writeln!(
            out,
            "# HELP imd_ws_replies_total Replies to tunnel frames by code.\n\
             # TYPE imd_ws_replies_total counter"
        );
        self.ws_replies.render(&mut out, "imd_ws_replies_total", "");
        let _ = writeln!(
            out,
            "# HELP imd_pushes_total Pushes queued to sessions by code.\n\
             # TYPE imd_pushes_total counter"
        );
        self.pushes.render(&mut out, "imd_pushes_total", "");
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        counter(&mut out, "imd_logins_total", "Successful logins.", self.logins_ok.load(Relaxed));
        counter(
            &mut out,
            "imd_ws_frames_on_loop_total",
            "Tunnel frames the event loop answered itself while every worker slept.",
            stats.ws_messages_on_loop.load(Relaxed),
        );
        counter(
            &mut out,
            "imd_login_failures_total",
            "Failed logins.",
            self.logins_failed.load(Relaxed),
        );
        let (current, other) = app.passwords.runs();
        let _ = writeln!(
            out,
            "# HELP imd_argon2_runs_total Argon2 runs, at the configured parameters or at a \
             stored hash's older ones.\n# TYPE imd_argon2_runs_total counter\n\
             imd_argon2_runs_total{{params=\"current\"}} {current}\n\
             imd_argon2_runs_total{{params=\"other\"}} {other}"
        );
        counter(
            &mut out,
            "imd_offline_messages_stored_total",
            "Messages stored for offline friends.",
            self.offline_stored.load(Relaxed),
        );
        counter(
            &mut out,
            "imd_offline_messages_delivered_total",
            "Stored messages delivered at login.",
            self.offline_delivered.load(Relaxed),
        );
        counter(
            &mut out,
            "imd_store_connections_opened_total",
            "Database connections opened: one per worker, more after failures a connection keeps.",
            app.db.opened(),
        );
        let _ = writeln!(
            out,
            "# HELP imd_rate_limited_total Requests refused with 524 by limiter.\n\
             # TYPE imd_rate_limited_total counter"
        );
        for (name, c) in LIMITERS.iter().zip(&self.rate_limited) {
            let _ =
                writeln!(out, "imd_rate_limited_total{{limiter=\"{name}\"}} {}", c.load(Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP imd_store_op_seconds Latency of store operations.\n\
             # TYPE imd_store_op_seconds histogram"
        );
        self.store_latency.render(&mut out, "imd_store_op_seconds");
        let _ = writeln!(
            out,
            "# HELP imd_history_batch_sends Sends committed together by the history writer.\n\
             # TYPE imd_history_batch_sends histogram"
        );
        self.history_batch.render(&mut out, "imd_history_batch_sends");
        Response::new(200, "text/plain; version=0.0.4; charset=utf-8", out)
            .with_header("Cache-Control", "no-store")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_slots() {
        assert_eq!(code_of_slot(slot(200)), Some(200));
        assert_eq!(code_of_slot(slot(528)), Some(528));
        assert_eq!(code_of_slot(slot(7)), None);
        assert_eq!(code_of_slot(slot(1000)), None);
    }

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::default();
        h.record(Duration::from_micros(10));
        h.record(Duration::from_millis(3));
        h.record(Duration::from_secs(5));
        let mut out = String::new();
        h.render(&mut out, "x");
        assert!(out.contains("x_bucket{le=\"0.000025\"} 1"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.005\"} 2"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3"), "{out}");
        assert!(out.contains("x_count 3"), "{out}");
    }
}
