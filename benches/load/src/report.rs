//! The figures of a run, printed for people and as one `SUMMARY {json}` line; a child
//! process's figures as a `Part`, and their merge into one summary.

use std::collections::BTreeMap;

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// What a run measured.
pub struct Summary {
    pub mode: &'static str,
    pub sessions: usize,
    pub failed_sessions: usize,
    pub seconds: f64,
    pub sent: u64,
    pub received: u64,
    pub acks: BTreeMap<u16, u64>,
    /// Pushes by code (presence, and with history on 306 delivered and the like).
    pub pushes: BTreeMap<u16, u64>,
    /// Reconnect mode: sessions dropped and opened again, messages sent again after a
    /// reconnect, messages first had through `/im/messages`.
    pub reconnects: u64,
    pub resent: u64,
    pub fetched: u64,
    pub lost: u64,
    /// Chat and storm: messages with no reply by the end of the wait for what was in
    /// flight. The server may still hold them, or have lost them: not confirmed either
    /// way, so not a clean run (`lost` counts only what is known missing).
    pub unanswered: u64,
    pub duplicated: u64,
    pub misordered: u64,
    pub latency_us: Histogram<u64>,
    /// With several nodes: the latencies of messages between users on one node, and
    /// between users on two (`--placement`), beside the run's whole.
    pub same_us: Histogram<u64>,
    pub cross_us: Histogram<u64>,
    /// How late each message left the generator, after its intended send time: the
    /// part of the latency that is the generator's (or the machine's) and not the
    /// server's.
    pub send_lag_us: Histogram<u64>,
    pub server_rss_kb: Option<(u64, u64)>,
    pub logins: u64,
    pub baseline_rate: Option<f64>,
    /// Set on a merge: the sum of the parts' rates, each over its own seconds (the
    /// processes start together but do not stop at the same microsecond).
    pub merged_rate: Option<f64>,
    /// Restart mode: the restart and the way back.
    pub restart: Option<RestartFigures>,
}

/// A restart run's figures (seconds).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RestartFigures {
    /// The sessions came back with passwords, not device tokens.
    pub password_relogin: bool,
    /// SIGTERM to the old process's exit.
    pub stop_s: f64,
    /// The new process's start to its listening.
    pub start_s: f64,
    /// Sessions that logged in on the new process.
    pub back: usize,
    /// From the new process listening to the last session back, when all came back.
    pub all_back_s: Option<f64>,
    /// From listening to half the sessions back.
    pub p50_s: f64,
    /// How long the run waited for them: `all_back_s`, or `--back-within` when some
    /// never came back.
    pub window_s: f64,
    /// Sessions that logged in on the new process with their password.
    pub passwords: usize,
}

impl RestartFigures {
    /// Logins a second on the new process over the window.
    pub fn login_rate(&self) -> f64 {
        if self.window_s > 0.0 {
            self.back as f64 / self.window_s
        } else {
            0.0
        }
    }

    /// When not all of `sessions` came back within the window: how long all of them
    /// would take at the window's rate (an extrapolation, not a measurement).
    pub fn extrapolated_s(&self, sessions: usize) -> Option<f64> {
        let rate = self.login_rate();
        (self.all_back_s.is_none() && rate > 0.0).then(|| sessions as f64 / rate)
    }

    fn json(&self, sessions: usize) -> String {
        let opt = |v: Option<f64>| v.map_or("null".to_string(), |s| format!("{s:.2}"));
        format!(
            "{{\"password_relogin\":{},\"stop_s\":{:.2},\"start_s\":{:.2},\"back\":{},\"all_back_s\":{},\
             \"p50_s\":{:.2},\"window_s\":{:.2},\"passwords\":{},\"login_rate\":{:.1},\"extrapolated_s\":{}}}",
            self.password_relogin,
            self.stop_s,
            self.start_s,
            self.back,
            opt(self.all_back_s),
            self.p50_s,
            self.window_s,
            self.passwords,
            self.login_rate(),
            opt(self.extrapolated_s(sessions)),
        )
    }
}

/// One child process's figures, as it hands them to the coordinator: every count, and
/// the latency histogram itself (HdrHistogram V2, base64) so percentiles merge exactly
/// instead of being averaged.
#[derive(Debug, Serialize, Deserialize)]
pub struct Part {
    pub sessions: usize,
    pub failed_sessions: usize,
    pub seconds: f64,
    pub sent: u64,
    pub received: u64,
    pub acks: BTreeMap<u16, u64>,
    pub pushes: BTreeMap<u16, u64>,
    pub reconnects: u64,
    pub resent: u64,
    pub fetched: u64,
    pub lost: u64,
    pub unanswered: u64,
    pub dup: u64,
    pub misordered: u64,
    pub logins: u64,
    pub rate: f64,
    pub baseline_rate: Option<f64>,
    pub latency_v2: String,
    pub send_lag_v2: String,
    pub same_v2: String,
    pub cross_v2: String,
}

impl Summary {
    pub fn new(mode: &'static str, sessions: usize) -> Summary {
        Summary {
            mode,
            sessions,
            failed_sessions: 0,
            seconds: 0.0,
            sent: 0,
            received: 0,
            acks: BTreeMap::new(),
            pushes: BTreeMap::new(),
            reconnects: 0,
            resent: 0,
            fetched: 0,
            lost: 0,
            unanswered: 0,
            duplicated: 0,
            misordered: 0,
            // 1 µs .. 100 s at 3 significant digits; the bounds are constants.
            latency_us: histogram(),
            same_us: histogram(),
            cross_us: histogram(),
            send_lag_us: histogram(),
            server_rss_kb: None,
            logins: 0,
            baseline_rate: None,
            merged_rate: None,
            restart: None,
        }
    }

    /// This run's figures as one part of a larger run.
    pub fn to_part(&self) -> Result<Part, String> {
        Ok(Part {
            sessions: self.sessions,
            failed_sessions: self.failed_sessions,
            seconds: self.seconds,
            sent: self.sent,
            received: self.received,
            acks: self.acks.clone(),
            pushes: self.pushes.clone(),
            reconnects: self.reconnects,
            resent: self.resent,
            fetched: self.fetched,
            lost: self.lost,
            unanswered: self.unanswered,
            dup: self.duplicated,
            misordered: self.misordered,
            logins: self.logins,
            rate: self.rate(),
            baseline_rate: self.baseline_rate,
            latency_v2: encode(&self.latency_us)?,
            send_lag_v2: encode(&self.send_lag_us)?,
            same_v2: encode(&self.same_us)?,
            cross_v2: encode(&self.cross_us)?,
        })
    }

    /// The parts of one run, as if one process had run it: counts and rates add up,
    /// latencies merge histogram into histogram, seconds is the longest part's.
    pub fn merge(mode: &'static str, parts: &[Part]) -> Result<Summary, String> {
        let mut s = Summary::new(mode, 0);
        let mut rate = 0.0;
        for (k, p) in parts.iter().enumerate() {
            let add = |into: &mut Histogram<u64>, v2: &str| {
                into.add(decode(v2)?).map_err(|e| format!("histogram out of range: {e:?}"))
            };
            add(&mut s.latency_us, &p.latency_v2).map_err(|e| format!("part {k}: {e}"))?;
            add(&mut s.send_lag_us, &p.send_lag_v2).map_err(|e| format!("part {k}: {e}"))?;
            add(&mut s.same_us, &p.same_v2).map_err(|e| format!("part {k}: {e}"))?;
            add(&mut s.cross_us, &p.cross_v2).map_err(|e| format!("part {k}: {e}"))?;
            s.sessions += p.sessions;
            s.failed_sessions += p.failed_sessions;
            s.seconds = s.seconds.max(p.seconds);
            s.sent += p.sent;
            s.received += p.received;
            for (code, n) in &p.acks {
                *s.acks.entry(*code).or_insert(0) += n;
            }
            for (code, n) in &p.pushes {
                *s.pushes.entry(*code).or_insert(0) += n;
            }
            s.reconnects += p.reconnects;
            s.resent += p.resent;
            s.fetched += p.fetched;
            s.lost += p.lost;
            s.unanswered += p.unanswered;
            s.duplicated += p.dup;
            s.misordered += p.misordered;
            s.logins += p.logins;
            rate += p.rate;
            if let Some(b) = p.baseline_rate {
                s.baseline_rate = Some(s.baseline_rate.unwrap_or(0.0) + b);
            }
        }
        s.merged_rate = Some(rate);
        Ok(s)
    }

    /// No session failed and nothing was lost, duplicated or misordered.
    pub fn clean(&self) -> bool {
        self.failed_sessions == 0
            && self.lost == 0
            && self.unanswered == 0
            && self.duplicated == 0
            && self.misordered == 0
    }

    fn rate(&self) -> f64 {
        if let Some(r) = self.merged_rate {
            r
        } else if self.seconds > 0.0 {
            self.received as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn print(&self) {
        let h = &self.latency_us;
        println!(
            "mode {} — {} sessions ({} failed)",
            self.mode, self.sessions, self.failed_sessions
        );
        if let Some((before, after)) = self.server_rss_kb {
            let per = (after.saturating_sub(before) * 1024) as f64 / self.sessions as f64;
            println!("server RSS {before} kB → {after} kB: {per:.0} bytes per session");
        }
        if self.sent > 0 {
            println!(
                "sent {} received {} in {:.1} s: {:.0} msgs/s; lost {} unanswered {} duplicated {} misordered {}",
                self.sent,
                self.received,
                self.seconds,
                self.rate(),
                self.lost,
                self.unanswered,
                self.duplicated,
                self.misordered
            );
            println!(
                "send→receive latency µs: p50 {} p99 {} p99.9 {} max {}",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max()
            );
            let lag = &self.send_lag_us;
            println!(
                "sent late by (the generator's own delay) µs: p50 {} p99 {} max {}",
                lag.value_at_quantile(0.5),
                lag.value_at_quantile(0.99),
                lag.max()
            );
            for (kind, h) in [("on one node", &self.same_us), ("across nodes", &self.cross_us)] {
                if !h.is_empty() {
                    println!(
                        "{} messages {kind}: p50 {} p99 {} p99.9 {} max {} µs",
                        h.len(),
                        h.value_at_quantile(0.5),
                        h.value_at_quantile(0.99),
                        h.value_at_quantile(0.999),
                        h.max()
                    );
                }
            }
            println!("acks by code: {:?}; pushes by code: {:?}", self.acks, self.pushes);
        }
        if self.reconnects > 0 {
            println!(
                "reconnects {}: {} messages sent again, {} fetched through /im/messages",
                self.reconnects, self.resent, self.fetched
            );
        }
        if let Some(r) = &self.restart {
            let how = if r.password_relogin { "password" } else { "device token" };
            println!(
                "restart: the daemon exited {:.2} s after SIGTERM; the new one listened {:.2} s after its start",
                r.stop_s, r.start_s
            );
            match r.all_back_s {
                Some(s) => println!(
                    "all {} sessions back (by {how}) {s:.2} s after it listened (half by {:.2} s); {} needed a password",
                    r.back, r.p50_s, r.passwords
                ),
                None => println!(
                    "{} of {} sessions back (by {how}) within {:.1} s of it listening: {:.1} logins/s; all {} at that rate: {:.0} s (extrapolated); {} needed a password",
                    r.back,
                    self.sessions,
                    r.window_s,
                    r.login_rate(),
                    self.sessions,
                    r.extrapolated_s(self.sessions).unwrap_or(0.0),
                    r.passwords
                ),
            }
        }
        if self.logins > 0 {
            println!(
                "logins {} ({:.0}/s)",
                self.logins,
                self.logins as f64 / self.seconds.max(1e-9)
            );
        }
        if let Some(b) = self.baseline_rate {
            println!("chat rate before the storm {b:.0} msgs/s, during {:.0} msgs/s", self.rate());
        }
        let by_code = |m: &BTreeMap<u16, u64>| {
            m.iter().map(|(c, n)| format!("\"{c}\":{n}")).collect::<Vec<_>>().join(",")
        };
        let rss = self.server_rss_kb.map_or("null".to_string(), |(b, a)| {
            format!(
                "{{\"before_kb\":{b},\"after_kb\":{a},\"bytes_per_session\":{}}}",
                (a.saturating_sub(b) * 1024) / self.sessions as u64
            )
        });
        println!(
            "SUMMARY {{\"mode\":\"{}\",\"sessions\":{},\"failed_sessions\":{},\"seconds\":{:.2},\"sent\":{},\"received\":{},\
             \"rate\":{:.1},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"lag_p99_us\":{},\"lost\":{},\"unanswered\":{},\"dup\":{},\"misordered\":{},\
             \"acks\":{{{}}},\"pushes\":{{{}}},\"reconnects\":{},\"resent\":{},\"fetched\":{},\"server_rss\":{},\"logins\":{},\"baseline_rate\":{},\"restart\":{},\
             \"same\":{},\"cross\":{}}}",
            self.mode,
            self.sessions,
            self.failed_sessions,
            self.seconds,
            self.sent,
            self.received,
            self.rate(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            self.send_lag_us.value_at_quantile(0.99),
            self.lost,
            self.unanswered,
            self.duplicated,
            self.misordered,
            by_code(&self.acks),
            by_code(&self.pushes),
            self.reconnects,
            self.resent,
            self.fetched,
            rss,
            self.logins,
            self.baseline_rate.map_or("null".to_string(), |b| format!("{b:.1}")),
            self.restart.as_ref().map_or("null".to_string(), |r| r.json(self.sessions)),
            kind_json(&self.same_us),
            kind_json(&self.cross_us),
        );
    }
}

/// One kind of message's latencies (`same`, `cross`) in the summary line; `null` when
/// the run had none of that kind (one node, or a placement without it).
fn kind_json(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "null".into();
    }
    format!(
        "{{\"received\":{},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    )
}

/// 1 µs .. 100 s at 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// A histogram as a part carries it: HdrHistogram V2, base64.
fn encode(h: &Histogram<u64>) -> Result<String, String> {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| format!("histogram serialization: {e:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn decode(v2: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v2)
        .map_err(|e| format!("histogram is not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("bad histogram: {e:?}"))
}

/// The server's resident set in kB, from /proc.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part_of(mode: &'static str, latencies: &[u64], acks: &[(u16, u64)], seconds: f64) -> Part {
        let mut s = Summary::new(mode, 10);
        for l in latencies {
            s.latency_us.record(*l).expect("in range");
            // The slow ones stand for messages across nodes.
            let kind = if *l >= 10_000 { &mut s.cross_us } else { &mut s.same_us };
            kind.record(*l).expect("in range");
            s.send_lag_us.record(l / 10 + 1).expect("in range");
        }
        s.sent = latencies.len() as u64;
        s.received = latencies.len() as u64;
        s.acks = acks.iter().copied().collect();
        s.seconds = seconds;
        s.failed_sessions = 1;
        s.lost = 2;
        s.unanswered = 1;
        s.duplicated = 3;
        s.misordered = 4;
        s.logins = 5;
        s.to_part().expect("serializes")
    }

    #[test]
    fn a_part_survives_its_json_form() {
        let p = part_of("chat", &[10, 20, 30], &[(200, 3)], 2.0);
        let text = serde_json::to_string(&p).expect("json");
        let back: Part = serde_json::from_str(&text).expect("parses");
        assert_eq!(back.acks.get(&200), Some(&3));
        assert_eq!(back.latency_v2, p.latency_v2);
        assert_eq!(back.rate, 1.5);
    }

    #[test]
    fn merged_percentiles_come_from_the_merged_histogram() {
        // One part all fast, one all slow: the averaged medians would be ~5,000 µs, the
        // true median of the whole run is in the fast part, its p99 in the slow one.
        let fast: Vec<u64> = (0..900).map(|i| 100 + i % 10).collect();
        let slow: Vec<u64> = vec![10_000; 100];
        let parts = [part_of("chat", &fast, &[], 1.0), part_of("chat", &slow, &[], 1.0)];
        let m = Summary::merge("chat", &parts).expect("merges");
        assert_eq!(m.latency_us.len(), 1000);
        assert!(m.latency_us.value_at_quantile(0.5) < 120);
        assert!(m.latency_us.value_at_quantile(0.95) >= 9_990);
        assert_eq!(m.latency_us.max(), m.latency_us.highest_equivalent(10_000));
        assert_eq!(m.latency_us.min(), 100);
        // The generator's own lateness merges the same way, and each kind's latencies.
        assert_eq!(m.same_us.len(), 900);
        assert_eq!(m.cross_us.len(), 100);
        assert_eq!(m.cross_us.min(), m.cross_us.lowest_equivalent(10_000));
        assert_eq!(m.send_lag_us.len(), 1000);
        assert_eq!(m.send_lag_us.max(), m.send_lag_us.highest_equivalent(1_001));
    }

    #[test]
    fn merged_counts_and_rates_are_sums() {
        let parts = [
            part_of("storm", &[5; 40], &[(200, 38), (508, 2)], 2.0),
            part_of("storm", &[7; 60], &[(200, 60)], 3.0),
        ];
        let m = Summary::merge("storm", &parts).expect("merges");
        assert_eq!(m.sessions, 20);
        assert_eq!(m.failed_sessions, 2);
        assert_eq!((m.sent, m.received), (100, 100));
        assert_eq!((m.lost, m.duplicated, m.misordered, m.logins), (4, 6, 8, 10));
        assert_eq!(m.unanswered, 2);
        assert_eq!(m.acks, BTreeMap::from([(200, 98), (508, 2)]));
        assert_eq!(m.seconds, 3.0);
        // 40/2 + 60/3, not 100/3.
        assert_eq!(m.rate(), 40.0);
        assert!(!m.clean());
    }

    #[test]
    fn a_broken_histogram_is_refused() {
        let mut p = part_of("chat", &[1], &[], 1.0);
        p.latency_v2 = "AAAA".into();
        assert!(Summary::merge("chat", &[p]).is_err());
        let mut p = part_of("chat", &[1], &[], 1.0);
        p.send_lag_v2 = "not base64".into();
        assert!(Summary::merge("chat", &[p]).is_err());
    }
}
