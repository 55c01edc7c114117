//! What a cluster start needs beyond a well-formed file: the bot directory,
//! the program and module the engine runs (resolved exactly as the start
//! resolves them), and command lines the kernel accepts. `check-config`
//! lists these problems; the daemon and the console refuse to start on
//! them, instead of failing every cluster start over and over.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use mewld_core::argv;
use mewld_core::cluster_map::ClusterSpec;
use mewld_core::protocol::truncate;

/// Longest single argument the kernel passes to a program, its NUL
/// terminator included (Linux's `MAX_ARG_STRLEN`, 32 pages).
pub const MAX_ARG_STRLEN: usize = 131_072;
/// Where `execvp` looks when `PATH` is not set (glibc's default).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Problems with the directory, program and module a start uses. `env` is
/// what the env files add to every cluster's environment: a `PATH` there is
/// the one the program is looked up on.
pub fn check_files(config: &Config, env: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let dir = &config.bot_dir;
    if !dir.is_dir() {
        problems.push(format!(
            "the bot directory {} does not exist (`dir`, `override_dir`)",
            dir.display()
        ));
    }
    let program = argv::program(config);
    let key = if config.interp.is_some() {
        "interp"
    } else {
        "module"
    };
    if let Err(why) = find_program(&program, dir, env) {
        let hint = if config.interp.is_none() && !config.module.contains('/') {
            format!(
                " (without `interp` the module is the program itself, looked up on PATH; \
                 write ./{} for a file in the bot directory)",
                config.module
            )
        } else {
            String::new()
        };
        problems.push(format!(
            "`{key}` {}: {why}{hint}",
            truncate(&program.to_string_lossy(), 200)
        ));
    }
    let module_passed = config.args.iter().any(|a| a.contains("{module}"));
    if config.interp.is_some() && module_passed {
        let module = argv::module_path(config);
        if !module.exists() {
            problems.push(format!(
                "`module` {} does not exist (with `interp`, the module is <dir>/<module>)",
                module.display()
            ));
        }
    }
    problems
}

/// Problems with the command lines of `clusters`: an argument the kernel
/// refuses (too long, or holding a NUL byte). Stops at the first cluster
/// with one, as the rest usually share its cause.
pub fn check_command_lines(
    config: &Config,
    clusters: &[ClusterSpec],
    shard_count: u32,
) -> Vec<String> {
    for spec in clusters {
        let problems: Vec<String> = argv::expanded_args(config, spec, shard_count)
            .filter_map(|(template, arg)| {
                let why = if arg.len() >= MAX_ARG_STRLEN {
                    format!(
                        "is {} bytes; the kernel takes at most {} in one argument",
                        arg.len(),
                        MAX_ARG_STRLEN - 1
                    )
                } else if arg.contains('\0') {
                    "holds a NUL byte, which no argument can".to_string()
                } else {
                    return None;
                };
                Some(format!(
                    "cluster {} ({}): the argument `{}` {why}",
                    spec.id,
                    truncate(&spec.name, 40),
                    truncate(template, 40)
                ))
            })
            .collect();
        if !problems.is_empty() {
            return problems;
        }
    }
    Vec::new()
}

/// Where the start will find `program`: a path with a slash is taken
/// relative to the cluster's working directory `cwd`; a bare name is looked
/// up on PATH, as `execvp` does.
fn find_program(program: &OsStr, cwd: &Path, env: &[(String, String)]) -> Result<PathBuf, String> {
    if program.as_bytes().contains(&0) {
        return Err("holds a NUL byte, which no program name can".into());
    }
    if program.as_bytes().contains(&b'/') {
        let path = cwd.join(program);
        return match executable(&path) {
            Ok(()) => Ok(path),
            Err(why) => Err(why.to_string()),
        };
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| DEFAULT_PATH.to_string());
    let mut not_executable = None;
    for entry in path.split(':') {
        // An empty entry is the working directory, as for `execvp`.
        let candidate = cwd.join(entry).join(program);
        match executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(Unusable::NotExecutable) => {
                not_executable.get_or_insert(candidate);
            }
            Err(Unusable::Missing) => {}
        }
    }
    Err(match not_executable {
        Some(found) => format!("{} is not executable", found.display()),
        None => "not found on PATH".to_string(),
    })
}

#[derive(Debug)]
enum Unusable {
    Missing,
    NotExecutable,
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unusable::Missing => "does not exist",
            Unusable::NotExecutable => "is not an executable file",
        })
    }
}

fn executable(path: &Path) -> Result<(), Unusable> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err(Unusable::NotExecutable),
        Err(_) => Err(Unusable::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mewld_core::cluster_map::build;

    /// A config for the bot in `dir`; `extra` has `module` and the rest.
    fn config(dir: &Path, extra: &str) -> Config {
        let text = format!(
            "redis: h:1\nredis_channel: c\nper_cluster: 2\noverride_dir: {}\n{extra}",
            dir.display()
        );
        crate::config::for_tests(&text)
    }

    fn script(dir: &Path, name: &str, mode: u32) {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_runnable_setup_has_no_problems() {
        let dir = tempfile::tempdir().expect("tempdir");
        script(dir.path(), "bot.sh", 0o755);
        let c = config(dir.path(), "module: ./bot.sh\n");
        assert_eq!(check_files(&c, &[]), Vec::<String>::new());
        let c = config(dir.path(), "module: bot.sh\ninterp: sh\n");
        assert_eq!(check_files(&c, &[]), Vec::<String>::new());
    }

    #[test]
    fn programs_are_resolved_as_the_start_resolves_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        script(dir.path(), "bot.sh", 0o644);
        // A bare module is looked up on PATH, not in the bot directory.
        let c = config(dir.path(), "module: bot.sh\n");
        let p = check_files(&c, &[]);
        assert!(
            p[0].contains("not found on PATH") && p[0].contains("./bot.sh"),
            "{p:?}"
        );
        // The env files' PATH is the one used; there it is not executable.
        let env = [("PATH".to_string(), dir.path().display().to_string())];
        let p = check_files(&c, &env);
        assert!(p[0].contains("is not executable"), "{p:?}");
        let c = config(dir.path(), "module: ./bot.sh\n");
        let p = check_files(&c, &[]);
        assert!(p[0].contains("not an executable file"), "{p:?}");
    }

    #[test]
    fn interp_and_module_must_exist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path(), "module: bot.sh\ninterp: /nonexistent/python3\n");
        let p = check_files(&c, &[]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("`interp` /nonexistent/python3: does not exist"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("`module` ") && p[1].contains("bot.sh"),
            "{p:?}"
        );
        // A template that does not pass the module does not need it.
        let c = config(
            dir.path(),
            "module: bot.sh\ninterp: sh\nargs: [\"-c\", \"exit 0\"]\n",
        );
        assert_eq!(check_files(&c, &[]), Vec::<String>::new());
        let gone = dir.path().join("gone");
        let c = config(&gone, "module: bot.sh\ninterp: sh\n");
        let p = check_files(&c, &[]);
        assert!(p[0].contains("bot directory"), "{p:?}");
    }

    #[test]
    fn arguments_the_kernel_refuses_are_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = config(dir.path(), "module: bot.sh\n");
        c.names = vec!["ok".into(), "x".repeat(MAX_ARG_STRLEN)];
        let map = build(4, 2, &c.names);
        let p = check_command_lines(&c, &map, 4);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("cluster 1 (") && p[0].contains("{cluster_name}"),
            "{p:?}"
        );
        c.names[1] = "x".repeat(MAX_ARG_STRLEN - 1);
        let map = build(4, 2, &c.names);
        assert_eq!(check_command_lines(&c, &map, 4), Vec::<String>::new());
        c.names[1] = "a\0b".into();
        let map = build(4, 2, &c.names);
        assert!(check_command_lines(&c, &map, 4)[0].contains("NUL"));
        // One cluster with every shard: the shard list itself is too long.
        c.per_cluster = 1_000_000;
        let map = build(100_000, c.per_cluster, &[]);
        let p = check_command_lines(&c, &map, 100_000);
        assert!(p[0].contains("`{shards}`"), "{p:?}");
    }
}
