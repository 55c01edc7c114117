//! Shards → clusters (docs/protocol.md §3). Pure: no I/O.

use serde::{Deserialize, Serialize};

pub type ClusterId = u32;
pub type ShardId = u32;

/// Most shards mewld accepts, from Discord or `fixed_shard_count`. The
/// largest bots run 10^4–10^5 shards; ten times that is still a plausible
/// future, while 10^8 or 10^9 (a typo, or a broken proxy) would allocate
/// tens of gigabytes for the map and abort.
pub const MAX_SHARDS: u32 = 1_000_000;
/// Most clusters mewld runs. Each is an OS process on this one host; 10^5
/// processes is past what any single machine runs a bot with.
pub const MAX_CLUSTERS: u32 = 100_000;

/// How many clusters `shard_count` shards make at `per_cluster` each.
pub fn cluster_count(shard_count: u32, per_cluster: u32) -> u32 {
    shard_count.div_ceil(per_cluster.max(1))
}

/// Why a map of this size is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("{0} shards is more than the {MAX_SHARDS} mewld accepts")]
    TooManyShards(u32),
    #[error(
        "{shards} shards at {per_cluster} per cluster make {clusters} clusters, more than the \
         {MAX_CLUSTERS} mewld runs; raise per_cluster"
    )]
    TooManyClusters {
        shards: u32,
        per_cluster: u32,
        clusters: u32,
    },
}

/// Checks that the map for `shard_count` stays within [`MAX_SHARDS`] and
/// [`MAX_CLUSTERS`], before [`build`] allocates it.
pub fn check_size(shard_count: u32, per_cluster: u32) -> Result<(), SizeError> {
    if shard_count > MAX_SHARDS {
        return Err(SizeError::TooManyShards(shard_count));
    }
    let clusters = cluster_count(shard_count, per_cluster);
    if clusters > MAX_CLUSTERS {
        return Err(SizeError::TooManyClusters {
            shards: shard_count,
            per_cluster,
            clusters,
        });
    }
    Ok(())
}

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
    fn size_is_capped_before_building() {
        assert_eq!(check_size(MAX_SHARDS, 10), Ok(()));
        assert_eq!(
            check_size(1_000_000_000, 10),
            Err(SizeError::TooManyShards(1_000_000_000))
        );
        assert!(matches!(
            check_size(MAX_SHARDS, 1),
            Err(SizeError::TooManyClusters { clusters, .. }) if clusters == MAX_SHARDS
        ));
        assert_eq!(cluster_count(25, 10), 3);
        assert_eq!(cluster_count(20, 10), 2);
        assert_eq!(cluster_count(25, 10), build(25, 10, &[]).len() as u32);
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
