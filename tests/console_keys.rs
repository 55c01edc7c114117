//! The README's console key table says what the console's key table does:
//! every key the README names is bound in the console's normal mode, and
//! every key bound there is in the README.

use std::collections::BTreeSet;

use mewld::tui::keys::{bindings, ModeKind};

/// The keys named (in backticks) in the first column of the first table
/// under "## The console".
fn readme_keys(readme: &str) -> BTreeSet<String> {
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("The console"))
        .expect("README has a \"## The console\" section");
    let rows: Vec<&str> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // the header and the |---| line
        .collect();
    assert!(!rows.is_empty(), "the console section has a key table");
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

#[test]
fn the_readme_key_table_matches_the_console() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let documented = readme_keys(&readme);
    let bound: BTreeSet<String> = bindings(ModeKind::Normal)
        .flat_map(|b| b.keys.iter().map(|(k, _)| k.name()))
        .collect();
    let undocumented: Vec<&String> = bound.difference(&documented).collect();
    let unbound: Vec<&String> = documented.difference(&bound).collect();
    assert!(
        undocumented.is_empty() && unbound.is_empty(),
        "README.md's console table is out of step with src/tui/keys.rs:\n  \
         bound but not in the README: {undocumented:?}\n  \
         in the README but not bound: {unbound:?}"
    );
}

#[test]
fn the_readme_parser_reads_keys_from_the_first_column_only() {
    let readme = "# x\n\n## The console\n\n| key | does |\n|---|---|\n\
                  | `j` `k` / `↓`, `PgDn` | move (`not-a-key`) |\n| `q` / `Ctrl-C` | quit |\n\n\
                  | `other` | table |\n\n## Next\n| `z` | no |\n";
    let keys: Vec<String> = readme_keys(readme).into_iter().collect();
    assert_eq!(keys, ["Ctrl-C", "PgDn", "j", "k", "q", "↓"]);
}
