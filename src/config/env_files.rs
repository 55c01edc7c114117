//! The config's `env` files: read in order, never overriding what is set.

use std::path::PathBuf;

/// Variables read from the config's env files.
#[derive(Debug, Default)]
pub struct EnvFiles {
    /// In file order; none overrides a variable the process already has or
    /// an earlier file set (godotenv.Load's rule). Handed to every cluster
    /// and consulted for `MTOKEN` and `PER_CLUSTER`.
    pub vars: Vec<(String, String)>,
    /// Files that could not be read or parsed, each with the reason.
    pub problems: Vec<String>,
}

impl EnvFiles {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

pub fn read_env_files(files: &[PathBuf], process_has: impl Fn(&str) -> bool) -> EnvFiles {
    let mut out = EnvFiles::default();
    for file in files {
        let items = match dotenvy::from_path_iter(file) {
            Ok(iter) => iter,
            Err(e) => {
                out.problems
                    .push(format!("env file {}: {e}", file.display()));
                continue;
            }
        };
        for item in items {
            match item {
                Ok((k, v)) => {
                    if !process_has(&k) && out.get(&k).is_none() {
                        out.vars.push((k, v));
                    }
                }
                Err(e) => {
                    out.problems
                        .push(format!("env file {}: {e}", file.display()));
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_files_do_not_override() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.env");
        let b = dir.path().join("b.env");
        std::fs::write(&a, "X=1\nY=2\n").expect("write");
        std::fs::write(&b, "X=3\nZ=4\nHOME=/nope\n").expect("write");
        let env = read_env_files(&[a, b], |k| k == "HOME");
        assert!(env.problems.is_empty());
        assert_eq!(
            env.vars,
            vec![
                ("X".to_string(), "1".to_string()),
                ("Y".to_string(), "2".to_string()),
                ("Z".to_string(), "4".to_string())
            ]
        );
        let missing = read_env_files(&[dir.path().join("none.env")], |_| false);
        assert!(missing.vars.is_empty());
        assert!(
            missing.problems[0].contains("none.env"),
            "{:?}",
            missing.problems
        );
    }
}
