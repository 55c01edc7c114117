//! Clusters on channels of their own (`cluster_channels: true`, issue 19),
//! end to end: a real `mewld --daemon`, a real redis-server and fake-bot
//! clusters, which hear their pings on `MEWLD_CLUSTER_CHANNEL` and speak on
//! `MEWLD_LAUNCHER_CHANNEL`, so the main channel carries only what is for
//! every cluster.

mod common;

use common::*;
use serde_json::Value;

/// 5 shards at 2 a cluster: [0, 1] [2, 3] [4].
const SHARDS: u32 = 5;
const CLUSTERS: u64 = 3;

#[test]
fn each_cluster_hears_its_pings_on_its_channel_and_answers_on_the_launchers() {
    let f = Fixture::new("own_channels", vec![Answer::gateway(SHARDS, 900, 0)]);
    let launcher = f.redis.listen(&format!("{}:launcher", f.ch));
    let own: Vec<Listener> = (0..CLUSTERS)
        .map(|id| f.redis.listen(&format!("{}:{id}", f.ch)))
        .collect();
    let metrics = free_port();
    let extra = format!(
        "ping_interval: 1\nping_timeout: 30\ncluster_channels: true\nmetrics_addr: 127.0.0.1:{metrics}\n"
    );
    let mut manager = Manager::start(&f.config(&extra), &f.redis, &f.bot);
    manager.wait_launched(&f.listener);

    for record in f.bot.records() {
        let id = &record["cluster_id"];
        assert_eq!(
            record["env"]["MEWLD_CLUSTER_CHANNEL"],
            format!("{}:{id}", f.ch).as_str()
        );
        assert_eq!(
            record["env"]["MEWLD_LAUNCHER_CHANNEL"],
            format!("{}:launcher", f.ch).as_str()
        );
    }
    // The engine took every cluster's answer, heard on the launcher's channel.
    every_shard_reports(metrics, SHARDS, 2);
    for (id, own) in own.iter().enumerate() {
        let ping = own.wait(&format!("a diagnostic on cluster {id}'s channel"), |m| {
            m["diag"] == true
        });
        assert_eq!(ping["id"], id as u64, "only its own pings: {ping}");
        let nonce = ping["nonce"].as_str().expect("a nonce").to_string();
        launcher.wait(&format!("cluster {id}'s answer to {nonce}"), |m| {
            m["action"] == "diag" && m["output"].as_str().is_some_and(|o| o.contains(&nonce))
        });
    }
    let launched: Vec<u64> = launcher
        .all()
        .iter()
        .filter(|m| m["action"] == "launch_next")
        .filter_map(|m| m["args"]["id"].as_u64())
        .collect();
    assert_eq!(launched, (0..CLUSTERS).collect::<Vec<_>>());

    // Nothing of one cluster's reaches the others on the main channel.
    let main = f.listener.all();
    let clusters_own = |m: &&Value| {
        m.get("diag").is_some() || m["action"] == "diag" || m["action"] == "launch_next"
    };
    assert_eq!(main.iter().filter(clusters_own).count(), 0, "{main:?}");
    for trouble in ["ping_failure", "launch_timeout", "cluster_exited"] {
        assert_eq!(
            events(&f.redis.action_log(&f.ch), trouble),
            Vec::<Value>::new()
        );
    }
}
