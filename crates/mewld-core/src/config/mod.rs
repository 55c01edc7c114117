//! `config.yaml` text → [`Config`]: parsing, validation and environment
//! overrides, as a pure function (the main crate reads the file and the
//! environment).
//!
//! The keys and their meaning are the original mewld's (docs/protocol.md §2), so an
//! existing bot's file loads unchanged. Errors name the file, the line and the
//! key; unknown keys are warnings, never failures.

mod host;
pub(crate) mod model;
mod raw;
mod resolve;

pub use host::HostArgs;
pub use model::{Config, Ipc, LaunchPolicy, OAuth, RestartPolicy, RollingMode, Token, WebApi};

use std::fmt;
use std::path::{Path, PathBuf};

/// Values read from the environment that override the file. Kept apart from
/// the process environment so that parsing stays a pure function.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `MTOKEN`
    pub token: Option<String>,
    /// `PER_CLUSTER`
    pub per_cluster: Option<String>,
    /// `$HOME`, for `dir`
    pub home: Option<PathBuf>,
    /// The working directory, for `use_current_directory` and relative paths.
    pub cwd: PathBuf,
}

/// What loading a file found wrong, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error about `key` of the file `path` holding `text`, at the
    /// key's line.
    pub fn at_key(text: &str, path: &Path, key: &str, message: String) -> ConfigError {
        ConfigError {
            path: path.to_path_buf(),
            line: raw::line_of_key(text, key),
            key: Some(key.to_string()),
            message,
        }
    }
}

/// A config that loaded, plus what deserves a warning.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// A config from YAML for tests (here and in the main crate), resolved
/// against `/`; panics with the error when the text is not a valid config.
pub fn for_tests(text: &str) -> Config {
    let ov = Overrides {
        cwd: PathBuf::from("/"),
        ..Overrides::default()
    };
    match parse(text, Path::new("c.yaml"), &ov) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("{e}"),
    }
}

/// Parses `text` as the config file `path` (used in messages only).
pub fn parse(text: &str, path: &Path, overrides: &Overrides) -> Result<Loaded, ConfigError> {
    // Editors on Windows save a byte order mark, which YAML would take for
    // the start of a second document.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let raw::Read {
        raw,
        warnings,
        unknown,
    } = raw::read(text, path)?;
    let config = resolve::resolve(raw, text, path, overrides)
        .map_err(|e| e.with_typo_named(&unknown, text))?;
    Ok(Loaded { config, warnings })
}

impl ConfigError {
    /// An error about key `k` names an unknown key of the file spelt
    /// nearly like `k` (`per_clustr` for a missing `per_cluster`): the
    /// warning that would have said so is not printed when the start fails.
    fn with_typo_named(mut self, unknown: &[String], text: &str) -> ConfigError {
        let Some(key) = &self.key else { return self };
        let near = |u: &&String| strsim::damerau_levenshtein(u, key) <= 2;
        if let Some(typo) = unknown.iter().find(near) {
            let at =
                raw::line_of_key(text, typo).map_or_else(String::new, |l| format!(" (line {l})"));
            self.message.push_str(&format!(
                "; `{typo}`{at} is not a key mewld knows: a typo for `{key}`?"
            ));
        }
        self
    }
}

/// The directory `path` is in (`.` for a bare name): where paths the
/// config names relative to itself are.
pub fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `host:port` means database 0 on that host, as in the original.
pub fn redis_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("redis://{addr}/0")
    }
}

/// `url` with its password, if any, replaced by `****`, for printing.
pub fn redacted_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    // The last `@` ends the user info: a password may hold an `@` itself.
    let Some(at) = url[scheme_end..].rfind('@').map(|i| scheme_end + i) else {
        return url.to_string();
    };
    match url[scheme_end..at].find(':').map(|i| scheme_end + i) {
        Some(colon) => format!("{}:****{}", &url[..colon], &url[at..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    //! Also the shared helpers of the config's other test modules.
    use super::*;

    pub(super) fn ov() -> Overrides {
        Overrides {
            token: None,
            per_cluster: None,
            home: Some(PathBuf::from("/home/bot")),
            cwd: PathBuf::from("/srv"),
        }
    }

    pub(super) const MIN: &str =
        "token: abc\nmodule: bot.py\nredis: localhost:6379\nredis_channel: ch\nper_cluster: 10\n";

    pub(super) fn parse_ok(text: &str, o: &Overrides) -> Loaded {
        match parse(text, Path::new("config.yaml"), o) {
            Ok(l) => l,
            Err(e) => panic!("config should load: {e}"),
        }
    }

    pub(super) fn parse_err(text: &str) -> ConfigError {
        match parse(text, Path::new("config.yaml"), &ov()) {
            Ok(_) => panic!("config should not load"),
            Err(e) => e,
        }
    }

    #[test]
    fn token_is_never_shown() {
        let c = parse_ok(MIN, &ov()).config;
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("abc"), "{dbg}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redacted_url("redis://:pw@h:6379/0"),
            "redis://:****@h:6379/0"
        );
        assert_eq!(
            redacted_url("rediss://user:p@ss@h/0"),
            "rediss://user:****@h/0"
        );
        assert_eq!(redacted_url("redis://user@h/0"), "redis://user@h/0");
        assert_eq!(redacted_url("redis://h:6379/0"), "redis://h:6379/0");
    }

    #[test]
    fn a_missing_key_names_its_likely_typo() {
        let text = MIN.replace("per_cluster: 10", "per_clustr: 10");
        let e = parse_err(&text);
        assert_eq!(e.key.as_deref(), Some("per_cluster"));
        assert!(
            e.to_string().ends_with(
                "; `per_clustr` (line 5) is not a key mewld knows: a typo for `per_cluster`?"
            ),
            "{e}"
        );
        // An unknown key far from the missing one is not offered.
        let e = parse_err(&MIN.replace("per_cluster: 10", "colour: 10"));
        assert!(!e.to_string().contains("typo"), "{e}");
    }

    #[test]
    fn a_byte_order_mark_is_accepted() {
        let c = parse_ok(&format!("\u{feff}{MIN}"), &ov()).config;
        assert_eq!(c.module, "bot.py");
    }

    #[test]
    fn redis_address_forms() {
        assert_eq!(redis_url("h:1"), "redis://h:1/0");
        assert_eq!(redis_url("rediss://u:p@h:1/2"), "rediss://u:p@h:1/2");
    }
}
