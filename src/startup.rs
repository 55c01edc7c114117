//! From a config path to a ready engine [`Setup`]: load the config and its
//! env files, check what a cluster start needs, ask Discord for the shard
//! count, build the cluster map, and respect the session-start budget
//! (docs/protocol.md §6, start-up).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use color_eyre::eyre::{eyre, Result, WrapErr};

use crate::config::{self, Config, EnvFiles};
use crate::discord;
use crate::engine::Setup;
use crate::phase::{Phase, PhaseCell};
use crate::preflight;
use mewld_core::cluster_map;
use mewld_core::model::GatewayBot;

/// The config with env files read and overrides applied.
pub struct Prepared {
    pub config: Config,
    pub env: EnvFiles,
    pub warnings: Vec<String>,
}

/// Loads `path`, reads its env files and applies `MTOKEN`/`PER_CLUSTER`
/// from the process environment or, failing that, the env files. Env files
/// that cannot be read are in `env.problems`, for the caller to judge.
pub fn load_config(path: &Path) -> Result<Prepared> {
    let process_env = |k: &str| std::env::var(k).ok();
    let first = config::load(path, &config::overrides_from_env(process_env))?;
    let env = config::read_env_files(&first.config.env_files, |k| std::env::var_os(k).is_some());
    if env.vars.is_empty() {
        return Ok(Prepared {
            config: first.config,
            env,
            warnings: first.warnings,
        });
    }
    // The env files may carry MTOKEN or PER_CLUSTER: resolve again with them.
    let lookup = |k: &str| {
        std::env::var(k)
            .ok()
            .or_else(|| env.get(k).map(String::from))
    };
    let loaded = config::load(path, &config::overrides_from_env(lookup))?;
    Ok(Prepared {
        config: loaded.config,
        env,
        warnings: loaded.warnings,
    })
}

/// Asks Discord (or the configured proxy) for the gateway information.
pub async fn fetch_gateway(config: &Config) -> Result<GatewayBot> {
    let token = config.token.as_ref().ok_or_else(|| {
        eyre!(
            "{}: no bot token: set `token` in the file or the MTOKEN environment variable",
            config.path.display()
        )
    })?;
    // With a fixed count Discord is asked for the budget alone.
    let what = match config.fixed_shard_count {
        Some(_) => "could not ask Discord for the session-start budget",
        None => "could not ask Discord for the shard count",
    };
    discord::get_gateway_bot(config.proxy.as_deref(), token)
        .await
        .wrap_err(what)
}

/// Everything up to the first cluster start, saying each step in `phase`.
pub async fn prepare(prepared: Prepared, phase: &PhaseCell) -> Result<Setup> {
    let Prepared { config, env, .. } = prepared;
    if let Some(problem) = env.problems.first() {
        return Err(eyre!(
            "{problem} (listed under `env` in {})",
            config.path.display()
        ));
    }
    // Before Discord is asked: these fail without spending a session start.
    refuse(&config, preflight::check_files(&config, &env.vars))?;
    phase.starting(Phase::AskingDiscord);
    let gateway = match fetch_gateway(&config).await {
        Ok(g) => Some(g),
        // With a fixed shard count Discord is only asked for the session
        // budget: a start without it is better than no start.
        Err(e) if config.fixed_shard_count.is_some() && config.token.is_some() && !is_fatal(&e) => {
            tracing::warn!(
                "starting with fixed_shard_count, the session-start budget unknown (no wait for Discord's reset): {e:#}"
            );
            None
        }
        Err(e) => return Err(e),
    };
    let shard_count = config
        .fixed_shard_count
        .or(gateway.as_ref().map(|g| g.shards))
        .unwrap_or(1);
    cluster_map::check_size(shard_count, config.per_cluster)
        .wrap_err_with(|| format!("{}: cannot build the cluster map", config.path.display()))?;
    let clusters = cluster_map::build(shard_count, config.per_cluster, &config.names);
    refuse(
        &config,
        preflight::check_command_lines(&config, &clusters, shard_count),
    )?;
    tracing::info!(
        shards = shard_count,
        clusters = clusters.len(),
        per_cluster = config.per_cluster,
        "built the cluster map"
    );
    let gateway = match gateway {
        Some(g) => Some(wait_for_budget(&config, g, phase).await),
        None => None,
    };
    Ok(Setup {
        gateway,
        fleet: None,
        config: Arc::new(config),
        env_vars: env.vars,
        shard_count,
        clusters,
    })
}

/// Waits for Discord's reset when fewer than
/// `minimum_safe_sessions_remaining` session starts are left, then returns
/// the budget as it is after the wait (asked again; the whole budget if
/// Discord cannot be asked), not as it was before.
async fn wait_for_budget(config: &Config, gateway: GatewayBot, phase: &PhaseCell) -> GatewayBot {
    let limit = &gateway.session_start_limit;
    tracing::info!(
        remaining = limit.remaining,
        total = limit.total,
        max_concurrency = limit.max_concurrency,
        "session starts"
    );
    if limit.remaining >= config.minimum_safe_sessions_remaining {
        return gateway;
    }
    let wait = Duration::from_millis(limit.reset_after);
    tracing::warn!(
        remaining = limit.remaining,
        minimum = config.minimum_safe_sessions_remaining,
        wait_secs = wait.as_secs(),
        "few session starts left; waiting for Discord's reset before starting clusters"
    );
    phase.waiting_for_reset(std::time::SystemTime::now() + wait);
    tokio::time::sleep(wait).await;
    phase.starting(Phase::AskingDiscord);
    match fetch_gateway(config).await {
        Ok(after) => after,
        Err(e) => {
            tracing::warn!("counting the whole session-start budget after the reset: {e:#}");
            let mut after = gateway;
            after.session_start_limit.remaining = after.session_start_limit.total;
            after.session_start_limit.reset_after = 0;
            after
        }
    }
}

/// Fails with every problem listed, if there are any.
fn refuse(config: &Config, problems: Vec<String>) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(eyre!(
        "{}: no cluster could start:\n  {}\n(`mewld check-config` lists every problem)",
        config.path.display(),
        problems.join("\n  ")
    ))
}

fn is_fatal(e: &color_eyre::Report) -> bool {
    matches!(
        e.downcast_ref::<discord::DiscordError>(),
        Some(discord::DiscordError::InvalidToken)
    )
}
