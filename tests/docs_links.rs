//! The docs say where things are, and it stays true: every relative link in
//! README.md, ARCHITECTURE.md and docs/*.md names a file or directory that
//! exists, and every `#anchor` into a markdown file names one of its
//! headings, slugged as GitHub does (lowercase; punctuation but `-` and `_`
//! dropped; spaces to `-`; a repeated heading gets `-1`, `-2`, …). The
//! markdown is read by pulldown-cmark (CommonMark, with GitHub's tables);
//! the slug rule is ours. The key tables are tests/console_keys.rs's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The markdown files whose links are checked, by path from the root.
fn doc_files() -> BTreeMap<String, String> {
    let mut names = vec!["README.md".to_string(), "ARCHITECTURE.md".to_string()];
    let docs = std::fs::read_dir(Path::new(ROOT).join("docs")).expect("read docs/");
    for entry in docs {
        let name = entry.expect("read docs/").file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".md") {
            names.push(format!("docs/{name}"));
        }
    }
    names
        .into_iter()
        .map(|name| {
            let text = std::fs::read_to_string(Path::new(ROOT).join(&name))
                .unwrap_or_else(|e| panic!("read {name}: {e}"));
            (name, text)
        })
        .collect()
}

#[test]
fn every_relative_link_and_anchor_in_the_docs_points_somewhere() {
    let files = doc_files();
    let exists = |path: &str| Path::new(ROOT).join(path).exists();
    let read = |path: &str| {
        files
            .get(path)
            .cloned()
            .or_else(|| std::fs::read_to_string(Path::new(ROOT).join(path)).ok())
    };
    let problems = check(&files, &exists, &read);
    assert!(
        problems.is_empty(),
        "{} broken link(s) in the docs:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// Every problem with the links of `files` (path from the root → text):
/// `exists` says whether a path from the root exists, `read` gives a
/// markdown file's text.
fn check(
    files: &BTreeMap<String, String>,
    exists: &dyn Fn(&str) -> bool,
    read: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (file, text) in files {
        for link in links(text) {
            if let Some(problem) = check_link(file, &link, exists, read) {
                problems.push(format!(
                    "{file}:{}: link `{}`: {problem}",
                    link.line, link.dest
                ));
            }
        }
    }
    problems
}

/// What is wrong with `link` in `file`, if anything.
fn check_link(
    file: &str,
    link: &Link,
    exists: &dyn Fn(&str) -> bool,
    read: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let dest = link.dest.as_str();
    if dest.is_empty() || has_scheme(dest) {
        return None;
    }
    let (path, anchor) = match dest.split_once('#') {
        Some((path, anchor)) => (path, Some(percent_decode(anchor))),
        None => (dest, None),
    };
    let target = if path.is_empty() {
        file.to_string()
    } else {
        match resolve(file, &percent_decode(path)) {
            Some(target) => target,
            None => return Some(format!("`{path}` leaves the repository")),
        }
    };
    if !exists(&target) {
        return Some(format!("{target} does not exist"));
    }
    let anchor = anchor.filter(|a| !a.is_empty())?;
    if !target.ends_with(".md") {
        return None;
    }
    let text = read(&target)?;
    let anchors = anchors(&text);
    if anchors.contains(&anchor) {
        return None;
    }
    let mut known: Vec<&str> = anchors.iter().map(String::as_str).collect();
    let more = known.len() > 40;
    known.truncate(40);
    Some(format!(
        "{target} has no heading whose anchor is `#{anchor}` (its anchors: {}{})",
        known.join(", "),
        if more { ", …" } else { "" }
    ))
}

/// `http:`, `https:`, `mailto:` and the like: not checked here.
fn has_scheme(dest: &str) -> bool {
    match dest.find(':') {
        Some(colon) => {
            let scheme = &dest[..colon];
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

/// `dest` (relative to `file`'s directory, or to the root when it starts
/// with `/`, as GitHub reads it) as a path from the root; `None` if it
/// climbs out of the repository.
fn resolve(file: &str, dest: &str) -> Option<String> {
    let mut parts: Vec<&str> = if dest.starts_with('/') {
        Vec::new()
    } else {
        let mut dir: Vec<&str> = file.split('/').collect();
        dir.pop();
        dir
    };
    for part in dest.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            _ => parts.push(part),
        }
    }
    Some(if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A link's destination and the line it is on.
#[derive(Debug, PartialEq)]
struct Link {
    dest: String,
    line: usize,
}

/// `markdown` as GitHub reads it (tables, footnotes, … on).
fn parser(markdown: &str) -> Parser<'_> {
    Parser::new_ext(markdown, Options::all())
}

/// The destinations of the links and images of a markdown text (inline or
/// by reference), then those of its reference definitions, each with the
/// line it starts on; code is not read.
fn links(markdown: &str) -> Vec<Link> {
    let line_of = |at: usize| markdown[..at].matches('\n').count() + 1;
    let parser = parser(markdown);
    let mut definitions: Vec<Link> = parser
        .reference_definitions()
        .iter()
        .map(|(_, def)| Link {
            dest: def.dest.to_string(),
            line: line_of(def.span.start),
        })
        .collect();
    definitions.sort_by_key(|l| l.line);
    let mut found: Vec<Link> = parser
        .into_offset_iter()
        .filter_map(|(event, at)| match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => Some(Link {
                dest: dest_url.to_string(),
                line: line_of(at.start),
            }),
            _ => None,
        })
        .collect();
    found.extend(definitions);
    found
}

/// The anchors a markdown text's headings get on GitHub, and those of
/// `<a name="…">` / `id="…"` tags.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut found = BTreeSet::new();
    // The text of the heading being read, as shown.
    let mut heading: Option<String> = None;
    for event in parser(markdown) {
        match (event, heading.as_mut()) {
            (Event::Start(Tag::Heading { .. }), _) => heading = Some(String::new()),
            (Event::Text(t) | Event::Code(t), Some(text)) => text.push_str(&t),
            (Event::End(TagEnd::Heading(_)), Some(text)) => {
                let slug = slug(text);
                let n = seen.entry(slug.clone()).or_insert(0);
                found.insert(if *n == 0 { slug } else { format!("{slug}-{n}") });
                *n += 1;
                heading = None;
            }
            (Event::Html(html) | Event::InlineHtml(html), _) => {
                for tag in ["name=\"", "id=\""] {
                    let mut rest = html.as_ref();
                    while let Some(at) = rest.find(tag) {
                        rest = &rest[at + tag.len()..];
                        if let Some(end) = rest.find('"') {
                            found.insert(rest[..end].to_string());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// GitHub's anchor for a heading's text as shown: lowercased, with every
/// character but letters, marks, digits, `-`, `_` and spaces dropped, and
/// spaces turned to `-`.
fn slug(shown: &str) -> String {
    shown
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn slugs_are_githubs() {
    let cases = [
        (
            "10. Several hosts: a fleet (ext)",
            "10-several-hosts-a-fleet-ext",
        ),
        (
            "8.1 The control socket and `mewld attach` (ext)",
            "81-the-control-socket-and-mewld-attach-ext",
        ),
        ("What differs, on purpose", "what-differs-on-purpose"),
        ("The console's own log", "the-consoles-own-log"),
        (
            "4. Bring the shards up, then say `launch_next`",
            "4-bring-the-shards-up-then-say-launch_next",
        ),
        ("Metrics (Prometheus)", "metrics-prometheus"),
        ("See [the docs](docs/x.md) — here", "see-the-docs--here"),
        ("Ünïcode Straße", "ünïcode-straße"),
    ];
    for (heading, want) in cases {
        let got: Vec<String> = anchors(&format!("## {heading}\n")).into_iter().collect();
        assert_eq!(got, [want], "the anchor of {heading:?}");
    }
    let text =
        "# A\n## Run\n```\n## Not a heading\n```\n### Run\n#nospace\n<a name=\"here\"></a>\n";
    let got: Vec<String> = anchors(text).into_iter().collect();
    assert_eq!(got, ["a", "here", "run", "run-1"]);
}

#[test]
fn links_are_read_outside_code_only() {
    let text = "See [a](docs/a.md#x) and ![b](../b.png \"title\").\n\
                `[not](code.md)` and ``[nor](this.md)``\n\
                ```\n[fenced](nope.md)\n```\n\
                [ref]: <ref.md>\n\
                a `code span\nacross lines [no](no.md)` then [yes](yes.md) and [web](https://x.y/z)\n\
                [paren](a_(b).md)\n";
    let got: Vec<(String, usize)> = links(text).into_iter().map(|l| (l.dest, l.line)).collect();
    assert_eq!(
        got,
        [
            ("docs/a.md#x".to_string(), 1),
            ("../b.png".to_string(), 1),
            ("yes.md".to_string(), 8),
            ("https://x.y/z".to_string(), 8),
            ("a_(b).md".to_string(), 9),
            ("ref.md".to_string(), 6),
        ]
    );
}

#[test]
fn a_broken_link_or_anchor_is_named_with_its_file_and_line() {
    let files: BTreeMap<String, String> = [
        (
            "README.md".to_string(),
            "# mewld\n\nSee [the console](docs/console.md#keys), [ops](docs/ops.md),\n\
             [here](#mewld), [gone](#nowhere), [up](../x.md) and [img](screenshots/a.png).\n"
                .to_string(),
        ),
        (
            "docs/console.md".to_string(),
            "# The console\n\n## Keys\n\nBack to the [README](../README.md#mewld), \
             [bad](../README.md#keys) and [dir](../docs/).\n"
                .to_string(),
        ),
    ]
    .into_iter()
    .collect();
    let on_disk = ["README.md", "docs/console.md", "docs", "screenshots/a.png"];
    let exists = |p: &str| on_disk.contains(&p);
    let read = |p: &str| files.get(p).cloned();
    let problems = check(&files, &exists, &read);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(problems[0].starts_with("README.md:3: link `docs/ops.md`: docs/ops.md does not exist"));
    assert!(problems[1].starts_with(
        "README.md:4: link `#nowhere`: README.md has no heading whose anchor is `#nowhere` (its anchors: mewld)"
    ));
    assert!(problems[2].starts_with("README.md:4: link `../x.md`: `../x.md` leaves the repository"));
    assert!(problems[3].starts_with(
        "docs/console.md:5: link `../README.md#keys`: README.md has no heading whose anchor is `#keys`"
    ));
}
