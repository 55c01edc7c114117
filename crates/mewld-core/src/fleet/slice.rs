//! Which clusters one host of a fleet runs: its slice of the cluster map.
//! Pure: parsing and arithmetic only.

use std::collections::BTreeSet;
use std::fmt;

use crate::cluster_map::ClusterId;

/// How a host was told its slice, before the map's size is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SliceSpec {
    /// Host `index` of `count`: a contiguous range, in id order.
    Index { index: u32, count: u32 },
    /// An explicit list of ids and ranges (`0-9,20-29`).
    Ids(BTreeSet<ClusterId>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SliceError {
    #[error("--host-index {index} is not below --host-count {count}")]
    IndexTooLarge { index: u32, count: u32 },
    #[error("--host-count must be at least 1")]
    NoHosts,
    #[error("--clusters {spec:?}: {problem}")]
    BadList { spec: String, problem: String },
    #[error("host {index} of {count} gets no cluster: the map has only {clusters}")]
    Empty {
        index: u32,
        count: u32,
        clusters: u32,
    },
    #[error("--clusters names {0}, beyond the cluster map (clusters 0-{1})")]
    Beyond(String, u32),
}

impl SliceSpec {
    pub fn index(index: u32, count: u32) -> Result<SliceSpec, SliceError> {
        if count == 0 {
            return Err(SliceError::NoHosts);
        }
        if index >= count {
            return Err(SliceError::IndexTooLarge { index, count });
        }
        Ok(SliceSpec::Index { index, count })
    }

    /// How many hosts share the clusters, when the slice says.
    pub fn host_count(&self) -> Option<u32> {
        match self {
            SliceSpec::Index { count, .. } => Some(*count),
            SliceSpec::Ids(_) => None,
        }
    }

    /// Parses `0-9,20-29,31`.
    pub fn parse_list(spec: &str) -> Result<SliceSpec, SliceError> {
        let bad = |problem: String| SliceError::BadList {
            spec: spec.to_string(),
            problem,
        };
        let mut ids = BTreeSet::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let number = |s: &str| {
                s.trim()
                    .parse::<ClusterId>()
                    .map_err(|_| bad(format!("{s:?} is not a cluster id")))
            };
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => (number(part)?, number(part)?),
            };
            if first > last {
                return Err(bad(format!("{part:?} runs backwards")));
            }
            if last - first >= crate::cluster_map::MAX_CLUSTERS {
                return Err(bad(format!("{part:?} is larger than any cluster map")));
            }
            ids.extend(first..=last);
        }
        if ids.is_empty() {
            return Err(bad("names no cluster".into()));
        }
        Ok(SliceSpec::Ids(ids))
    }

    /// The ids this host owns in a map of `clusters` clusters.
    pub fn resolve(&self, clusters: u32) -> Result<BTreeSet<ClusterId>, SliceError> {
        match self {
            SliceSpec::Index { index, count } => {
                // The first `clusters % count` hosts take one more.
                let (base, extra) = (clusters / count, clusters % count);
                let first = index * base + index.min(&extra);
                let len = base + u32::from(*index < extra);
                if len == 0 {
                    return Err(SliceError::Empty {
                        index: *index,
                        count: *count,
                        clusters,
                    });
                }
                Ok((first..first + len).collect())
            }
            SliceSpec::Ids(ids) => match ids.iter().find(|&&id| id >= clusters) {
                Some(&id) => Err(SliceError::Beyond(
                    id.to_string(),
                    clusters.saturating_sub(1),
                )),
                None => Ok(ids.clone()),
            },
        }
    }
}

/// A set of ids written as ranges: `0-9,20-29`.
pub struct Ranges<'a>(pub &'a BTreeSet<ClusterId>);

impl fmt::Display for Ranges<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids = self.0.iter().copied().peekable();
        let mut first = true;
        while let Some(start) = ids.next() {
            let mut end = start;
            while ids.peek() == Some(&(end + 1)) {
                end += 1;
                ids.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(spec: &SliceSpec, clusters: u32) -> String {
        Ranges(&spec.resolve(clusters).expect("resolves")).to_string()
    }

    #[test]
    fn index_slices_are_contiguous_and_cover_the_map() {
        let slices: Vec<String> = (0..3)
            .map(|i| ids(&SliceSpec::index(i, 3).expect("valid"), 10))
            .collect();
        assert_eq!(slices, ["0-3", "4-6", "7-9"]);
        let mut all = BTreeSet::new();
        for count in 1..7 {
            for clusters in count..40 {
                all.clear();
                for i in 0..count {
                    let s = SliceSpec::index(i, count).expect("valid");
                    let mine = s.resolve(clusters).expect("non-empty");
                    assert!(mine.is_disjoint(&all), "{i}/{count} of {clusters}");
                    all.extend(mine);
                }
                assert_eq!(all.len() as u32, clusters);
            }
        }
        assert_eq!(
            SliceSpec::index(3, 4).expect("valid").resolve(3),
            Err(SliceError::Empty {
                index: 3,
                count: 4,
                clusters: 3
            })
        );
        assert!(SliceSpec::index(2, 2).is_err());
        assert!(SliceSpec::index(0, 0).is_err());
    }

    #[test]
    fn lists_parse_and_say_what_is_wrong() {
        let s = SliceSpec::parse_list("0-2, 5,7-8").expect("parses");
        assert_eq!(ids(&s, 10), "0-2,5,7-8");
        for bad in ["", "a-3", "3-1", "1-", "0-4000000000"] {
            let e = SliceSpec::parse_list(bad).expect_err(bad).to_string();
            assert!(e.contains("--clusters"), "{e}");
        }
        let e = s.resolve(6).expect_err("beyond").to_string();
        assert!(e.contains("names 7") && e.contains("0-5"), "{e}");
    }
}
