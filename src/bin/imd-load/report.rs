//! The figures of a run, printed for people and as one `SUMMARY {json}` line.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

/// What a run measured.
pub struct Summary {
    pub mode: &'static str,
    pub sessions: usize,
    pub failed_sessions: usize,
    pub seconds: f64,
    pub sent: u64,
    pub received: u64,
    pub acks: BTreeMap<u16, u64>,
    pub lost: u64,
    pub duplicated: u64,
    pub misordered: u64,
    pub latency_us: Histogram<u64>,
    pub server_rss_kb: Option<(u64, u64)>,
    pub logins: u64,
    pub baseline_rate: Option<f64>,
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
            lost: 0,
            duplicated: 0,
            misordered: 0,
            // 1 µs .. 100 s at 3 significant digits; the bounds are constants.
            latency_us: Histogram::new_with_bounds(1, 100_000_000, 3)
                .expect("valid histogram bounds"),
            server_rss_kb: None,
            logins: 0,
            baseline_rate: None,
        }
    }

    /// No session failed and nothing was lost, duplicated or misordered.
    pub fn clean(&self) -> bool {
        self.failed_sessions == 0 && self.lost == 0 && self.duplicated == 0 && self.misordered == 0
    }

    fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
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
                "sent {} received {} in {:.1} s: {:.0} msgs/s; lost {} duplicated {} misordered {}",
                self.sent,
                self.received,
                self.seconds,
                self.rate(),
                self.lost,
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
            println!("acks by code: {:?}", self.acks);
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
        let acks: Vec<String> = self.acks.iter().map(|(c, n)| format!("\"{c}\":{n}")).collect();
        let rss = self.server_rss_kb.map_or("null".to_string(), |(b, a)| {
            format!(
                "{{\"before_kb\":{b},\"after_kb\":{a},\"bytes_per_session\":{}}}",
                (a.saturating_sub(b) * 1024) / self.sessions as u64
            )
        });
        println!(
            "SUMMARY {{\"mode\":\"{}\",\"sessions\":{},\"failed_sessions\":{},\"seconds\":{:.2},\"sent\":{},\"received\":{},\
             \"rate\":{:.1},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"lost\":{},\"dup\":{},\"misordered\":{},\
             \"acks\":{{{}}},\"server_rss\":{},\"logins\":{},\"baseline_rate\":{}}}",
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
            self.lost,
            self.duplicated,
            self.misordered,
            acks.join(","),
            rss,
            self.logins,
            self.baseline_rate.map_or("null".to_string(), |b| format!("{b:.1}")),
        );
    }
}

/// The server's resident set in kB, from /proc.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
