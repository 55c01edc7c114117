//! Shards → clusters (PROTOCOL.md §3). Pure: no I/O.

use serde::{Deserialize, Serialize};

pub type ClusterId = u32;
pub type ShardId = u32;

/// One cluster of the map: which shards it runs and what it is called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    pub id: ClusterId,
    pub name: String,
    pub shards: Vec<ShardId>,
}

/// Fills clusters in order with `per_cluster` consecutive shards; the last
/// one takes the remainder. Cluster `i` is called `names[i]`, or a stable
/// generated name once `names` runs out (the original used random strings).
pub fn build(shard_count: u32, per_cluster: u32, names: &[String]) -> Vec<ClusterSpec> {
    let per_cluster = per_cluster.max(1);
    (0..shard_count)
        .step_by(per_cluster as usize)
        .enumerate()
        .map(|(i, first)| {
            let id = i as ClusterId;
            let last = first.saturating_add(per_cluster).min(shard_count);
            ClusterSpec {
                id,
                name: names
                    .get(i)
                    .filter(|n| !n.trim().is_empty())
                    .cloned()
                    .unwrap_or_else(|| generated_name(id)),
                shards: (first..last).collect(),
            }
        })
        .collect()
}

/// The name used when the config's `names` has none for this cluster.
pub fn generated_name(id: ClusterId) -> String {
    format!("cluster-{id}")
}

/// `[0, 1, 2]`: Python list syntax, which bots parse from their arguments.
pub fn python_list(shards: &[ShardId]) -> String {
    let items: Vec<String> = shards.iter().map(ToString::to_string).collect();
    format!("[{}]", items.join(", "))
}

/// "0-9", or "4" for a single shard, for people to read.
pub fn shard_range(shards: &[ShardId]) -> String {
    match (shards.first(), shards.last()) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remainder_goes_to_the_last_cluster() {
        let map = build(25, 10, &[]);
        let shards: Vec<_> = map.iter().map(|c| c.shards.clone()).collect();
        assert_eq!(
            shards,
            vec![
                (0..10).collect::<Vec<_>>(),
                (10..20).collect(),
                (20..25).collect()
            ]
        );
        assert_eq!(map.iter().map(|c| c.id).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn exact_fit_and_small_counts() {
        assert_eq!(build(20, 10, &[]).len(), 2);
        assert_eq!(build(1, 10, &[]).len(), 1);
        assert_eq!(build(1, 10, &[])[0].shards, vec![0]);
        assert!(build(0, 10, &[]).is_empty());
    }

    #[test]
    fn names_then_stable_generated_names() {
        let names = vec!["Pika".to_string(), "Eevee".to_string()];
        let map = build(35, 10, &names);
        let got: Vec<_> = map.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(got, vec!["Pika", "Eevee", "cluster-2", "cluster-3"]);
        assert_eq!(build(35, 10, &names), map, "names are stable across builds");
    }

    #[test]
    fn python_list_syntax() {
        assert_eq!(python_list(&[0, 1, 2]), "[0, 1, 2]");
        assert_eq!(python_list(&[7]), "[7]");
    }

    #[test]
    fn shard_range_text() {
        assert_eq!(shard_range(&[0, 1, 2]), "0-2");
        assert_eq!(shard_range(&[4]), "4");
    }
}
