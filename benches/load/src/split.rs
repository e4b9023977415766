//! How a run too big for one process is divided between child processes: whole friend
//! pairs (a receiver checks its senders' sequences, so a pair never straddles two
//! processes), disjoint source addresses, account prefixes and storm users, and rates
//! that add up to the one asked for.

use crate::Options;

/// One child process's part of the run.
#[derive(Clone, Debug, PartialEq)]
pub struct Share {
    pub sessions: usize,
    pub rate: f64,
    pub storm_users: usize,
    /// Last byte of the first source address (127.0.0.x).
    pub source_first: u8,
    pub sources: u8,
    pub prefix: String,
}

/// The shares of `o`, one per process: as few processes as keep each at most
/// `o.per_process` sessions, sessions spread as evenly as whole pairs allow.
pub fn plan(o: &Options) -> Result<Vec<Share>, String> {
    let pairs = o.sessions / 2;
    let pairs_per_process = o.per_process / 2;
    if pairs_per_process == 0 {
        return Err("--per-process must be at least 2".into());
    }
    let processes = pairs.div_ceil(pairs_per_process);
    if usize::from(o.sources) < processes {
        return Err(format!(
            "{} sessions at {} per process need {processes} processes, and each its own \
             source addresses: give --sources {processes} or more",
            o.sessions, o.per_process
        ));
    }
    let mut shares = Vec::with_capacity(processes);
    let mut source_first = o.source_first;
    let mut rate_given = 0.0;
    for k in 0..processes {
        let sessions = 2 * even_part(pairs, processes, k);
        let sources = even_part(usize::from(o.sources), processes, k) as u8;
        // The last share takes what rounding left, so the rates sum to the total.
        let rate = if k + 1 == processes {
            o.rate - rate_given
        } else {
            o.rate * sessions as f64 / o.sessions as f64
        };
        rate_given += rate;
        shares.push(Share {
            sessions,
            rate,
            storm_users: even_part(o.storm_users, processes, k),
            source_first,
            sources,
            prefix: format!("{}p{k}", o.prefix),
        });
        source_first += sources;
    }
    Ok(shares)
}

/// Part `k` of `total` split into `n` parts that differ by at most one.
fn even_part(total: usize, n: usize, k: usize) -> usize {
    total / n + usize::from(k < total % n)
}

/// The command line of the child process that runs `share` of `o`.
pub fn child_args(o: &Options, share: &Share) -> Vec<String> {
    let mut args: Vec<String> = vec![
        o.mode.name().into(),
        "--child".into(),
        "--placement".into(),
        o.placement.name().into(),
        "--http".into(),
        o.http.to_string(),
        "--sessions".into(),
        share.sessions.to_string(),
        // Display of an f64 is the shortest text that parses back to the same value.
        "--rate".into(),
        share.rate.to_string(),
        "--size".into(),
        o.size.to_string(),
        "--duration".into(),
        o.duration.as_secs_f64().to_string(),
        "--sources".into(),
        share.sources.to_string(),
        "--source-first".into(),
        share.source_first.to_string(),
        "--prefix".into(),
        share.prefix.clone(),
        "--storm-users".into(),
        share.storm_users.to_string(),
        // Drops follow sessions, like the rate.
        "--drops".into(),
        (o.drops * share.sessions as f64 / o.sessions as f64).to_string(),
    ];
    for ws in &o.ws {
        args.extend(["--ws".into(), ws.to_string()]);
    }
    if o.tls {
        args.push("--tls".into());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_args;

    fn options(args: &str) -> Options {
        parse_args(args.split_whitespace().map(String::from)).expect("valid options")
    }

    #[test]
    fn pairs_stay_together() {
        // 21 pairs at most 4 pairs (an odd 9 sessions) per process: 6 processes.
        let o = options("chat --sessions 42 --per-process 9 --sources 6 --rate 100");
        let shares = plan(&o).expect("plan");
        assert_eq!(shares.len(), 6);
        assert!(shares.iter().all(|s| s.sessions % 2 == 0 && s.sessions <= 9));
        assert_eq!(shares.iter().map(|s| s.sessions).sum::<usize>(), 42);
        let (min, max) = (
            shares.iter().map(|s| s.sessions).min().expect("some"),
            shares.iter().map(|s| s.sessions).max().expect("some"),
        );
        assert!(max - min <= 2);
    }

    #[test]
    fn source_addresses_are_partitioned() {
        let o = options("idle --sessions 19500 --sources 20 --source-first 3");
        let shares = plan(&o).expect("plan");
        assert_eq!(shares.len(), 2);
        let mut used = Vec::new();
        for s in &shares {
            used.extend(s.source_first..s.source_first + s.sources);
        }
        assert_eq!(used, (3..23).collect::<Vec<u8>>());
        let o = options("idle --sessions 40 --per-process 10 --sources 7");
        let counts: Vec<u8> = plan(&o).expect("plan").iter().map(|s| s.sources).collect();
        assert_eq!(counts, [2, 2, 2, 1]);
    }

    #[test]
    fn too_few_sources_for_the_processes_is_refused() {
        let o = options("idle --sessions 40 --per-process 10 --sources 3");
        assert!(plan(&o).unwrap_err().contains("--sources 4"));
    }

    #[test]
    fn rates_and_storm_users_sum_to_the_total() {
        let o = options("storm --sessions 60 --per-process 18 --rate 1000 --storm-users 7");
        let shares = plan(&o).expect("plan");
        assert_eq!(shares.len(), 4);
        let rate: f64 = shares.iter().map(|s| s.rate).sum();
        assert!((rate - 1000.0).abs() < 1e-9, "{rate}");
        assert!(shares.iter().all(|s| s.rate > 0.0));
        assert_eq!(shares.iter().map(|s| s.storm_users).sum::<usize>(), 7);
        // Rate follows sessions: a share with more pairs sends more.
        assert!(shares[0].sessions > shares[3].sessions && shares[0].rate > shares[3].rate);
    }

    #[test]
    fn prefixes_are_disjoint_and_children_parse_their_share() {
        let o = options("chat --sessions 40 --per-process 10 --tls --prefix run --rate 200");
        let shares = plan(&o).expect("plan");
        let prefixes: Vec<&str> = shares.iter().map(|s| s.prefix.as_str()).collect();
        assert_eq!(prefixes, ["runp0", "runp1", "runp2", "runp3"]);
        let child = parse_args(child_args(&o, &shares[1])).expect("child options");
        assert!(child.child && child.tls);
        assert_eq!(child.mode, o.mode);
        assert_eq!((child.sessions, child.rate), (10, 50.0));
        assert_eq!((child.source_first, child.sources), (shares[1].source_first, 2));
        assert_eq!(child.duration, o.duration);
        assert_eq!(child.prefix, "runp1");
    }

    #[test]
    fn children_get_every_node_and_the_placement() {
        let o = options(
            "chat --sessions 40 --per-process 10 --ws 127.0.0.1:9001 --ws 127.0.0.1:9002 \
             --placement cross",
        );
        let shares = plan(&o).expect("plan");
        let child = parse_args(child_args(&o, &shares[2])).expect("child options");
        assert_eq!(child.ws, o.ws);
        assert_eq!(child.placement, crate::placement::Placement::Cross);
    }
}
