//! A cluster's command line (docs/protocol.md §4): the `args` template, its
//! placeholders and their expansion. The placeholder table lives only here,
//! so what the config accepts is exactly what a start can fill in.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::cluster_map::{cluster_count, python_list, ClusterSpec};
use crate::config::model::Config;
use crate::model::CommandLine;

/// What the placeholders of one cluster's command line are filled from.
struct Values<'a> {
    config: &'a Config,
    spec: &'a ClusterSpec,
    shard_count: u32,
}

type Fill = fn(&Values) -> String;

/// Every placeholder the `args` template may use, and its value.
const PLACEHOLDERS: [(&str, Fill); 8] = [
    ("{module}", |v| module_path(v.config).display().to_string()),
    ("{shards}", |v| python_list(&v.spec.shards)),
    ("{shard_count}", |v| v.shard_count.to_string()),
    // An extension: some bots size their own IPC from the cluster count.
    ("{cluster_count}", |v| {
        cluster_count(v.shard_count, v.config.per_cluster).to_string()
    }),
    ("{cluster_id}", |v| v.spec.id.to_string()),
    ("{cluster_name}", |v| v.spec.name.clone()),
    ("{logging_code}", |_| "0".to_string()),
    ("{dir}", |v| v.config.bot_dir.display().to_string()),
];

/// The argument list the original passes; `{module}` is dropped when there
/// is no `interp` (the module is then the program itself).
pub const DEFAULT_ARGS: [&str; 7] = [
    "{module}",
    "{shards}",
    "{shard_count}",
    "{cluster_id}",
    "{cluster_name}",
    "{logging_code}",
    "{dir}",
];

/// The placeholder names, for messages.
pub fn known_placeholders() -> String {
    PLACEHOLDERS.map(|(name, _)| name).join(" ")
}

/// One piece of a template argument.
enum Piece<'t> {
    Text(&'t str),
    Placeholder(Fill),
    /// `{word}` that is no placeholder: a typo, refused by the config.
    Unknown(&'t str),
}

/// Splits `template` left to right. Only `{` + letters, digits or `_` +
/// `}` counts as a placeholder; other braces (JSON, `{{`) are text.
fn pieces(template: &str) -> impl Iterator<Item = Piece<'_>> {
    let mut rest = template;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Some(start) = rest.find('{') else {
            return Some(Piece::Text(std::mem::take(&mut rest)));
        };
        if start > 0 {
            let (text, tail) = rest.split_at(start);
            rest = tail;
            return Some(Piece::Text(text));
        }
        if let Some((name, fill)) = PLACEHOLDERS.iter().find(|(n, _)| rest.starts_with(n)) {
            rest = &rest[name.len()..];
            return Some(Piece::Placeholder(*fill));
        }
        let word = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|&end| end > 0 && rest[1 + end..].starts_with('}'));
        let (piece, tail) = match word {
            Some(end) => {
                let (unknown, tail) = rest.split_at(end + 2);
                (Piece::Unknown(unknown), tail)
            }
            None => {
                let (brace, tail) = rest.split_at(1);
                (Piece::Text(brace), tail)
            }
        };
        rest = tail;
        Some(piece)
    })
}

/// The first `{word}` in `template` that is not a placeholder.
pub fn unknown_placeholder(template: &str) -> Option<&str> {
    pieces(template).find_map(|p| match p {
        Piece::Unknown(u) => Some(u),
        _ => None,
    })
}

/// Fills each placeholder once, left to right, so a value that itself
/// contains braces (a cluster name, a path) stays as is.
fn expand(template: &str, values: &Values) -> String {
    let mut out = String::with_capacity(template.len());
    for piece in pieces(template) {
        match piece {
            Piece::Text(t) | Piece::Unknown(t) => out.push_str(t),
            Piece::Placeholder(fill) => out.push_str(&fill(values)),
        }
    }
    out
}

/// `<dir>/<module>`: what `interp` is given to run.
pub fn module_path(config: &Config) -> PathBuf {
    config.bot_dir.join(&config.module)
}

/// The program a cluster runs: `interp`, or else the module itself, where
/// a relative path with a slash is the bot's and a bare name is on PATH.
pub fn program(config: &Config) -> OsString {
    match &config.interp {
        Some(interp) => interp.into(),
        None if config.module.contains('/') => module_path(config).into(),
        None => config.module.clone().into(),
    }
}

/// The template arguments for `spec` next to their expansions. Without
/// `interp` a bare `{module}` argument is left out.
pub fn expanded_args<'c>(
    config: &'c Config,
    spec: &'c ClusterSpec,
    shard_count: u32,
) -> impl Iterator<Item = (&'c str, String)> + 'c {
    let values = Values {
        config,
        spec,
        shard_count,
    };
    config
        .args
        .iter()
        .filter(|a| config.interp.is_some() || a.as_str() != "{module}")
        .map(move |a| (a.as_str(), expand(a, &values)))
}

/// The program and arguments for `spec`.
pub fn command_line(config: &Config, spec: &ClusterSpec, shard_count: u32) -> CommandLine {
    CommandLine {
        program: program(config),
        args: expanded_args(config, spec, shard_count)
            .map(|(_, arg)| arg)
            .collect(),
        cwd: config.bot_dir.clone(),
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            "token: t\nmodule: bot.py\nredis: h:1\nredis_channel: c\nper_cluster: 2\noverride_dir: /srv/bot\n{extra}"
        );
        crate::config::for_tests(&text)
    }

    fn spec() -> ClusterSpec {
        ClusterSpec {
            id: 1,
            name: "Eevee".into(),
            shards: vec![2, 3],
        }
    }

    #[test]
    fn with_interp_the_module_is_the_first_argument() {
        let c = config("interp: /usr/bin/python3\n");
        let line = command_line(&c, &spec(), 4);
        assert_eq!(line.program, OsString::from("/usr/bin/python3"));
        assert_eq!(
            line.args,
            vec![
                "/srv/bot/bot.py",
                "[2, 3]",
                "4",
                "1",
                "Eevee",
                "0",
                "/srv/bot"
            ]
        );
        assert_eq!(line.cwd, PathBuf::from("/srv/bot"));
    }

    #[test]
    fn without_interp_the_module_is_the_program() {
        let line = command_line(&config(""), &spec(), 4);
        assert_eq!(line.program, OsString::from("bot.py"));
        assert_eq!(
            line.args,
            vec!["[2, 3]", "4", "1", "Eevee", "0", "/srv/bot"]
        );
        let mut c = config("");
        c.module = "./run.sh".into();
        let line = command_line(&c, &spec(), 4);
        assert_eq!(line.program, OsString::from("/srv/bot/./run.sh"));
    }

    #[test]
    fn args_template_reorders() {
        let c = config("args: [\"--cluster={cluster_id}\", \"{shards}\", \"{cluster_name}-x\"]\n");
        let line = command_line(&c, &spec(), 4);
        assert_eq!(line.args, vec!["--cluster=1", "[2, 3]", "Eevee-x"]);
    }

    #[test]
    fn cluster_count_expands() {
        // 5 shards at 2 per cluster: 3 clusters.
        let c = config("args: [\"{cluster_id}/{cluster_count}\", \"{shard_count}\"]\n");
        let line = command_line(&c, &spec(), 5);
        assert_eq!(line.args, vec!["1/3", "5"]);
    }

    #[test]
    fn every_placeholder_expands() {
        let c = config("interp: /bin/sh\n");
        for (name, _) in PLACEHOLDERS {
            let expanded = expand(
                name,
                &Values {
                    config: &c,
                    spec: &spec(),
                    shard_count: 4,
                },
            );
            assert!(!expanded.contains('{'), "{name} was left as {expanded}");
            assert_eq!(unknown_placeholder(name), None);
        }
    }

    #[test]
    fn unknown_placeholders_are_found_and_other_braces_are_text() {
        assert_eq!(unknown_placeholder("--n={nope}"), Some("{nope}"));
        assert_eq!(
            unknown_placeholder("{shards}{cluster_cnt}"),
            Some("{cluster_cnt}")
        );
        assert_eq!(unknown_placeholder("{\"a\": 1}"), None);
        assert_eq!(unknown_placeholder("{{shards}}"), None);
        assert_eq!(unknown_placeholder("{}"), None);
        assert_eq!(unknown_placeholder("{ open"), None);
        let c = config("args: [\"{{shards}}\", \"{\\\"id\\\": {cluster_id}}\"]\n");
        let line = command_line(&c, &spec(), 4);
        assert_eq!(line.args, vec!["{[2, 3]}", "{\"id\": 1}"]);
    }

    #[test]
    fn values_are_not_expanded_twice() {
        let mut c = config("");
        c.names = vec![];
        let spec = ClusterSpec {
            id: 0,
            name: "odd{dir}name".into(),
            shards: vec![0],
        };
        let line = command_line(&c, &spec, 1);
        assert_eq!(line.args[3], "odd{dir}name");
    }
}
