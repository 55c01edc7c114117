//! The file as written: the serde shape of `config.yaml`, the checks run on
//! the text before libyaml sees it, and the helpers that find a key's line.

use std::path::Path;

use serde::Deserialize;

use super::ConfigError;

/// The file as written, before defaults and validation. Every field is
/// optional so that a missing key can be reported by name, with the file.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawConfig {
    pub(super) token: Option<String>,
    pub(super) dir: Option<String>,
    pub(super) override_dir: Option<String>,
    pub(super) use_current_directory: Option<bool>,
    pub(super) env: Option<Vec<String>>,
    pub(super) names: Option<Vec<String>>,
    pub(super) module: Option<String>,
    pub(super) interp: Option<String>,
    pub(super) redis: Option<String>,
    pub(super) redis_channel: Option<String>,
    pub(super) per_cluster: Option<u32>,
    pub(super) fixed_shard_count: Option<u32>,
    pub(super) ping_interval: Option<u64>,
    pub(super) ping_timeout: Option<u64>,
    pub(super) cluster_start_next_delay: Option<u64>,
    pub(super) minimum_safe_sessions_remaining: Option<u32>,
    pub(super) experimental_features: Option<Vec<String>>,
    pub(super) reshard_all: Option<bool>,
    pub(super) proxy: Option<String>,
    // The original's web UI: read only with `web_api` (any shape is
    // accepted without it, as before).
    pub(super) allowed_ids: Option<serde_yaml::Value>,
    pub(super) oauth: Option<serde_yaml::Value>,
    pub(super) use_custom_webui: Option<serde_yaml::Value>,
    // Extensions of this project (docs/protocol.md marks them so).
    pub(super) args: Option<Vec<String>>,
    pub(super) action_log_max_len: Option<usize>,
    pub(super) stop_grace_period: Option<u64>,
    pub(super) ipc: Option<String>,
    pub(super) ipc_socket: Option<String>,
    pub(super) cluster_channels: Option<bool>,
    pub(super) restart_backoff_base: Option<u64>,
    pub(super) restart_backoff_max: Option<u64>,
    pub(super) restart_max_failures: Option<u32>,
    pub(super) restart_stable_after: Option<u64>,
    pub(super) rolling_restart_timeout: Option<u64>,
    pub(super) rolling_restart_mode: Option<String>,
    pub(super) rolling_restart_parallel: Option<u32>,
    pub(super) launch_timeout: Option<u64>,
    pub(super) control_socket: Option<String>,
    pub(super) metrics_addr: Option<String>,
    pub(super) identify_queue: Option<String>,
    pub(super) web_api: Option<String>,
    pub(super) web_api_origins: Option<Vec<String>>,
    pub(super) identify_margin_ms: Option<u64>,
    pub(super) launch: Option<String>,
    pub(super) launch_concurrency: Option<u32>,
}

/// Deepest `[`/`{` nesting accepted. libyaml's time grows with the square
/// of it (200k levels take minutes); a mewld config needs 2.
const MAX_FLOW_DEPTH: usize = 64;

/// What [`read`] found: the raw values, the warnings for keys that are
/// unknown or belong to the original's web UI, and the unknown keys.
pub(super) struct Read {
    pub raw: RawConfig,
    pub warnings: Vec<String>,
    pub unknown: Vec<String>,
}

/// Deserializes the (BOM-free) `text` of `path`, refusing deep nesting
/// before libyaml sees it.
pub(super) fn read(text: &str, path: &Path) -> Result<Read, ConfigError> {
    if let Some(line) = too_deep(text, MAX_FLOW_DEPTH) {
        return Err(ConfigError {
            path: path.to_path_buf(),
            line: Some(line),
            key: None,
            message: format!(
                "brackets are nested more than {MAX_FLOW_DEPTH} levels deep; a mewld config needs 2"
            ),
        });
    }
    let mut unknown = Vec::new();
    let raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        let de = serde_yaml::Deserializer::from_str(text);
        serde_ignored::deserialize(de, |ignored| unknown.push(ignored.to_string()))
            .map_err(|e: serde_yaml::Error| yaml_error(&e, text, path))?
    };
    let mut warnings: Vec<String> = unknown
        .iter()
        .map(|key| {
            let at = line_of_key(text, key)
                .map(|l| format!(":{l}"))
                .unwrap_or_default();
            format!("{}{at}: unknown key `{key}` ignored", path.display())
        })
        .collect();
    warnings.extend(web_ui_warning(&raw, path));
    Ok(Read {
        raw,
        warnings,
        unknown,
    })
}

/// The original's web UI keys that mean nothing here: all of them without
/// `web_api`, `use_custom_webui` with it (`web_api` alone decides).
fn web_ui_warning(raw: &RawConfig, path: &Path) -> Option<String> {
    let web_api = raw.web_api.as_deref().is_some_and(|a| !a.trim().is_empty());
    if web_api {
        return raw.use_custom_webui.is_some().then(|| {
            format!(
                "{}: use_custom_webui is ignored: `web_api` alone decides whether the web API is served",
                path.display()
            )
        });
    }
    let webui: Vec<&str> = [
        ("allowed_ids", raw.allowed_ids.is_some()),
        ("oauth", raw.oauth.is_some()),
        ("use_custom_webui", raw.use_custom_webui.is_some()),
        ("web_api_origins", raw.web_api_origins.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, present)| present.then_some(k))
    .collect();
    (!webui.is_empty()).then(|| {
        format!(
            "{}: {} belong to the original's web UI, which the terminal console replaces; \
             ignored unless `web_api` is set",
            path.display(),
            webui.join(", ")
        )
    })
}

/// A serde_yaml error as a [`ConfigError`] with its key and line apart.
fn yaml_error(e: &serde_yaml::Error, text: &str, path: &Path) -> ConfigError {
    let line = e.location().map(|l| l.line());
    // serde_yaml prefixes the message with the key path ("per_cluster: ...").
    let msg = e.to_string();
    let (key, message) = match msg.split_once(": ") {
        Some((k, rest)) if !k.contains(' ') => (Some(k.to_string()), rest.to_string()),
        _ => (None, msg.clone()),
    };
    let message = strip_location(&message);
    // serde_yaml points duplicates at the mapping, not the key.
    let line = message
        .strip_prefix("duplicate field `")
        .and_then(|r| r.split('`').next())
        .and_then(|k| line_of_duplicate(text, k))
        .or(line);
    ConfigError {
        path: path.to_path_buf(),
        line,
        key,
        message,
    }
}

/// The 1-based line where flow brackets (`[`, `{`) first nest deeper than
/// `max`, found with a cheap scan before libyaml, whose cost grows with the
/// square of the depth. Not a parser: brackets inside quotes and comments
/// are skipped, taking a quote to open only where a YAML scalar can start.
fn too_deep(text: &str, max: usize) -> Option<usize> {
    enum In {
        Plain,
        Single,
        Double,
        Comment,
    }
    let mut state = In::Plain;
    let mut depth = 0usize;
    let mut line = 1;
    // What the previous character lets start here: a comment needs a
    // space before it, a quoted scalar a space or a flow indicator.
    let (mut comment_may_start, mut quote_may_start) = (true, true);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
        }
        match state {
            In::Comment if c == '\n' => state = In::Plain,
            In::Comment => {}
            In::Single if c == '\'' => state = In::Plain,
            In::Double if c == '\\' => {
                if chars.next() == Some('\n') {
                    line += 1;
                }
            }
            In::Double if c == '"' => state = In::Plain,
            In::Single | In::Double => {}
            In::Plain => match c {
                '\'' if quote_may_start => state = In::Single,
                '"' if quote_may_start => state = In::Double,
                '#' if comment_may_start => state = In::Comment,
                '[' | '{' => {
                    depth += 1;
                    if depth > max {
                        return Some(line);
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        comment_may_start = c.is_whitespace();
        quote_may_start = comment_may_start || matches!(c, '[' | '{' | ',' | ':' | '-' | '?');
    }
    None
}

/// serde_yaml puts " at line L column C" in its messages; the line is
/// reported separately, so it is taken out.
fn strip_location(message: &str) -> String {
    let Some(start) = message.find(" at line ") else {
        return message.to_string();
    };
    let rest = &message[start + " at line ".len()..];
    let mut words = rest.splitn(4, ' ');
    let (_line, column, _col_no) = (words.next(), words.next(), words.next());
    let tail = if column == Some("column") {
        words.next().unwrap_or("")
    } else {
        rest
    };
    let tail = tail.trim_start_matches(',').trim_start();
    if tail.is_empty() {
        message[..start].to_string()
    } else {
        format!("{}, {tail}", &message[..start])
    }
}

/// The line of the second `key:` at the top level, for duplicate keys.
fn line_of_duplicate(text: &str, key: &str) -> Option<usize> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| {
        l.strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with(':'))
    });
    lines.nth(1).map(|(i, _)| i + 1)
}

/// The 1-based line where a top-level key is written, if it is.
pub(crate) fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let top = key.split('.').next().unwrap_or(key);
    text.lines()
        .position(|line| {
            line.strip_prefix(top)
                .map(|rest| rest.trim_start().starts_with(':'))
                .unwrap_or(false)
        })
        .map(|i| i + 1)
}

/// The 1-based line, from line `from` on, that holds `needle` (or `from`).
pub(super) fn line_of_text_after(text: &str, needle: &str, from: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(from - 1)
        .find(|(_, l)| l.contains(needle))
        .map_or(from, |(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{ov, parse_err, parse_ok, MIN};

    #[test]
    fn wrong_type_names_line_and_key() {
        let e = parse_err("module: m\nredis: r:1\nredis_channel: c\nper_cluster: lots\n");
        assert_eq!(e.line, Some(4), "{e}");
        assert_eq!(e.key.as_deref(), Some("per_cluster"), "{e}");
        assert!(
            e.to_string()
                .starts_with("config.yaml:4: key `per_cluster`"),
            "{e}"
        );
    }

    #[test]
    fn malformed_yaml_names_the_line() {
        let e = parse_err("module: m\nredis: [unclosed\nper_cluster: 1\n");
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn duplicate_keys_point_at_the_second_one() {
        let e =
            parse_err("module: m\nredis: r:1\nredis_channel: c\nper_cluster: 1\nper_cluster: 2\n");
        assert_eq!(e.line, Some(5), "{e}");
    }

    #[test]
    fn location_is_taken_out_of_messages() {
        assert_eq!(
            strip_location("bad at line 6 column 6, while parsing x"),
            "bad, while parsing x"
        );
        assert_eq!(strip_location("bad at line 6 column 6"), "bad");
        assert_eq!(strip_location("bad"), "bad");
    }

    #[test]
    fn unknown_keys_warn_with_line() {
        let l = parse_ok(&format!("{MIN}colour: blue\n"), &ov());
        assert!(
            l.warnings
                .iter()
                .any(|w| w == "config.yaml:6: unknown key `colour` ignored"),
            "{:?}",
            l.warnings
        );
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!("{MIN}x: {}{}\n", "[".repeat(200_000), "]".repeat(200_000));
        let e = parse_err(&deep);
        assert_eq!(e.line, Some(6), "{e}");
        assert!(e.message.contains("nested more than 64"), "{e}");
        // Brackets in quotes and comments are text; shallow nesting is fine.
        let brackets = "[".repeat(100);
        let ok = format!(
            "{MIN}a: '{brackets}'\nb: \"{brackets}\\\"{brackets}\"\n# {brackets}\nc: {{d: [[1, 2], [3]]}}\n"
        );
        parse_ok(&ok, &ov());
        assert_eq!(
            too_deep("a: don't [[\n", 1),
            Some(1),
            "a quote inside a word opens nothing"
        );
    }
}
