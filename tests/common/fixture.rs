//! The usual starting point of an end-to-end test.

use super::{channel, config_text, Answer, BotDir, FakeDiscord, Listener, Manager, Redis};

/// What most end-to-end tests start from: a private Redis, a fake Discord
/// giving `answers`, a bot directory, a channel and a listener on it.
pub struct Fixture {
    pub redis: Redis,
    pub discord: FakeDiscord,
    pub bot: BotDir,
    pub ch: String,
    pub listener: Listener,
}

impl Fixture {
    pub fn new(test: &str, answers: Vec<Answer>) -> Fixture {
        Fixture::with_discord(test, FakeDiscord::start(answers))
    }

    /// As [`Fixture::new`], with a fake Discord of the test's own.
    pub fn with_discord(test: &str, discord: FakeDiscord) -> Fixture {
        let redis = Redis::start();
        let ch = channel(test);
        let listener = redis.listen(&ch);
        Fixture {
            discord,
            bot: BotDir::new(),
            redis,
            ch,
            listener,
        }
    }
}

impl Fixture {
    /// The test config on this fixture, with `extra` lines appended.
    pub fn config(&self, extra: &str) -> String {
        config_text(&self.redis, &self.discord, &self.bot, &self.ch, extra)
    }

    /// `mewld --daemon` on `config` as host `name`, index `index` of
    /// `count` (docs/fleet.md), its clusters with `env`.
    pub fn fleet_host(
        &self,
        config: &str,
        name: &str,
        index: u32,
        count: u32,
        env: &[(&str, &str)],
    ) -> Manager {
        let (i, n) = (index.to_string(), count.to_string());
        let args = [
            "--daemon",
            "--host-name",
            name,
            "--host-index",
            &i,
            "--host-count",
            &n,
        ];
        Manager::start_with(config, &args, Some(&self.redis), &self.bot, env)
    }
}

/// A fixture for `shards` shards and a `mewld --daemon` on it (with the
/// config's `extra` lines and `env`), waited on until every cluster is up.
pub fn launched(test: &str, shards: u32, extra: &str, env: &[(&str, &str)]) -> (Fixture, Manager) {
    let f = Fixture::new(test, vec![Answer::gateway(shards, 900, 0)]);
    let config = f.config(extra);
    let mut manager = Manager::start_with(&config, &["--daemon"], Some(&f.redis), &f.bot, env);
    manager.wait_launched(&f.listener);
    (f, manager)
}
