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

/// What every manager sharing one channel must agree on: the whole map.
/// Managers compare prints before they run clusters (docs/protocol.md §10):
/// two maps with the same number of clusters can still give one shard to
/// two clusters (100 shards at 10 or 11 per cluster both make 10).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapPrint {
    pub shards: u32,
    pub clusters: u32,
    /// The largest cluster's shard count: `per_cluster`, as the map came out.
    pub per_cluster: u32,
    /// A digest of every cluster's name, in id order.
    pub names: String,
    /// A digest of the whole map: shard count, and every cluster's id,
    /// name and shard list.
    pub digest: String,
}

impl MapPrint {
    pub fn of(shard_count: u32, clusters: &[ClusterSpec]) -> MapPrint {
        let mut names = Fnv::default();
        let mut all = Fnv::default();
        all.write(&shard_count.to_le_bytes());
        for c in clusters {
            names.write(c.name.as_bytes());
            names.write(&[0]);
            all.write(&c.id.to_le_bytes());
            all.write(c.name.as_bytes());
            all.write(&[0]);
            all.write(&(c.shards.len() as u32).to_le_bytes());
            for s in &c.shards {
                all.write(&s.to_le_bytes());
            }
        }
        MapPrint {
            shards: shard_count,
            clusters: clusters.len() as u32,
            per_cluster: clusters
                .iter()
                .map(|c| c.shards.len() as u32)
                .max()
                .unwrap_or(0),
            names: names.hex(),
            digest: all.hex(),
        }
    }

    /// How `theirs` differs from this map, for people to read; `None` when
    /// they are the same map.
    pub fn difference(&self, theirs: &MapPrint) -> Option<String> {
        if self.digest == theirs.digest {
            return None;
        }
        let what = if self.shards != theirs.shards {
            format!(
                "{} shards, where this config makes {}",
                theirs.shards, self.shards
            )
        } else if self.clusters != theirs.clusters {
            format!(
                "{} clusters, where this config makes {}",
                theirs.clusters, self.clusters
            )
        } else if self.per_cluster != theirs.per_cluster {
            format!(
                "{} shards per cluster, where this config puts {}",
                theirs.per_cluster, self.per_cluster
            )
        } else if self.names != theirs.names {
            "other cluster names (`names`)".to_string()
        } else {
            "other shard lists".to_string()
        };
        Some(what)
    }
}

/// FNV-1a, 64 bits: stable across builds and machines (the standard
/// library's hasher is not), which a print compared between hosts needs.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn hex(&self) -> String {
        format!("{:016x}", self.0)
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

    #[test]
    fn prints_tell_maps_apart_that_counts_do_not() {
        // 100 shards at 11 or 10 per cluster: ten clusters either way.
        let a = MapPrint::of(100, &build(100, 11, &[]));
        let b = MapPrint::of(100, &build(100, 10, &[]));
        assert_eq!((a.clusters, b.clusters), (10, 10));
        assert_eq!(
            a.difference(&b).as_deref(),
            Some("10 shards per cluster, where this config puts 11")
        );
        assert_eq!(a.difference(&a.clone()), None);
        let named = MapPrint::of(100, &build(100, 10, &["Pika".to_string()]));
        assert_eq!(
            b.difference(&named).as_deref(),
            Some("other cluster names (`names`)")
        );
        let more = MapPrint::of(101, &build(101, 10, &[]));
        assert_eq!(
            b.difference(&more).as_deref(),
            Some("101 shards, where this config makes 100")
        );
        // Pinned: hosts of different builds compare prints, so a change
        // to how they are made must be a deliberate one.
        assert_eq!(
            MapPrint::of(25, &build(25, 10, &[])).digest,
            "c643dc812d2a01fc"
        );
    }
}
