//! The config as one host of a fleet runs it (docs/fleet.md, "One
//! machine"): its control socket and the ports it listens on made from
//! the file's with the host's slot, so several hosts on one machine can
//! share one file.

use std::net::SocketAddr;

use super::{Config, ConfigError};
use crate::fleet::per_host::{overlapping_ranges, HostSlot};

/// What the command line says about this host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostArgs {
    /// From the slice (`--host-index`, `--clusters`).
    pub slot: Option<HostSlot>,
    /// `--host-count`, when the slice was given as an index.
    pub host_count: Option<u32>,
    /// `--metrics-addr`: this host's metrics address, as written.
    pub metrics_addr: Option<SocketAddr>,
}

impl Config {
    /// This config as host `args` runs it: with a slot, the control socket
    /// and every listener's port are this host's (`mewld.1.ctl`, the port
    /// plus the slot); `--metrics-addr` replaces `metrics_addr`. Errors
    /// name the key whose port would pass 65535.
    pub fn for_host(mut self, args: &HostArgs) -> Result<Config, ConfigError> {
        if let Some(slot) = args.slot {
            self.control_socket = slot.socket(&self.control_socket);
            let derive = |key: &str, addr: &mut Option<SocketAddr>| {
                if let Some(a) = addr {
                    *a = slot.listen_addr(key, *a).map_err(|message| ConfigError {
                        path: self.path.clone(),
                        line: None,
                        key: Some(key.into()),
                        message,
                    })?;
                }
                Ok::<_, ConfigError>(())
            };
            derive("metrics_addr", &mut self.metrics_addr)?;
            derive("identify_queue", &mut self.identify_queue)?;
            if let Some(web) = &mut self.web_api {
                let mut addr = Some(web.addr);
                derive("web_api", &mut addr)?;
                web.addr = addr.unwrap_or(web.addr);
            }
        }
        if args.metrics_addr.is_some() {
            self.metrics_addr = args.metrics_addr;
        }
        self.host = args.clone();
        Ok(self)
    }

    /// How the listener `key`, at `addr`, was made, for messages:
    /// `9464 + host index 1`, or `--metrics-addr`; `None` as the file says.
    pub fn listen_origin(&self, key: &str, addr: SocketAddr) -> Option<String> {
        if key == "metrics_addr" && self.host.metrics_addr.is_some() {
            return Some("--metrics-addr".into());
        }
        self.host.slot?.explain(addr)
    }

    /// With `--host-count` hosts on one machine, two of the file's
    /// listeners whose ports (each the configured one plus every index)
    /// would meet: a warning, since the hosts may well be on separate
    /// machines.
    pub fn port_overlap(&self) -> Option<String> {
        let (Some(slot), Some(count)) = (self.host.slot, self.host.host_count) else {
            return None;
        };
        // The file's ports, before this host's slot was added.
        let configured = |key: &'static str, addr: Option<SocketAddr>| {
            let addr = addr?;
            let port = u32::from(addr.port()).checked_sub(slot.number())?;
            let port = u16::try_from(port).ok()?;
            (addr.port() != 0).then(|| (key, SocketAddr::new(addr.ip(), port)))
        };
        let metrics = match self.host.metrics_addr {
            Some(_) => None,
            None => configured("metrics_addr", self.metrics_addr),
        };
        let listeners: Vec<(&str, SocketAddr)> = [
            metrics,
            configured("identify_queue", self.identify_queue),
            configured("web_api", self.web_api.as_ref().map(|w| w.addr)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let (a, b) = overlapping_ranges(count, &listeners)?;
        let range = |key: &str| {
            let (_, addr) = listeners.iter().find(|(k, _)| *k == key)?;
            Some(format!(
                "{}-{}",
                addr.port(),
                u32::from(addr.port()) + count - 1
            ))
        };
        Some(format!(
            "with {count} hosts on one machine, `{a}` takes ports {} and `{b}` ports {} \
             (each host listens on the configured port plus its index): two hosts would \
             want one port; move `{a}` or `{b}` apart",
            range(a).unwrap_or_default(),
            range(b).unwrap_or_default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_tests;
    use std::path::Path;

    const BASE: &str =
        "module: m\nredis: r:1\nredis_channel: c\nper_cluster: 1\nuse_current_directory: true\n";

    fn host(index: u32, count: u32) -> HostArgs {
        HostArgs {
            slot: Some(HostSlot::Index(index)),
            host_count: Some(count),
            metrics_addr: None,
        }
    }

    #[test]
    fn a_host_gets_its_own_socket_and_ports() {
        let text = format!("{BASE}metrics_addr: 127.0.0.1:9464\nidentify_queue: 127.0.0.1:0\n");
        let config = for_tests(&text).for_host(&host(2, 3)).expect("fits");
        assert_eq!(config.control_socket, Path::new("./mewld.2.ctl"));
        assert_eq!(
            config.metrics_addr,
            Some("127.0.0.1:9466".parse().expect("addr"))
        );
        assert_eq!(
            config.identify_queue,
            Some("127.0.0.1:0".parse().expect("addr"))
        );
        let metrics = config.metrics_addr.expect("on");
        let origin = config.listen_origin("metrics_addr", metrics);
        assert_eq!(origin.as_deref(), Some("9464 + host index 2"));

        // Alone, the file's values stand.
        let alone = for_tests(&text)
            .for_host(&HostArgs::default())
            .expect("as is");
        assert_eq!(alone.control_socket, Path::new("./mewld.ctl"));
        assert_eq!(alone.listen_origin("metrics_addr", metrics), None);
    }

    #[test]
    fn the_metrics_flag_is_taken_as_written() {
        let text = format!("{BASE}metrics_addr: 127.0.0.1:9464\n");
        let flag = "0.0.0.0:9100".parse().expect("addr");
        let args = HostArgs {
            metrics_addr: Some(flag),
            ..host(1, 2)
        };
        let config = for_tests(&text).for_host(&args).expect("fits");
        assert_eq!(config.metrics_addr, Some(flag));
        let origin = config.listen_origin("metrics_addr", flag);
        assert_eq!(origin.as_deref(), Some("--metrics-addr"));
    }

    #[test]
    fn a_host_serves_the_web_api_on_its_own_port() {
        let text = format!(
            "{BASE}web_api: 127.0.0.1:1293\nmetrics_addr: 127.0.0.1:1294\nallowed_ids: [\"1\"]\n\
             oauth: {{client_id: \"1\", client_secret: s, redirect_url: \"http://h:1293\"}}\n"
        );
        let config = for_tests(&text).for_host(&host(1, 2)).expect("fits");
        let web = config.web_api.as_ref().expect("on");
        assert_eq!(web.addr, "127.0.0.1:1294".parse().expect("addr"));
        let warning = config.port_overlap().expect("1293-1294 meets 1294-1295");
        assert!(warning.contains("`web_api`"), "{warning}");
    }

    #[test]
    fn a_port_beyond_65535_names_its_key() {
        let text = format!("{BASE}identify_queue: 127.0.0.1:65535\n");
        let e = for_tests(&text).for_host(&host(1, 2)).expect_err("beyond");
        assert_eq!(e.key.as_deref(), Some("identify_queue"), "{e}");
    }

    #[test]
    fn listeners_that_hosts_on_one_machine_would_share_are_warned_about() {
        let text = format!("{BASE}metrics_addr: 127.0.0.1:9464\nidentify_queue: 127.0.0.1:9466\n");
        let two = for_tests(&text).for_host(&host(1, 2)).expect("fits");
        assert_eq!(two.port_overlap(), None);
        let three = for_tests(&text).for_host(&host(1, 3)).expect("fits");
        let warning = three.port_overlap().expect("9464-9466 meets 9466-9468");
        assert!(
            warning.contains("`metrics_addr` takes ports 9464-9466")
                && warning.contains("`identify_queue` ports 9466-9468"),
            "{warning}"
        );
    }
}
