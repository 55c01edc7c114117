//! Loading `config.yaml`: the file and the environment are read here; the
//! parsing and validation are the core's ([`mewld_core::config`], a pure
//! function of the text), re-exported so callers name one module.

mod env_files;

use std::io::Read;
use std::path::{Path, PathBuf};

pub use env_files::{read_env_files, EnvFiles};
pub use mewld_core::config::*;

/// Largest config file read. A real one is a few hundred bytes; the cap
/// keeps a wrong path (a log, a device) from being read whole.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads `MTOKEN`, `PER_CLUSTER`, `HOME` and the working directory; `lookup`
/// sees the process environment plus the config's env files.
pub fn overrides_from_env(lookup: impl Fn(&str) -> Option<String>) -> Overrides {
    Overrides {
        token: lookup("MTOKEN").filter(|t| !t.trim().is_empty()),
        per_cluster: lookup("PER_CLUSTER").filter(|v| !v.trim().is_empty()),
        home: lookup("HOME").map(PathBuf::from),
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    }
}

/// Reads and validates the file at `path`.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Loaded, ConfigError> {
    let file_error = |message: String| ConfigError {
        path: path.to_path_buf(),
        line: None,
        key: None,
        message,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| file_error(format!("cannot read the config file: {e}")))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(file_error(
            "the file is over 1 MiB, too big to be a mewld config".into(),
        ));
    }
    parse(&text, path, overrides)
}

/// Parses `text` as the config file `path` (the core's parse), then checks
/// that the Redis client can open the `redis` address as given.
pub fn parse(text: &str, path: &Path, overrides: &Overrides) -> Result<Loaded, ConfigError> {
    let loaded = mewld_core::config::parse(text, path, overrides)?;
    if let Ipc::Redis { url } = &loaded.config.ipc {
        // The value is not echoed: it may hold a password.
        redis::IntoConnectionInfo::into_connection_info(url.as_str()).map_err(|e| {
            ConfigError::at_key(
                text,
                path,
                "redis",
                format!(
                    "not a usable Redis address ({e}); write host:port or \
                     redis://[user:password@]host:port/db"
                ),
            )
        })?;
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Loaded, ConfigError> {
        let ov = Overrides {
            home: Some(PathBuf::from("/home/bot")),
            cwd: PathBuf::from("/srv"),
            ..Overrides::default()
        };
        parse(text, Path::new("config.yaml"), &ov)
    }

    #[test]
    fn redis_address_is_parsed_as_the_transport_will() {
        let Err(e) =
            parse_text("module: m\nredis: http://:hunter2@x\nredis_channel: c\nper_cluster: 1\n")
        else {
            panic!("an http:// address must be refused");
        };
        assert_eq!((e.key.as_deref(), e.line), (Some("redis"), Some(2)), "{e}");
        assert!(
            !e.to_string().contains("hunter2"),
            "the password is not echoed: {e}"
        );
        for bad in ["h:notaport", "redis://h:1/zero"] {
            let text = format!("module: m\nredis: {bad}\nredis_channel: c\nper_cluster: 1\n");
            match parse_text(&text) {
                Err(e) => assert_eq!(e.key.as_deref(), Some("redis"), "{bad}: {e}"),
                Ok(_) => panic!("{bad} must be refused"),
            }
        }
        let text = "module: m\nredis: redis://u:p@h:7/3\nredis_channel: c\nper_cluster: 1\n";
        match parse_text(text) {
            Ok(loaded) => assert_eq!(
                loaded.config.ipc,
                Ipc::Redis {
                    url: "redis://u:p@h:7/3".into()
                }
            ),
            Err(e) => panic!("{e}"),
        }
    }
}
