//! The cluster table's rows: the clusters the `/` filter lets through, in
//! the order the operator sorted them. Pure, so a big bot's table is
//! tested without a terminal.

use std::cmp::Ordering;

use mewld_core::model::state::{ClusterState, ClusterView};

/// A column the table can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    #[default]
    Id,
    Name,
    /// Trouble first: failed, crashed, stopped, then the rest.
    State,
    /// The most recently started first.
    Uptime,
    /// The most restarted first.
    Restarts,
    /// The slowest first.
    Latency,
}

impl SortBy {
    /// The next column, for the key that cycles them.
    pub fn next(self) -> SortBy {
        match self {
            SortBy::Id => SortBy::Name,
            SortBy::Name => SortBy::State,
            SortBy::State => SortBy::Uptime,
            SortBy::Uptime => SortBy::Restarts,
            SortBy::Restarts => SortBy::Latency,
            SortBy::Latency => SortBy::Id,
        }
    }

    /// The title of the column it sorts by.
    pub fn title(self) -> &'static str {
        match self {
            SortBy::Id => "ID",
            SortBy::Name => "NAME",
            SortBy::State => "STATE",
            SortBy::Uptime => "UPTIME",
            SortBy::Restarts => "RST",
            SortBy::Latency => "LAT",
        }
    }

    /// Whether the column's own order puts the largest first (the most
    /// restarts, the slowest); the others put the smallest first (ids and
    /// names from the start, the shortest uptime, and for the state,
    /// trouble, ranked lowest).
    fn largest_first(self) -> bool {
        matches!(self, SortBy::Restarts | SortBy::Latency)
    }

    /// Orders rows `a` and `b`; `latency` holds each cluster's mean
    /// latency when sorting by it, worked out once rather than per compare.
    fn compare(
        self,
        clusters: &[ClusterView],
        latency: &[Option<f64>],
        a: usize,
        b: usize,
    ) -> Ordering {
        let (ca, cb) = (&clusters[a], &clusters[b]);
        let by = match self {
            SortBy::Id => Ordering::Equal,
            SortBy::Name => ca.name.cmp(&cb.name),
            SortBy::State => trouble(ca.state).cmp(&trouble(cb.state)),
            SortBy::Uptime => cb.started_at.cmp(&ca.started_at),
            SortBy::Restarts => cb.restarts.cmp(&ca.restarts),
            SortBy::Latency => latency[b]
                .partial_cmp(&latency[a])
                .unwrap_or(Ordering::Equal),
        };
        by.then(ca.id.cmp(&cb.id))
    }
}

/// States that need an operator come first.
fn trouble(state: ClusterState) -> u8 {
    match state {
        ClusterState::Failed | ClusterState::Lost => 0,
        ClusterState::Crashed => 1,
        ClusterState::Stopped => 2,
        ClusterState::Stopping => 3,
        ClusterState::Starting => 4,
        ClusterState::Pending => 5,
        ClusterState::Running => 6,
    }
}

/// How the table is filtered and sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableView {
    /// Matches a cluster's id, name or state, ignoring case.
    pub filter: String,
    pub sort: SortBy,
    pub reverse: bool,
}

impl TableView {
    pub fn matches(&self, c: &ClusterView) -> bool {
        let f = self.filter.trim().to_lowercase();
        f.is_empty()
            || c.id.to_string() == f
            || c.name.to_lowercase().contains(&f)
            || c.state.as_str().contains(&f)
    }

    /// Indices into `clusters` of the rows shown, in order.
    pub fn rows(&self, clusters: &[ClusterView]) -> Vec<usize> {
        let mut rows: Vec<usize> = (0..clusters.len())
            .filter(|i| self.matches(&clusters[*i]))
            .collect();
        if self.is_sorted() {
            let latency: Vec<Option<f64>> = match self.sort {
                SortBy::Latency => clusters
                    .iter()
                    .map(|c| c.health.as_ref().and_then(|h| h.mean_latency()))
                    .collect(),
                _ => Vec::new(),
            };
            rows.sort_by(|a, b| {
                let order = self.sort.compare(clusters, &latency, *a, *b);
                if self.reverse {
                    order.reverse()
                } else {
                    order
                }
            });
        }
        rows
    }

    /// Whether the order is other than by id.
    pub fn is_sorted(&self) -> bool {
        self.sort != SortBy::Id || self.reverse
    }

    /// Whether the rows go largest first, as the column's own order or
    /// reversed by the operator.
    pub fn descending(&self) -> bool {
        self.sort.largest_first() != self.reverse
    }

    /// The direction's arrow: `▲` smallest first, `▼` largest first.
    pub fn arrow(&self) -> &'static str {
        if self.descending() {
            "▼"
        } else {
            "▲"
        }
    }

    /// "sorted by RST ▼".
    pub fn order(&self) -> String {
        format!("sorted by {} {}", self.sort.title(), self.arrow())
    }

    /// The title's note, when the order is other than by id.
    pub fn sort_note(&self) -> Option<String> {
        self.is_sorted().then(|| self.order())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views(specs: &[(&str, ClusterState, u32)]) -> Vec<ClusterView> {
        specs
            .iter()
            .zip(0..)
            .map(|((name, state, restarts), id)| ClusterView {
                id,
                name: (*name).to_string(),
                shards: vec![id],
                state: *state,
                pid: None,
                started_at: None,
                restarts: *restarts,
                restarts_by: Default::default(),
                quick_failures: 0,
                next_restart_at: None,
                last_exit: None,
                start_error: None,
                health: None,
                host: None,
                replacing: None,
                retiring: None,
            })
            .collect()
    }

    #[test]
    fn the_filter_matches_id_name_or_state() {
        let clusters = views(&[
            ("Pika", ClusterState::Running, 0),
            ("Eevee", ClusterState::Crashed, 2),
            ("Lugia", ClusterState::Running, 0),
            ("pikachu", ClusterState::Stopped, 0),
        ]);
        let view = |f: &str| TableView {
            filter: f.into(),
            ..TableView::default()
        };
        assert_eq!(view("").rows(&clusters), vec![0, 1, 2, 3]);
        assert_eq!(view("PIKA").rows(&clusters), vec![0, 3]);
        assert_eq!(view("crash").rows(&clusters), vec![1]);
        assert_eq!(view("2").rows(&clusters), vec![2], "an id matches whole");
    }

    #[test]
    fn sorting_puts_trouble_first_and_ties_go_by_id() {
        let clusters = views(&[
            ("a", ClusterState::Running, 1),
            ("b", ClusterState::Failed, 5),
            ("c", ClusterState::Crashed, 5),
            ("d", ClusterState::Running, 0),
        ]);
        let mut view = TableView {
            sort: SortBy::State,
            ..TableView::default()
        };
        assert_eq!(view.rows(&clusters), vec![1, 2, 0, 3]);
        view.sort = SortBy::Restarts;
        assert_eq!(view.rows(&clusters), vec![1, 2, 0, 3]);
        assert_eq!(view.sort_note().as_deref(), Some("sorted by RST ▼"));
        view.reverse = true;
        assert_eq!(view.rows(&clusters), vec![3, 0, 2, 1]);
        assert_eq!(view.sort_note().as_deref(), Some("sorted by RST ▲"));
    }

    /// The arrow says which end comes first: `▲` the smallest (a→z, 0→9),
    /// `▼` the largest, whichever way the column sorts by itself.
    #[test]
    fn the_arrow_points_the_way_the_rows_go() {
        let clusters = views(&[
            ("b", ClusterState::Running, 0),
            ("c", ClusterState::Running, 2),
            ("a", ClusterState::Running, 1),
        ]);
        let cases = [
            (SortBy::Name, false, vec![2, 0, 1], "▲"),
            (SortBy::Name, true, vec![1, 0, 2], "▼"),
            (SortBy::Restarts, false, vec![1, 2, 0], "▼"),
            (SortBy::Restarts, true, vec![0, 2, 1], "▲"),
            (SortBy::Id, true, vec![2, 1, 0], "▼"),
        ];
        for (sort, reverse, rows, arrow) in cases {
            let view = TableView {
                sort,
                reverse,
                ..TableView::default()
            };
            assert_eq!(view.rows(&clusters), rows, "{sort:?} reversed {reverse}");
            assert_eq!(view.arrow(), arrow, "{sort:?} reversed {reverse}");
        }
    }
}
