//! The console's panes, in their Tab order: the state says which has the
//! focus, the key table which keys a pane's footer shows.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Clusters,
    Output,
    Log,
    /// Diagnostic answers as they arrive.
    Diagnostics,
}

impl Pane {
    /// The Tab order.
    const ORDER: [Pane; 4] = [Pane::Clusters, Pane::Output, Pane::Log, Pane::Diagnostics];

    /// The pane Tab goes to.
    pub fn next(self) -> Pane {
        self.step(1)
    }

    /// The pane Shift-Tab goes to.
    pub fn prev(self) -> Pane {
        self.step(Pane::ORDER.len() - 1)
    }

    fn step(self, by: usize) -> Pane {
        let at = Pane::ORDER.iter().position(|p| *p == self).unwrap_or(0);
        Pane::ORDER[(at + by) % Pane::ORDER.len()]
    }
}
