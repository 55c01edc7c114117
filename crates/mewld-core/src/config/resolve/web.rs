//! `web_api` (ext) and the original's keys it uses, `oauth` and
//! `allowed_ids`, with `web_api_origins`. The original's keys are read only
//! when `web_api` is set: without it a file keeps loading whatever they
//! hold, as before.

use serde_yaml::Value;

use super::{listen_addr, non_empty, At, RawConfig};
use crate::config::{ConfigError, Ipc, OAuth, Token, WebApi};
use crate::web;

/// `web_api` with everything it needs, or `None` when it is off.
pub(super) fn web_api(
    raw: &mut RawConfig,
    ipc: &Ipc,
    at: &At,
) -> Result<Option<WebApi>, ConfigError> {
    let Some(addr) = listen_addr("web_api", raw.web_api.take(), 1293, at)? else {
        return Ok(None);
    };
    if let Ipc::Unix { .. } = ipc {
        return Err(at.err(
            "web_api",
            "needs `ipc: redis`: the web API keeps its sessions in Redis".into(),
        ));
    }
    let oauth = oauth(raw.oauth.take(), at)?;
    let allowed_ids = allowed_ids(raw.allowed_ids.take(), at)?;
    let origins = raw
        .web_api_origins
        .take()
        .unwrap_or_default()
        .iter()
        .map(|o| web::origin(o).map_err(|why| at.err("web_api_origins", why)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(WebApi {
        addr,
        oauth,
        allowed_ids,
        origins,
    }))
}

/// The original's `oauth`: `client_id`, `client_secret`, `redirect_url`.
fn oauth(value: Option<Value>, at: &At) -> Result<OAuth, ConfigError> {
    let missing = |key: &str, what: &str| {
        at.err(
            key,
            format!("missing: `web_api` needs {what} for the Discord login"),
        )
    };
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Err(missing(
            "oauth",
            "`oauth` (client_id, client_secret, redirect_url)",
        ));
    };
    let Value::Mapping(map) = value else {
        return Err(at.err(
            "oauth",
            "must be a mapping with client_id, client_secret and redirect_url".into(),
        ));
    };
    let field = |name: &str| -> Result<String, ConfigError> {
        let key = format!("oauth.{name}");
        match map.get(name) {
            None | Some(Value::Null) => Err(missing(&key, &format!("`{key}`"))),
            Some(v) => scalar(v)
                .and_then(|s| non_empty(Some(s)))
                .ok_or_else(|| missing(&key, &format!("`{key}` (text)"))),
        }
    };
    let client_id = field("client_id")?;
    let client_secret = Token::new(field("client_secret")?);
    let (redirect_url, redirect_origin) =
        web::base_url(&field("redirect_url")?).map_err(|why| {
            at.err(
                "oauth.redirect_url",
                format!("{why}; it is the web API's address as browsers reach it"),
            )
        })?;
    Ok(OAuth {
        client_id,
        client_secret,
        redirect_url,
        redirect_origin,
    })
}

/// `allowed_ids`: Discord user ids, written as text or as numbers.
fn allowed_ids(value: Option<Value>, at: &At) -> Result<Vec<String>, ConfigError> {
    let list = match value {
        Some(Value::Sequence(list)) if !list.is_empty() => list,
        Some(Value::Sequence(_)) | Some(Value::Null) | None => {
            return Err(at.err(
                "allowed_ids",
                "missing: `web_api` needs the Discord user ids allowed to log in".into(),
            ))
        }
        Some(_) => return Err(at.err("allowed_ids", "must be a list of Discord user ids".into())),
    };
    list.iter()
        .map(|v| {
            let id = scalar(v).map(|s| s.trim().to_string()).unwrap_or_default();
            if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
                Ok(id)
            } else {
                Err(at.err(
                    "allowed_ids",
                    format!(
                        "{v:?} is not a Discord user id (digits, such as \"563808552288780322\")"
                    ),
                ))
            }
        })
        .collect()
}

/// A YAML string or number as text (the original's sample writes
/// `client_id` as a number).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{ov, parse_err, parse_ok, MIN};

    const OAUTH: &str = "oauth:\n  client_id: 999908791061594194\n  client_secret: \"s3cr3t-value\"\n  redirect_url: https://Bot.Example.com/mewld/\nallowed_ids:\n  - \"563808552288780322\"\n  - 455277032625012737\n";

    #[test]
    fn the_web_api_takes_the_originals_keys() {
        let text = format!(
            "{MIN}web_api: 127.0.0.1:1293\nweb_api_origins: [\"http://LOCALHOST:5173/\"]\n{OAUTH}"
        );
        let loaded = parse_ok(&text, &ov());
        let web = loaded.config.web_api.expect("on");
        assert_eq!(web.addr.to_string(), "127.0.0.1:1293");
        assert_eq!(web.oauth.client_id, "999908791061594194");
        assert_eq!(web.oauth.client_secret.expose(), "s3cr3t-value");
        assert_eq!(web.oauth.redirect_url, "https://bot.example.com/mewld");
        assert_eq!(web.oauth.redirect_origin, "https://bot.example.com");
        assert!(web.oauth.https());
        assert_eq!(
            web.allowed_ids,
            ["563808552288780322", "455277032625012737"]
        );
        assert_eq!(web.origins, ["http://localhost:5173"]);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let shown = format!("{:?}", web.oauth);
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn without_web_api_the_originals_keys_load_whatever_they_hold() {
        let text = format!("{MIN}oauth: 3\nallowed_ids: {{a: 1}}\nweb_api_origins: [ftp://x]\n");
        let loaded = parse_ok(&text, &ov());
        assert!(loaded.config.web_api.is_none());
        let warning = loaded.warnings.join("\n");
        assert!(
            warning.contains("allowed_ids, oauth, web_api_origins")
                && warning.contains("ignored unless `web_api` is set"),
            "{warning}"
        );
    }

    #[test]
    fn a_web_api_without_what_it_needs_names_the_key() {
        let on = format!("{MIN}web_api: 127.0.0.1:1293\n");
        for (extra, key, says) in [
            ("allowed_ids: [\"1\"]\n", "oauth", "missing"),
            (
                OAUTH.split("allowed_ids").next().unwrap_or(""),
                "allowed_ids",
                "missing",
            ),
            (
                &OAUTH.replace("  client_secret: \"s3cr3t-value\"\n", ""),
                "oauth.client_secret",
                "missing",
            ),
            (
                &OAUTH.replace("https://Bot.Example.com/mewld/", "REDIRECT URL HERE"),
                "oauth.redirect_url",
                "no scheme",
            ),
            (
                &OAUTH.replace("455277032625012737", "bob"),
                "allowed_ids",
                "not a Discord user id",
            ),
            (
                &format!("{OAUTH}web_api_origins: [\"https://x/path\"]\n"),
                "web_api_origins",
                "no path",
            ),
            (
                &format!("{OAUTH}ipc: unix\n"),
                "web_api",
                "needs `ipc: redis`",
            ),
        ] {
            let e = parse_err(&format!("{on}{extra}"));
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
            assert!(e.message.contains(says), "{e}");
        }
        let e = parse_err(&format!("{MIN}web_api: 1293\n{OAUTH}"));
        assert!(e.message.contains("127.0.0.1:1293"), "{e}");
    }
}
