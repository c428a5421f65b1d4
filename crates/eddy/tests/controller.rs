//! The cluster controller driven by real `eddy node` processes (shadow
//! mode): voters with data_dirs elect a leader and commit the members; a
//! non-voter joins; a killed leader is replaced and comes back as the same
//! member; a wiped node comes back as a new incarnation; forget-down cannot
//! commit without a majority of voters. Every wait has a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{NodeProcess, get, json, post, scratch};
use serde_json::Value;

/// `controller` of `GET /v1/cluster`.
fn controller(node: &NodeProcess) -> Value {
    let (status, body, _) = get(&node.url("/v1/cluster"));
    assert_eq!(status, 200, "{body}");
    json(&body)["controller"].clone()
}

/// Committed members as `(name, incarnation, voter)`, sorted by name.
fn members(view: &Value) -> Vec<(String, u64, bool)> {
    let mut members: Vec<_> = view["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m["name"].as_str().unwrap_or_default().to_owned(),
                        m["incarnation"].as_u64().unwrap_or_default(),
                        m["voter"].as_bool().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    members.sort();
    members
}

/// Waits (bounded) until `check` holds for every node's controller view.
fn wait_for(nodes: &[&NodeProcess], what: &str, check: impl Fn(&Value) -> bool) -> Vec<Value> {
    wait_for_all(nodes, what, |views| views.iter().all(&check))
}

/// Like [`wait_for`], with a condition over every node's view at once.
fn wait_for_all(
    nodes: &[&NodeProcess],
    what: &str,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let views: Vec<Value> = nodes.iter().map(|n| controller(n)).collect();
        if check(&views) {
            return views;
        }
        assert!(Instant::now() < deadline, "{what}: {views:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const VOTERS: &str = "voters=[\"node-1\",\"node-2\",\"node-3\"]";

fn start_voter(i: usize, dir: &std::path::Path, seed: Option<&str>) -> NodeProcess {
    let name = format!("name=\"node-{i}\"");
    let data = format!("data_dir=\"{}\"", dir.join(format!("node-{i}")).display());
    let seeds = seed.map(|s| format!("seeds=[\"{s}\"]"));
    let mut sets = vec![name.as_str(), data.as_str(), VOTERS];
    if let Some(seeds) = &seeds {
        sets.push(seeds);
    }
    NodeProcess::start_unready(&sets)
}

/// Three voters; ready (serving) once they formed the cluster together.
fn start_voters(dir: &std::path::Path) -> Vec<NodeProcess> {
    let first = start_voter(1, dir, None);
    let seed = first.gossip.clone();
    let mut nodes = vec![first];
    for i in 2..=3 {
        nodes.push(start_voter(i, dir, Some(&seed)));
    }
    for node in &nodes {
        node.wait_ready(Duration::from_secs(30));
    }
    nodes
}

fn leader_of(views: &[Value]) -> String {
    views[0]["leader"].as_str().unwrap_or_default().to_owned()
}

fn has_leader_and(views: &Value, count: usize) -> bool {
    views["leader"].is_string() && members(views).len() == count && views["state"] == "running"
}

#[test]
fn three_voters_elect_a_leader_commit_a_joining_member_and_survive_the_leaders_death() {
    let dir = scratch("ctl-three");
    let mut nodes = start_voters(&dir);
    let all: Vec<&NodeProcess> = nodes.iter().collect();
    // One leader all three agree on (a busy machine can delay heartbeats
    // into a new election while the views are read).
    let views = wait_for_all(&all, "a leader and three committed voters", |views| {
        views.iter().all(|v| {
            has_leader_and(v, 3) && v["role"] == "voter" && v["leader"] == views[0]["leader"]
        })
    });
    let leader = leader_of(&views);
    assert!(
        views.iter().all(|v| v["leader"] == leader.as_str()),
        "{views:#?}"
    );
    let first = members(&views[0]);
    assert!(first.iter().all(|(_, _, voter)| *voter), "{first:?}");
    assert!(
        views.iter().all(|v| members(v) == first),
        "same committed members"
    );
    assert!(views[0]["committed_index"].as_u64().unwrap_or(0) >= 1);

    // A fourth node, not a voter and without data_dir, joins and is committed.
    let seeds = format!("seeds=[\"{}\"]", nodes[0].gossip);
    let fourth = NodeProcess::start(&["name=\"node-4\"", VOTERS, &seeds]);
    let all: Vec<&NodeProcess> = nodes.iter().chain([&fourth]).collect();
    let views = wait_for(&all, "node-4 committed as a member", |v| {
        has_leader_and(v, 4)
    });
    assert_eq!(views[3]["role"], "member", "{:#?}", views[3]);
    let joined = members(&views[0]);
    assert!(
        joined.iter().any(|(n, _, voter)| n == "node-4" && !voter),
        "{joined:?}"
    );
    let node_4_inc = views[3]["incarnation"].as_u64();
    assert_eq!(
        joined.iter().find(|m| m.0 == "node-4").map(|m| m.1),
        node_4_inc,
        "committed with its own incarnation"
    );

    // SIGKILL of the leader: another leader takes over.
    let index: usize = leader
        .trim_start_matches("node-")
        .parse()
        .expect("leader name");
    let killed_incarnation = views[index - 1]["incarnation"].as_u64();
    nodes[index - 1].kill();
    let survivors: Vec<&NodeProcess> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index - 1)
        .map(|(_, n)| n)
        .collect();
    let views = wait_for(&survivors, "a new leader", |v| {
        v["leader"].is_string() && v["leader"] != leader.as_str()
    });
    let new_leader = leader_of(&views);
    assert_ne!(new_leader, leader);

    // The killed node restarts with its data_dir: the same member again.
    let seed = survivors[0].gossip.clone();
    nodes[index - 1] = start_voter(index, &dir, Some(&seed));
    let restarted = &nodes[index - 1];
    let view = wait_for(&[restarted], "the restarted voter back in the group", |v| {
        v["role"] == "voter" && v["leader"].is_string() && members(v).len() == 4
    });
    assert_eq!(
        view[0]["incarnation"].as_u64(),
        killed_incarnation,
        "same member"
    );
    let committed = members(&view[0]);
    assert!(
        committed
            .iter()
            .any(|(n, inc, voter)| *n == leader && Some(*inc) == killed_incarnation && *voter),
        "{committed:?}"
    );
    drop(fourth);
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_wiped_node_comes_back_as_a_new_incarnation_and_a_minority_cannot_forget() {
    let dir = scratch("ctl-wipe");
    let mut nodes = start_voters(&dir);
    let fourth_dir = dir.join("node-4");
    let data = format!("data_dir=\"{}\"", fourth_dir.display());
    let seeds = format!("seeds=[\"{}\"]", nodes[0].gossip);
    let fourth_sets = ["name=\"node-4\"", VOTERS, &seeds, &data];
    let mut fourth = NodeProcess::start(&fourth_sets);
    let all: Vec<&NodeProcess> = nodes.iter().chain([&fourth]).collect();
    let views = wait_for(&all, "four committed members", |v| has_leader_and(v, 4));
    let old = views[3]["incarnation"].as_u64().expect("incarnation");

    // node-4 loses its data_dir and restarts: a new member, the old one gone.
    fourth.kill();
    std::fs::remove_dir_all(&fourth_dir).expect("wipe node-4");
    let fourth = NodeProcess::start(&fourth_sets);
    let new = controller(&fourth)["incarnation"]
        .as_u64()
        .expect("incarnation");
    assert!(new > old, "a wiped node is a new, higher incarnation");
    let all: Vec<&NodeProcess> = nodes.iter().chain([&fourth]).collect();
    let views = wait_for(&all, "node-4 committed under its new incarnation", |v| {
        members(v)
            .iter()
            .any(|(n, inc, _)| n == "node-4" && *inc == new)
            && v["leader"].is_string()
    });
    for view in &views {
        let committed = members(view);
        assert!(
            !committed
                .iter()
                .any(|(n, inc, _)| n == "node-4" && *inc == old),
            "the old incarnation is no member: {committed:?}"
        );
        assert_eq!(committed.len(), 4, "{committed:?}");
    }

    // Two of three voters die: the survivor cannot commit a Remove.
    drop(fourth);
    nodes[1].kill();
    nodes[2].kill();
    let survivor = &nodes[0];
    let deadline = Instant::now() + Duration::from_secs(20);
    let (status, body) = loop {
        let (status, body, _) = post(
            &survivor.url("/v1/admin/forget-down"),
            "application/json",
            "",
        );
        let answer = json(&body);
        // Once gossip declared them down, the controller is asked to remove
        // them; it has no majority of voters, so nothing is committed.
        if answer["controller"]["proposed"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
            || Instant::now() > deadline
        {
            break (status, answer);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 503, "{body:#}");
    assert_eq!(body["controller"]["committed"], false, "{body:#}");
    let _ = std::fs::remove_dir_all(&dir);
}
