//! The metrics server, from outside: its text format.

use std::collections::HashMap;

use super::{http_get, wait_for_seen, DEADLINE};

/// Every sample of the text format, by its series (`name{labels}`).
pub fn scrape(port: u16) -> HashMap<String, f64> {
    let (status, body) = http_get(port, "/metrics").expect("a scrape");
    assert_eq!(status, 200, "{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("a sample: {l}"));
            let value = value.parse().unwrap_or_else(|_| panic!("a number: {l}"));
            (series.to_string(), value)
        })
        .collect()
}

/// Waits until the engine has read a diagnostic answer naming each of
/// `shards` shards (`per_cluster` to a cluster) as up.
pub fn every_shard_reports(metrics: u16, shards: u32, per_cluster: u32) {
    let series: Vec<String> = (0..shards)
        .map(|s| {
            format!(
                "mewld_shard_up{{cluster=\"{}\",shard=\"{s}\"}}",
                s / per_cluster
            )
        })
        .collect();
    wait_for_seen("every shard up in the metrics", DEADLINE, || {
        let m = scrape(metrics);
        let missing: Vec<&String> = series.iter().filter(|s| m.get(*s) != Some(&1.0)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.into_iter().cloned().collect::<Vec<_>>())
        }
    });
}
