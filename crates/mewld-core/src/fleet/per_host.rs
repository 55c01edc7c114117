//! What sets one host of a fleet apart from the others on the same
//! machine, so that hosts started with one config and no other flag do not
//! collide (docs/fleet.md, "One machine"): the control socket's file name,
//! the host's name and the ports it listens on are made from one number,
//! its slot. Pure: names and arithmetic.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::slice::SliceSpec;

/// The number a host's own defaults are made from: its index
/// (`--host-index`), or, given `--clusters`, the lowest cluster id of its
/// list (as unique as an index: no two hosts run one cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostSlot {
    Index(u32),
    LowestCluster(u32),
}

impl SliceSpec {
    /// This slice's host slot.
    pub fn slot(&self) -> HostSlot {
        match self {
            SliceSpec::Index { index, .. } => HostSlot::Index(*index),
            SliceSpec::Ids(ids) => HostSlot::LowestCluster(ids.first().copied().unwrap_or(0)),
        }
    }
}

impl fmt::Display for HostSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostSlot::Index(n) => write!(f, "host index {n}"),
            HostSlot::LowestCluster(n) => write!(f, "lowest cluster id {n}"),
        }
    }
}

impl HostSlot {
    pub fn number(self) -> u32 {
        match self {
            HostSlot::Index(n) | HostSlot::LowestCluster(n) => n,
        }
    }

    /// The control socket of this host: the number before the file
    /// name's extension (`mewld.ctl` → `mewld.1.ctl`), or after a name
    /// without one (`ctl` → `ctl.1`).
    pub fn socket(self, path: &Path) -> PathBuf {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let n = self.number();
        let named = match name.rsplit_once('.') {
            Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{n}.{ext}"),
            _ => format!("{name}.{n}"),
        };
        path.with_file_name(named)
    }

    /// This host's name in the fleet by default: the machine's, then the
    /// number (`vm-1`).
    pub fn host_name(self, machine: &str) -> String {
        format!("{machine}-{}", self.number())
    }

    /// This host's address for a listener configured at `addr` (`key`):
    /// the port plus the number; port 0 (the system picks one) stays 0.
    pub fn listen_addr(self, key: &str, addr: SocketAddr) -> Result<SocketAddr, String> {
        if addr.port() == 0 {
            return Ok(addr);
        }
        let port = u32::from(addr.port()) + self.number();
        let port = u16::try_from(port).map_err(|_| {
            format!(
                "{key} {addr}: port {} + {self} is {port}, beyond 65535; \
                 choose a lower port",
                addr.port()
            )
        })?;
        Ok(SocketAddr::new(addr.ip(), port))
    }

    /// How `addr`, this host's, was made from the configured port, for
    /// messages: `9464 + host index 1`; `None` for port 0.
    pub fn explain(self, addr: SocketAddr) -> Option<String> {
        let configured = u32::from(addr.port()).checked_sub(self.number())?;
        (addr.port() != 0).then(|| format!("{configured} + {self}"))
    }
}

/// The index of `candidate` if it is the socket `HostSlot::Index(n).socket(base)`
/// of some `n`: how `mewld attach` finds the hosts' sockets beside a config.
pub fn socket_index(base: &Path, candidate: &Path) -> Option<u32> {
    let name = candidate.file_name()?.to_str()?;
    let number = name
        .split('.')
        .filter_map(|part| part.parse::<u32>().ok())
        .next_back()?;
    let slot = HostSlot::Index(number);
    (slot.socket(base).file_name()? == candidate.file_name()?).then_some(number)
}

/// Two listeners of a fleet of `count` hosts on one machine that would
/// take one port: each key's ports run from its configured port to that
/// plus `count - 1`. Returns the two keys, first the one listed first.
pub fn overlapping_ranges<'a>(
    count: u32,
    listeners: &[(&'a str, SocketAddr)],
) -> Option<(&'a str, &'a str)> {
    let span = |a: &SocketAddr| {
        let first = u32::from(a.port());
        first..first + count
    };
    let same_ip = |a: &SocketAddr, b: &SocketAddr| {
        a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified()
    };
    for (i, (key_a, a)) in listeners.iter().enumerate() {
        for (key_b, b) in &listeners[i + 1..] {
            let (ra, rb) = (span(a), span(b));
            let meet = ra.start < rb.end && rb.start < ra.end;
            if a.port() != 0 && b.port() != 0 && same_ip(a, b) && meet {
                return Some((key_a, key_b));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn the_slot_is_the_index_or_the_lowest_listed_cluster() {
        let spec = SliceSpec::index(2, 3).expect("valid");
        assert_eq!(spec.slot(), HostSlot::Index(2));
        let spec = SliceSpec::parse_list("20-29,4,7").expect("parses");
        assert_eq!(spec.slot(), HostSlot::LowestCluster(4));
        assert_eq!(spec.slot().to_string(), "lowest cluster id 4");
    }

    #[test]
    fn sockets_name_the_host_and_are_found_again() {
        let one = HostSlot::Index(1);
        let cases = [
            ("/srv/bot/mewld.ctl", "/srv/bot/mewld.1.ctl"),
            ("/srv/bot/my.bot.sock", "/srv/bot/my.bot.1.sock"),
            ("/srv/bot/ctl", "/srv/bot/ctl.1"),
            ("/srv/bot/.ctl", "/srv/bot/.ctl.1"),
            ("mewld.ctl", "mewld.1.ctl"),
        ];
        for (base, theirs) in cases {
            let made = one.socket(Path::new(base));
            assert_eq!(made, Path::new(theirs), "{base}");
            assert_eq!(socket_index(Path::new(base), &made), Some(1), "{base}");
        }
        let base = Path::new("/srv/bot/mewld.ctl");
        for not_a_host in ["mewld.ctl", "mewld.x.ctl", "other.1.ctl", "mewld.1.ctl.old"] {
            let candidate = Path::new("/srv/bot").join(not_a_host);
            assert_eq!(socket_index(base, &candidate), None, "{not_a_host}");
        }
        assert_eq!(
            socket_index(base, Path::new("/srv/bot/mewld.12.ctl")),
            Some(12)
        );
    }

    #[test]
    fn ports_move_by_the_slot_and_port_zero_stays() {
        let one = HostSlot::Index(1);
        let a = one
            .listen_addr("metrics_addr", addr("127.0.0.1:9464"))
            .expect("fits");
        assert_eq!(a, addr("127.0.0.1:9465"));
        assert_eq!(one.explain(a).as_deref(), Some("9464 + host index 1"));
        let zero = one.listen_addr("metrics_addr", addr("127.0.0.1:0"));
        assert_eq!(zero, Ok(addr("127.0.0.1:0")));
        assert_eq!(one.explain(addr("127.0.0.1:0")), None);
        assert_eq!(
            HostSlot::Index(0).listen_addr("k", addr("[::1]:65535")),
            Ok(addr("[::1]:65535"))
        );
        let e = HostSlot::LowestCluster(2)
            .listen_addr("identify_queue", addr("127.0.0.1:65535"))
            .expect_err("beyond");
        assert!(
            e.starts_with("identify_queue 127.0.0.1:65535") && e.contains("65537"),
            "{e}"
        );
        assert_eq!(HostSlot::Index(3).host_name("vm"), "vm-3");
    }

    #[test]
    fn listeners_whose_port_ranges_meet_are_found() {
        let m = ("metrics_addr", addr("127.0.0.1:9464"));
        let near = ("identify_queue", addr("127.0.0.1:9466"));
        assert_eq!(overlapping_ranges(2, &[m, near]), None);
        assert_eq!(
            overlapping_ranges(3, &[m, near]),
            Some(("metrics_addr", "identify_queue"))
        );
        let any = ("identify_queue", addr("0.0.0.0:9465"));
        assert!(overlapping_ranges(2, &[m, any]).is_some());
        let elsewhere = ("identify_queue", addr("127.0.0.2:9465"));
        assert_eq!(overlapping_ranges(2, &[m, elsewhere]), None);
        let zero = ("identify_queue", addr("127.0.0.1:0"));
        assert_eq!(overlapping_ranges(9, &[m, zero]), None);
    }
}
