//! The web API's rules that need no I/O (docs/protocol.md §8.2): which
//! origins a browser may come from or be sent back to, and the `state` the
//! original's dashboard puts through Discord's login.

/// `text` as a web origin, `scheme://host[:port]` in the form browsers send
/// in `Origin`: lower case, the scheme's default port left out. Only
/// `http` and `https`, with nothing after the authority but one `/`.
pub fn origin(text: &str) -> Result<String, String> {
    let (scheme, rest) = split_scheme(text)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err(format!(
            "{text:?} is not an origin: write only scheme://host[:port], with no path"
        ));
    }
    canonical(&scheme, authority).map_err(|why| format!("{text:?} is not an origin: {why}"))
}

/// A base URL (`https://host[:port][/path]`) as `(url, origin)`: the URL
/// without a trailing `/`, and its origin as [`origin`] writes it.
pub fn base_url(text: &str) -> Result<(String, String), String> {
    let (scheme, rest) = split_scheme(text)?;
    if rest.contains(['?', '#']) {
        return Err(format!(
            "{text:?} has a query or fragment; write scheme://host[:port][/path]"
        ));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let origin =
        canonical(&scheme, authority).map_err(|why| format!("{text:?} is not a URL: {why}"))?;
    Ok((format!("{origin}{}", path.trim_end_matches('/')), origin))
}

fn split_scheme(text: &str) -> Result<(String, &str), String> {
    let text = text.trim();
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| format!("{text:?} has no scheme: write http://… or https://…"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("{text:?}: only http and https are served"));
    }
    Ok((scheme, rest))
}

/// `scheme://authority` in canonical form; `authority` is `host[:port]`.
fn canonical(scheme: &str, authority: &str) -> Result<String, &'static str> {
    if authority.contains('@') {
        return Err("it holds a user name or password");
    }
    let (host, port) = match authority.strip_prefix('[') {
        // An IPv6 literal: `[::1]`, `[::1]:8080`.
        Some(v6) => {
            let (addr, after) = v6.split_once(']').ok_or("an IPv6 address lacks its `]`")?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err("not an IPv6 address between the brackets");
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("junk after the `]`")?),
            };
            (format!("[{}]", addr.to_ascii_lowercase()), port)
        }
        None => {
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
            if host.is_empty() || !host.chars().all(fine) {
                return Err("no host, or a host with characters a host name cannot have");
            }
            (host.to_ascii_lowercase(), port)
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or("the port is not a number from 1 to 65535")?,
        ),
    };
    let default = if scheme == "https" { 443 } else { 80 };
    Ok(match port {
        Some(p) if p != default => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Where `/confirm` sends a dashboard once its user is logged in: the
/// original's `state`, `api@<dashboard>@<instance URL>`, asks for
/// `<dashboard>/ss?session=…&instanceUrl=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterLogin {
    /// A plain browser login: back to the API's `/`.
    Home,
    /// The dashboard at `origin` (canonical), told its instance URL.
    Dashboard { origin: String, instance: String },
}

impl AfterLogin {
    /// Reads `state` as the original did (a state that starts with `api` is
    /// the dashboard's, in three parts split at `@`), and refuses a
    /// dashboard whose origin is not among `allowed` (canonical, as
    /// [`origin`] writes them): the original sent the session anywhere.
    pub fn of_state(state: &str, allowed: &[String]) -> Result<AfterLogin, String> {
        if !state.starts_with("api") {
            return Ok(AfterLogin::Home);
        }
        let parts: Vec<&str> = state.split('@').collect();
        let [_, dashboard, instance] = parts[..] else {
            return Err("Invalid state: expected api@<dashboard URL>@<instance URL>".into());
        };
        let origin = origin(dashboard).map_err(|why| format!("Invalid state: {why}"))?;
        if !allowed.contains(&origin) {
            return Err(format!(
                "Invalid state: {origin} is not an origin this API sends sessions to \
                 (list it in web_api_origins)"
            ));
        }
        Ok(AfterLogin::Dashboard {
            origin,
            instance: instance.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_written_as_browsers_send_them() {
        for (given, want) in [
            ("https://Dash.Example.com", "https://dash.example.com"),
            ("https://dash.example.com/", "https://dash.example.com"),
            ("https://dash.example.com:443", "https://dash.example.com"),
            ("http://localhost:80", "http://localhost"),
            ("http://localhost:5173", "http://localhost:5173"),
            ("HTTP://127.0.0.1:3000", "http://127.0.0.1:3000"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("https://[::1]", "https://[::1]"),
        ] {
            assert_eq!(origin(given).as_deref(), Ok(want), "{given}");
        }
        for bad in [
            "dash.example.com",
            "ftp://x",
            "https://x/path",
            "https://x?q",
            "https://user:pw@x",
            "https://",
            "https://x:0",
            "https://x:99999",
            "https://x:",
            "https://[zz]",
            "https://x y",
            "null",
        ] {
            assert!(origin(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn a_base_url_keeps_its_path_without_the_last_slash() {
        assert_eq!(
            base_url("https://Bot.Example.com/mewld/"),
            Ok((
                "https://bot.example.com/mewld".into(),
                "https://bot.example.com".into()
            ))
        );
        assert_eq!(
            base_url("http://127.0.0.1:1293"),
            Ok((
                "http://127.0.0.1:1293".into(),
                "http://127.0.0.1:1293".into()
            ))
        );
        assert!(base_url("REDIRECT URL HERE").is_err());
        assert!(base_url("https://x/confirm?x=1").is_err());
    }

    #[test]
    fn the_dashboard_state_may_name_only_a_listed_origin() {
        let allowed = vec!["http://localhost:5173".to_string()];
        assert_eq!(AfterLogin::of_state("", &allowed), Ok(AfterLogin::Home));
        assert_eq!(
            AfterLogin::of_state("anything", &allowed),
            Ok(AfterLogin::Home)
        );
        assert_eq!(
            AfterLogin::of_state("api@http://LOCALHOST:5173@http://mewld:1293", &allowed),
            Ok(AfterLogin::Dashboard {
                origin: "http://localhost:5173".into(),
                instance: "http://mewld:1293".into()
            })
        );
        for refused in [
            "api@https://evil.example@http://mewld:1293",
            "api@http://localhost:5173/steal@x",
            "api@http://localhost:5173",
            "api@http://localhost:5173@x@y",
            "api@http://user@localhost:5173@x",
        ] {
            let e = AfterLogin::of_state(refused, &allowed).expect_err(refused);
            assert!(e.starts_with("Invalid state"), "{refused}: {e}");
        }
    }
}
