//! `mewld demo`: the console on an embedded default, with nothing to
//! install. No Discord (a fixed shard count), no Redis (the Unix-socket
//! transport in a temporary directory), and clusters that are real child
//! processes of this binary (the fake bot in demo mode) speaking the
//! protocol: they identify through the identify queue (Discord is
//! pretended to allow 16 at a time), answer diagnostics with plausible
//! numbers, and one of them crashes now and then.

use std::path::Path;
use std::sync::Arc;

use color_eyre::eyre::{Result, WrapErr};

use crate::config::{self, Overrides};
use crate::engine::Setup;
use mewld_core::cluster_map;
use mewld_core::model::{GatewayBot, SessionStartLimit};

const SHARDS: u32 = 24;
/// What the demo pretends Get Gateway Bot said: a large bot's limits.
const PRETEND_LIMIT: SessionStartLimit = SessionStartLimit {
    total: 1000,
    remaining: 1000,
    reset_after: 24 * 3600 * 1000,
    max_concurrency: 16,
};

/// The demo's config, as a user would write it.
fn config_text(dir: &Path, exe: &Path) -> String {
    format!(
        r#"# mewld demo: generated, not read from disk
override_dir: "{dir}"
module: "{exe}"
args: ["fake-bot", "{{shards}}", "{{shard_count}}", "{{cluster_id}}", "{{cluster_name}}", "{{logging_code}}", "{{dir}}"]
ipc: unix
ipc_socket: "{dir}/mewld.sock"
redis_channel: mewld_demo
names: [Pika, Eevee, Bulbasaur, Squirtle, Lugia, Psyduck]
per_cluster: 4
fixed_shard_count: {SHARDS}
ping_interval: 5
ping_timeout: 15
cluster_start_next_delay: 1
stop_grace_period: 3
restart_backoff_base: 2
identify_queue: 127.0.0.1:0
launch: concurrent
"#,
        dir = dir.display(),
        exe = exe.display(),
    )
}

/// The engine setup for the demo, living in `dir`.
pub fn setup(dir: &Path) -> Result<Setup> {
    let exe = std::env::current_exe().wrap_err("cannot find this program's own path")?;
    let text = config_text(dir, &exe);
    let overrides = Overrides {
        cwd: dir.to_path_buf(),
        ..Overrides::default()
    };
    let loaded = config::parse(&text, &dir.join("demo.yaml"), &overrides)?;
    let config = loaded.config;
    let clusters = cluster_map::build(SHARDS, config.per_cluster, &config.names);
    Ok(Setup {
        config: Arc::new(config),
        env_vars: vec![("FAKEBOT_DEMO".into(), "1".into())],
        shard_count: SHARDS,
        clusters,
        gateway: Some(GatewayBot {
            url: "wss://gateway.discord.gg".into(),
            shards: SHARDS,
            session_start_limit: PRETEND_LIMIT,
        }),
        fleet: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_config_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let setup = setup(dir.path()).expect("demo setup");
        assert_eq!(setup.clusters.len(), 6);
        assert!(setup.config.token.is_none());
        assert_eq!(setup.config.args[0], "fake-bot");
    }
}
