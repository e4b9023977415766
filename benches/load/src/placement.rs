//! Which node each session connects to when a run is given several (`--ws` more than
//! once): the two users of a pair on one node (`same`), on two (`cross`), or half the
//! pairs each way (`mixed`, the default), so one run at one rate measures a message
//! that crosses the bus beside one that does not, under the same load.

/// How the two sessions of each pair are placed on the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Both users of every pair on the same node.
    Same,
    /// The two users of every pair on different nodes.
    Cross,
    /// Even pairs as `Same`, odd pairs as `Cross`.
    Mixed,
}

impl Placement {
    pub fn parse(text: &str) -> Option<Placement> {
        match text {
            "same" => Some(Placement::Same),
            "cross" => Some(Placement::Cross),
            "mixed" => Some(Placement::Mixed),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Placement::Same => "same",
            Placement::Cross => "cross",
            Placement::Mixed => "mixed",
        }
    }

    /// Whether pair `pair`'s two users are on different nodes (given more than one).
    pub fn crosses(self, pair: usize, nodes: usize) -> bool {
        nodes > 1
            && match self {
                Placement::Same => false,
                Placement::Cross => true,
                Placement::Mixed => pair % 2 == 1,
            }
    }

    /// The node (an index into `--ws`) of session `user`, pairs being users 2p and
    /// 2p+1. Pairs go round the nodes, so every node holds as many sessions as the
    /// others, give or take a pair, and in `Mixed` as many of each kind.
    pub fn node_of(self, user: usize, nodes: usize) -> usize {
        let pair = user / 2;
        // Mixed takes pairs two at a time (one same, one cross) round the nodes.
        let turn = if self == Placement::Mixed { pair / 2 } else { pair };
        let base = turn % nodes;
        if user % 2 == 1 && self.crosses(pair, nodes) {
            (base + 1) % nodes
        } else {
            base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nodes of pair `p`'s two users.
    fn nodes_of(p: Placement, pair: usize, n: usize) -> (usize, usize) {
        (p.node_of(2 * pair, n), p.node_of(2 * pair + 1, n))
    }

    #[test]
    fn cross_pairs_straddle_two_nodes_and_same_pairs_share_one() {
        for n in 2..5 {
            for pair in 0..20 {
                let (a, b) = nodes_of(Placement::Cross, pair, n);
                assert!(a != b && a < n && b < n, "cross pair {pair} on {n} nodes: {a} {b}");
                let (a, b) = nodes_of(Placement::Same, pair, n);
                assert!(a == b && a < n, "same pair {pair} on {n} nodes: {a} {b}");
                let (a, b) = nodes_of(Placement::Mixed, pair, n);
                assert_eq!(a != b, Placement::Mixed.crosses(pair, n), "mixed pair {pair}");
            }
        }
    }

    #[test]
    fn one_node_holds_everyone_and_crosses_nothing() {
        for p in [Placement::Same, Placement::Cross, Placement::Mixed] {
            assert!((0..10).all(|u| p.node_of(u, 1) == 0));
            assert!((0..5).all(|pair| !p.crosses(pair, 1)));
        }
    }

    #[test]
    fn every_node_holds_its_share_of_each_kind() {
        // 12 pairs on 3 nodes, mixed: 6 same pairs and 6 cross pairs, every node the
        // same number of sessions of each kind.
        let (n, pairs) = (3, 12);
        let mut same = vec![0; n];
        let mut cross = vec![0; n];
        for user in 0..2 * pairs {
            let node = Placement::Mixed.node_of(user, n);
            if Placement::Mixed.crosses(user / 2, n) {
                cross[node] += 1;
            } else {
                same[node] += 1;
            }
        }
        assert_eq!(same, [4, 4, 4]);
        assert_eq!(cross, [4, 4, 4]);
    }

    #[test]
    fn options_take_several_nodes_and_refuse_what_cannot_be_placed() {
        let parse = |a: &str| crate::parse_args(a.split_whitespace().map(String::from));
        let o = parse("chat --ws 127.0.0.1:9001 --ws 127.0.0.1:9002").expect("two nodes");
        assert_eq!(o.ws.len(), 2);
        assert_eq!(o.placement, Placement::Mixed);
        let o =
            parse("chat --ws 127.0.0.1:9001 --ws 127.0.0.1:9002 --placement same").expect("same");
        assert_eq!(o.placement, Placement::Same);
        // One address by default, as before.
        assert_eq!(parse("chat").expect("default").ws, ["127.0.0.1:8080".parse().expect("addr")]);
        let refused = |a: &str, why: &str| {
            let e = parse(a).expect_err(a);
            assert!(e.contains(why), "{a}: {e}");
        };
        refused("chat --ws 127.0.0.1:9001 --placement cross", "two --ws");
        refused("chat --ws 127.0.0.1:9001 --ws 127.0.0.1:9001", "same address");
        refused("chat --ws 127.0.0.1:9001 --ws 127.0.0.1:9002 --placement far", "--placement");
        refused("chat --ws 127.0.0.1:9001 --ws 10.0.0.1:9002", "not a loopback");
        refused(
            "restart --server-cmd x --ws 127.0.0.1:9001 --ws 127.0.0.1:9002",
            "restart mode restarts one daemon",
        );
    }
}
