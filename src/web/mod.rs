//! The original's web API (opt-in: `web_api`; docs/protocol.md §8.2), for
//! the dashboards and scripts written against it: its routes, methods and
//! JSON, behind its Discord login, without its holes (sessions expire and
//! live under the channel, the cookie is `HttpOnly`, CORS and the login's
//! redirect answer only `web_api_origins`, no token is logged).
//!
//! It is served like the metrics (`crate::http`: a bounded pool of
//! connections, a deadline each, one request a connection), from start-up
//! on; until the engine exists, what needs it answers 503. Requests read
//! the engine's snapshot and its action log through the [`EngineHandle`],
//! as every face does, and never wait on the engine's loop; sessions and
//! publishing go through a Redis connection of the API's own.

mod login;
mod oauth;
mod routes;
mod shapes;
mod store;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::{Config, Ipc, WebApi};
use crate::engine::EngineHandle;
use crate::http;
use crate::phase::PhaseCell;
use mewld_core::model::GatewayBot;

type Resp = Response<Full<Bytes>>;

/// Connections kept open at once, and from one peer, before the oldest is
/// closed (`http::Pool`): a dashboard polls a few routes at a time.
const LIMITS: http::Limits = http::Limits {
    pool: 128,
    per_peer: 32,
};
/// A connection is closed after this long, whatever it is doing: room for
/// a login's two calls to Discord (10 s each at most).
const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// Logins finishing with Discord at once; more are told to try again, so
/// forged `/confirm`s cannot make this host flood Discord.
const LOGINS_AT_ONCE: usize = 4;

/// The original's banner at `/`.
const BANNER: &str = "Mewld instance up, use mewld-ui to access it using your browser";

/// What the web API needs of the config.
pub struct Settings {
    pub api: WebApi,
    pub proxy: Option<String>,
    pub dir: PathBuf,
    pub redis_url: String,
    pub channel: String,
    pub log_key: String,
    pub log_max_len: usize,
}

impl Settings {
    /// `None` when `web_api` is off (the config refuses it without Redis).
    pub fn of(config: &Config) -> Option<Settings> {
        let (Some(api), Ipc::Redis { url }) = (&config.web_api, &config.ipc) else {
            return None;
        };
        Some(Settings {
            api: api.clone(),
            proxy: config.proxy.clone(),
            dir: config.bot_dir.clone(),
            redis_url: url.clone(),
            channel: config.channel.clone(),
            log_key: config.action_log_key(),
            log_max_len: config.action_log_max_len,
        })
    }
}

/// The engine, once there is one, with what start-up learnt from Discord.
struct Followed {
    handle: EngineHandle,
    gateway: Option<GatewayBot>,
}

/// What every request shares.
struct Shared {
    settings: Settings,
    store: store::Store,
    discord: oauth::Discord,
    engine: OnceLock<Followed>,
    phase: PhaseCell,
    logins: Semaphore,
    /// One action-log read at a time (see `routes::action_logs`).
    histories: Semaphore,
}

/// The web API being served, waiting for the engine to follow.
pub struct Web {
    shared: Arc<Shared>,
}

/// Serves on `listener` at once, until the process ends.
pub fn serve(listener: TcpListener, settings: Settings, phase: PhaseCell) -> Result<Web, String> {
    let store = store::Store::new(&settings).map_err(|e| e.to_string())?;
    let discord = oauth::Discord::new(&settings)?;
    let shared = Arc::new(Shared {
        settings,
        store,
        discord,
        engine: OnceLock::new(),
        phase,
        logins: Semaphore::new(LOGINS_AT_ONCE),
        histories: Semaphore::new(1),
    });
    let on = shared.clone();
    let handle = move |req: Request<Incoming>| answer(on.clone(), req);
    http::spawn_hyper(listener, "web API", LIMITS, CONNECTION_DEADLINE, handle);
    Ok(Web { shared })
}

impl Web {
    /// Answers from the engine of `handle` from now on; `gateway` is
    /// Discord's answer as start-up had it.
    pub fn follow(self, handle: EngineHandle, gateway: Option<GatewayBot>) {
        let _ = self.shared.engine.set(Followed { handle, gateway });
    }
}

async fn answer(shared: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let cors = Cors::of(&shared.settings, req.headers());
    let mut response = route(&shared, req, &cors).await;
    cors.apply(response.headers_mut());
    response
}

/// The routes that need a session, by method and path.
const GUARDED: [(&Method, &str); 5] = [
    (&Method::GET, "/ping"),
    (&Method::GET, "/instance-list"),
    (&Method::GET, "/action-logs"),
    (&Method::GET, "/cluster-health"),
    (&Method::POST, "/redis/pub"),
];

async fn route(shared: &Shared, req: Request<Incoming>, cors: &Cors) -> Resp {
    let query = Query::of(req.uri().query());
    match (req.method(), req.uri().path()) {
        (&Method::OPTIONS, _) => cors.preflight(),
        (&Method::GET, "/") => text(StatusCode::OK, BANNER),
        (&Method::GET, "/login") => login::start(shared, &query),
        (&Method::GET, "/confirm") => login::confirm(shared, &query).await,
        (method, path) if GUARDED.contains(&(method, path)) => {
            guarded(shared, req, &query, cors).await
        }
        (_, path)
            if GUARDED.iter().any(|(_, p)| *p == path)
                || ["/", "/login", "/confirm"].contains(&path) =>
        {
            text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// A route behind the login: without a valid session, off to `/login`, as
/// the original did.
async fn guarded(shared: &Shared, req: Request<Incoming>, query: &Query, cors: &Cors) -> Resp {
    let path = req.uri().path().to_string();
    if req.method() == Method::POST && cors.foreign() {
        // A browser on another site: its page cannot publish with the
        // user's cookie (no CORS answer would stop a POST being sent).
        return text(StatusCode::FORBIDDEN, &cors.refusal());
    }
    let user = match session_user(shared, req.headers()).await {
        Ok(Some(user)) => user,
        Ok(None) => return redirect(&format!("/login?redirect={path}")),
        Err(e) => {
            // The transport says Redis is down once; this is per request.
            tracing::debug!(error = %e, "the web API cannot read its sessions in Redis");
            let why = format!("cannot check the session: Redis: {e}");
            return text(StatusCode::SERVICE_UNAVAILABLE, &why);
        }
    };
    if path == "/ping" {
        return text(StatusCode::OK, "pong");
    }
    let Some(engine) = shared.engine.get() else {
        let why = format!(
            "mewld is {}; try again shortly",
            shared.phase.get().describe()
        );
        return text(StatusCode::SERVICE_UNAVAILABLE, &why);
    };
    match path.as_str() {
        "/instance-list" => routes::instance_list(&shared.settings, engine),
        "/action-logs" => routes::action_logs(shared, engine).await,
        "/cluster-health" => routes::cluster_health(engine, query),
        _ => routes::publish(shared, engine, &user, req).await,
    }
}

/// The Discord user of the request's session (the `X-Session` header, else
/// the `session` cookie, as the original read them), if that user is
/// still in `allowed_ids`.
async fn session_user(shared: &Shared, headers: &HeaderMap) -> redis::RedisResult<Option<String>> {
    let header = headers.get("x-session").and_then(|v| v.to_str().ok());
    let token = match header.filter(|t| !t.is_empty()) {
        Some(t) => Some(t.to_string()),
        None => cookie(headers, "session"),
    };
    let Some(token) = token else {
        return Ok(None);
    };
    let user = shared.store.session_user(&token).await?;
    Ok(user.filter(|u| shared.settings.api.allowed_ids.contains(u)))
}

/// The cookie `name` of the request, if it has one.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_string())
        })
}

/// What CORS says to the request's `Origin`: only `web_api_origins` get an
/// answer (the original reflected every origin, with credentials).
struct Cors {
    /// The `Origin` header as sent, if there is one.
    origin: Option<HeaderValue>,
    listed: bool,
    /// The API's own origin (of `oauth.redirect_url`).
    own: bool,
}

impl Cors {
    fn of(settings: &Settings, headers: &HeaderMap) -> Cors {
        let origin = headers.get(hyper::header::ORIGIN).cloned();
        let canonical = origin
            .as_ref()
            .and_then(|o| o.to_str().ok())
            .and_then(|o| mewld_core::web::origin(o).ok());
        let is = |o: &str| canonical.as_deref() == Some(o);
        Cors {
            listed: settings.api.origins.iter().any(|o| is(o)),
            own: is(&settings.api.oauth.redirect_origin),
            origin,
        }
    }

    /// A browser page of a site that is neither listed nor the API's own.
    fn foreign(&self) -> bool {
        self.origin.is_some() && !self.listed && !self.own
    }

    fn refusal(&self) -> String {
        let origin = self.origin.as_ref().and_then(|o| o.to_str().ok());
        format!(
            "the origin {} may not use this API: list it in web_api_origins",
            origin.unwrap_or("(unreadable)")
        )
    }

    fn preflight(&self) -> Resp {
        if self.foreign() {
            return text(StatusCode::FORBIDDEN, &self.refusal());
        }
        text(StatusCode::OK, "")
    }

    fn apply(&self, headers: &mut HeaderMap) {
        headers.insert(hyper::header::VARY, HeaderValue::from_static("Origin"));
        let (true, Some(origin)) = (self.listed, &self.origin) else {
            return;
        };
        let allow = [
            ("access-control-allow-origin", origin.clone()),
            (
                "access-control-allow-credentials",
                HeaderValue::from_static("true"),
            ),
            (
                "access-control-allow-methods",
                HeaderValue::from_static("GET, POST, OPTIONS"),
            ),
            (
                "access-control-allow-headers",
                HeaderValue::from_static(
                    "Accept, Content-Type, Content-Length, Accept-Encoding, X-Session",
                ),
            ),
        ];
        for (name, value) in allow {
            headers.insert(name, value);
        }
    }
}

/// A request's query, read as Go's `r.URL.Query().Get` reads it: the first
/// value of a name, percent-decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn of(query: Option<&str>) -> Query {
        let pairs = url::form_urlencoded::parse(query.unwrap_or("").as_bytes());
        Query(pairs.into_owned().collect())
    }

    fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

fn text(status: StatusCode, body: &str) -> Resp {
    http::response(status, "text/plain; charset=utf-8", body.to_string())
}

fn json(status: StatusCode, body: String) -> Resp {
    http::response(status, "application/json", body)
}

/// A 302 to `location`.
fn redirect(location: &str) -> Resp {
    let mut response = text(StatusCode::FOUND, "Found");
    if let Ok(value) = HeaderValue::from_str(location) {
        response
            .headers_mut()
            .insert(hyper::header::LOCATION, value);
    }
    response
}
