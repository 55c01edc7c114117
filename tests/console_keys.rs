//! The console's key tables in the docs (README.md's, and docs/console.md's
//! in full) say what the console's key table does: every key they name is
//! bound in the console's normal mode, and every key bound there is in
//! each.

use std::collections::BTreeSet;
use std::path::Path;

use mewld::tui::keys::{bindings, ModeKind};

/// The keys named (in backticks) in the first column of the first table
/// under the heading `## <heading>`.
fn table_keys(markdown: &str, heading: &str) -> BTreeSet<String> {
    let section = markdown
        .split("\n## ")
        .find(|s| s.lines().next() == Some(heading))
        .unwrap_or_else(|| panic!("no \"## {heading}\" section"));
    let rows: Vec<&str> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and the |---| line
        .collect();
    assert!(
        !rows.is_empty(),
        "the \"## {heading}\" section has a key table"
    );
    rows.iter()
        .flat_map(|row| {
            let first_cell = row.split('|').nth(1).unwrap_or("");
            first_cell
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Checks the key table under `## <heading>` of the file `path`.
fn assert_table_matches_the_console(path: &str, heading: &str) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}"));
    let documented = table_keys(&text, heading);
    let bound: BTreeSet<String> = bindings(ModeKind::Normal)
        .flat_map(|b| b.keys.iter().map(|(k, _)| k.name()))
        .collect();
    let undocumented: Vec<&String> = bound.difference(&documented).collect();
    let unbound: Vec<&String> = documented.difference(&bound).collect();
    assert!(
        undocumented.is_empty() && unbound.is_empty(),
        "{path}'s key table (under \"## {heading}\") is out of step with src/tui/keys.rs:\n  \
         bound but not in {path}: {undocumented:?}\n  \
         in {path} but not bound: {unbound:?}"
    );
}

#[test]
fn the_readme_key_table_matches_the_console() {
    assert_table_matches_the_console("README.md", "The console");
}

#[test]
fn the_console_page_key_table_matches_the_console() {
    assert_table_matches_the_console("docs/console.md", "Keys");
}

#[test]
fn the_readme_parser_reads_keys_from_the_first_column_only() {
    let readme = "# x\n\n## The console\n\n| key | does |\n|---|---|\n\
                  | `j` `k` / `↓`, `PgDn` | move (`not-a-key`) |\n| `q` / `Ctrl-C` | quit |\n\n\
                  | `other` | table |\n\n## Next\n| `z` | no |\n";
    let keys: Vec<String> = table_keys(readme, "The console").into_iter().collect();
    assert_eq!(keys, ["Ctrl-C", "PgDn", "j", "k", "q", "↓"]);
}
