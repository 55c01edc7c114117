//! Setting up one manager, the same way for the console and the daemon:
//! the config and the cluster map, the control socket and listeners bound
//! before anything starts (and answering from then on), this manager's
//! claim in Redis, then the transport, the engine and the faces beside
//! it. A stop asked before the engine runs gives the start up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use color_eyre::eyre::{eyre, Report, Result, WrapErr};
use mewld_core::cluster_map::MapPrint;
use mewld_core::config::HostArgs;
use mewld_core::fleet::per_host::{socket_index, HostSlot};
use mewld_core::fleet::slice::SliceSpec;
use mewld_core::fleet::Membership;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::control::server::{Control, Serving};
use crate::control::Hello;
use crate::engine::{Engine, EngineHandle, Setup};
use crate::fleet::{self, Fleet};
use crate::phase::{Lifecycle, Phase, PhaseCell, Stop};
use crate::transport::TransportEvent;
use crate::{guardian, identify, logging, metrics, startup, transport, web};

/// Which face a host runs under: the console also says on stderr what it
/// does before its screen is up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Face {
    Console,
    Daemon,
}

/// How a launch ended: the engine is ready to run, or a stop abandoned
/// the start before it ran (the process exits as after that stop).
pub enum Launched {
    Running(Box<Host>),
    Stopped(mewld_core::model::Exit),
}

/// From the config to an engine ready to run. The control socket and the
/// listeners are bound first, so that a second manager on this config, or
/// a taken port, is refused before Discord is asked anything; from then
/// on the socket answers, and a stop asked through it or by a signal
/// (`life`) abandons the start, at once while Discord is asked or its
/// reset awaited.
pub async fn launch(
    config: &Path,
    socket: Option<PathBuf>,
    host: &HostFlags,
    face: Face,
    life: &Lifecycle,
) -> Result<Launched> {
    let prepared = load_config(config, host)?;
    for w in &prepared.warnings {
        if face == Face::Console {
            logging::to_stderr(&format!("warning: {w}"));
        }
        tracing::warn!("{w}");
    }
    let control = Control::bind(&socket.unwrap_or(prepared.config.control_socket.clone()))
        .map_err(|e| eyre!(e))?;
    let hello = Hello::of_this_process(face == Face::Console, prepared.config.path.clone());
    let control = control.open(hello, life.clone());
    let listeners = Listeners::bind(&prepared.config, life.phase().clone()).await?;
    if face == Face::Console {
        logging::to_stderr("mewld: asking Discord for the shard count…");
    }
    let mut setup = tokio::select! {
        setup = startup::prepare(prepared, life.phase()) => setup?,
        stop = life.abandoned() => return Ok(abandoned(stop, life, control, None).await),
    };
    setup.fleet = membership(&setup, host)?;
    start(setup, control, listeners, life).await
}

/// The start given up for `stop`: said in one line, the control socket's
/// clients told, this manager's claim (if made) left.
async fn abandoned(
    stop: Stop,
    life: &Lifecycle,
    control: Serving,
    fleet: Option<Fleet>,
) -> Launched {
    let step = life.phase().get().step();
    let exit = stop.exit;
    tracing::info!(
        by = %stop.by,
        code = exit.code(),
        "stopped during start-up ({step}), before any cluster started; exiting"
    );
    control.farewell().await;
    if let Some(fleet) = fleet {
        fleet.leave().await;
    }
    Launched::Stopped(exit)
}

/// What the command line says about this manager as one host of a fleet
/// (docs/fleet.md): its slice, and what would otherwise be made from it.
#[derive(Debug, Default)]
pub struct HostFlags {
    pub slice: Option<SliceSpec>,
    /// `--host-name`: else the machine's name, plus the slot in a fleet.
    pub name: Option<String>,
    /// `--metrics-addr`: else `metrics_addr`, plus the slot in a fleet.
    pub metrics_addr: Option<SocketAddr>,
}

impl HostFlags {
    fn args(&self) -> HostArgs {
        HostArgs {
            slot: self.slice.as_ref().map(SliceSpec::slot),
            host_count: self.slice.as_ref().and_then(SliceSpec::host_count),
            metrics_addr: self.metrics_addr,
        }
    }

    /// This host's name in the fleet (`vm-1` by default, on machine `vm`).
    pub fn host_name(&self) -> String {
        let slot = self.slice.as_ref().map(SliceSpec::slot);
        fleet::fleet_host_name(self.name.as_deref(), slot)
    }
}

/// The config as this host runs it (`startup::load_config`, then
/// `Config::for_host`): in a fleet, its own control socket and ports, with
/// a warning when hosts on one machine would meet on a port.
pub fn load_config(path: &Path, host: &HostFlags) -> Result<startup::Prepared> {
    let mut prepared = startup::load_config(path)?;
    prepared.config = prepared.config.for_host(&host.args())?;
    prepared.warnings.extend(prepared.config.port_overlap());
    Ok(prepared)
}

/// The control socket `mewld attach` reaches: `--control-socket` as
/// written; else the config's (`control_socket`, by default `mewld.ctl`
/// beside it), made host `slot`'s (`mewld.1.ctl`) when one is given. With
/// no slot and nothing at that path, if hosts' sockets are beside it, the
/// error says which to choose.
pub fn attach_socket(
    config: &Path,
    flag: Option<PathBuf>,
    slot: Option<HostSlot>,
) -> Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path);
    }
    let base = startup::load_config(config)?.config.control_socket;
    if let Some(slot) = slot {
        return Ok(slot.socket(&base));
    }
    if base.exists() {
        return Ok(base);
    }
    let dir = mewld_core::config::dir_of(&base);
    let mut hosts: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter_map(|p| socket_index(&base, &p).map(|i| (i, p)))
                .collect()
        })
        .unwrap_or_default();
    if hosts.is_empty() {
        return Ok(base);
    }
    hosts.sort();
    let list: Vec<String> = hosts
        .iter()
        .map(|(i, p)| format!("{} (--host-index {i})", p.display()))
        .collect();
    Err(eyre!(
        "no control socket at {}, but hosts of a fleet listen beside it: {}. Name one with \
         --host-index I (or --control-socket PATH), or reach the whole fleet with --redis",
        base.display(),
        list.join(", ")
    ))
}

/// A running manager: its engine (not yet driven), the transport's news
/// for it, and its place in the fleet.
pub struct Host {
    pub engine: Engine,
    pub handle: EngineHandle,
    pub transport_rx: tokio::sync::mpsc::Receiver<TransportEvent>,
    /// What is left to do once the engine has ended.
    pub leaving: Leaving,
}

/// The control socket's clients and the fleet, told when the engine ends.
pub struct Leaving {
    control: Serving,
    fleet: Option<Fleet>,
}

impl Leaving {
    /// Once the engine has ended: its clients get its last news, then this
    /// host leaves the fleet.
    pub async fn run(self) {
        self.control.farewell().await;
        if let Some(fleet) = self.fleet {
            fleet.leave().await;
        }
    }
}

/// Starts the transport and the engine, joins the fleet (or claims every
/// cluster alone: never given up half way), and hands the control socket
/// the engine, unless a stop abandoned the start meanwhile.
pub async fn start(
    setup: Setup,
    control: Serving,
    listeners: Listeners,
    life: &Lifecycle,
) -> Result<Launched> {
    let (transport, transport_rx) = transport::start(&setup.config)?;
    let (me, map) = (setup.fleet.clone(), setup.map_print());
    let phase = listeners.phase.clone();
    let (mut engine, handle) = listeners.start_engine(setup, transport)?;
    phase.starting(Phase::Claiming);
    let fleet = join_fleet(&mut engine, &handle, me, map).await?;
    // The face drives the engine next; the probe's first answer ends this.
    phase.starting(Phase::Launching);
    if let Err(stop) = control.run_engine(&handle) {
        return Ok(abandoned(stop, life, control, fleet).await);
    }
    guardian::start();
    Ok(Launched::Running(Box::new(Host {
        engine,
        handle,
        transport_rx,
        leaving: Leaving { control, fleet },
    })))
}

/// This manager's claim in Redis: its slice of the fleet when one was
/// asked for, else every cluster (alone). `None` with `ipc: unix`, where
/// the socket file keeps two managers apart.
fn membership(setup: &Setup, host: &HostFlags) -> Result<Option<Membership>> {
    let redis = matches!(setup.config.ipc, crate::config::Ipc::Redis { .. });
    let (owned, host_count, solo) = match &host.slice {
        None if !redis => return Ok(None),
        None => (setup.clusters.iter().map(|c| c.id).collect(), None, true),
        Some(_) if !redis => {
            return Err(eyre!(
                "{}: several hosts share their clusters through Redis; `ipc: unix` runs on one host only",
                setup.config.path.display()
            ))
        }
        Some(slice) => {
            let owned = slice
                .resolve(setup.clusters.len() as u32)
                .wrap_err_with(|| {
                    format!(
                        "{}: cannot take this host's slice",
                        setup.config.path.display()
                    )
                })?;
            (owned, slice.host_count(), false)
        }
    };
    let name = host.host_name();
    Ok(Some(Membership {
        // The pid alone is not unique: in a container it is always 1.
        id: format!("{name}:{}:{}", std::process::id(), fleet::run_token()),
        name,
        pid: std::process::id(),
        owned,
        host_count,
        solo,
    }))
}

/// Claims this manager's clusters in Redis (joining the fleet, in one),
/// before anything starts: a refused claim stops the start.
async fn join_fleet(
    engine: &mut Engine,
    handle: &EngineHandle,
    me: Option<Membership>,
    map: MapPrint,
) -> Result<Option<Fleet>> {
    let Some(me) = me else {
        return Ok(None);
    };
    let config = engine.config();
    let crate::config::Ipc::Redis { url } = &config.ipc else {
        return Ok(None);
    };
    let solo = me.solo;
    let fleet = fleet::join(url, &config.channel, me, map, handle.snapshot())
        .await
        .map_err(|e| {
            if solo {
                eyre!("cannot claim the clusters in Redis: {e}")
            } else {
                eyre!("cannot join the fleet: {e}")
            }
        })?;
    engine.follow_fleet(fleet.view.clone());
    Ok(Some(fleet))
}

/// The TCP listeners the config asks for (metrics, identify queue, web
/// API): bound before anything starts, so a taken port stops the start.
/// The metrics and the web API are served at once: `/healthz` says which
/// step of the start `phase` is at (start-up sets it as it goes) until the
/// engine answers, and the web API's routes that need the engine say it.
pub struct Listeners {
    metrics: Option<metrics::Metrics>,
    identify: Option<identify::Server>,
    web: Option<web::Web>,
    pub phase: PhaseCell,
}

impl Listeners {
    /// Binds them; `phase` is start-up's, which `/healthz` says.
    pub async fn bind(config: &Config, phase: PhaseCell) -> Result<Listeners> {
        // Bound before anything starts, so a taken port is a start-up error
        // (`not_bound` says which key and how the address was made).
        let metrics = match config.metrics_addr {
            Some(addr) => {
                let listener = TcpListener::bind(addr).await;
                Some(metrics::serve(
                    listener.map_err(|e| not_bound(config, "metrics_addr", addr, &e))?,
                    phase.clone(),
                ))
            }
            None => None,
        };
        let identify = match config.identify_queue {
            Some(addr) => Some(
                identify::Server::bind(addr)
                    .await
                    .map_err(|e| not_bound(config, "identify_queue", addr, &e))?,
            ),
            None => None,
        };
        let web = match web::Settings::of(config) {
            Some(settings) => {
                let addr = settings.api.addr;
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|e| not_bound(config, "web_api", addr, &e))?;
                let web = web::serve(listener, settings, phase.clone())
                    .map_err(|e| eyre!("web_api: {e}"))?;
                tracing::info!("serving the web API on http://{addr}");
                Some(web)
            }
            None => None,
        };
        Ok(Listeners {
            metrics,
            identify,
            web,
            phase,
        })
    }

    /// The engine, with the identify queue (whose URL its clusters get) and
    /// the metrics served beside it.
    fn start_engine(
        self,
        mut setup: Setup,
        transport: transport::Transport,
    ) -> Result<(Engine, crate::engine::EngineHandle)> {
        // In a fleet, the queue shares Discord's limits with the other hosts.
        let gate = match (&setup.fleet, &setup.config.ipc, &self.identify) {
            (Some(me), crate::config::Ipc::Redis { url }, Some(_)) if !me.solo => Some(
                identify::FleetGate::new(url, &setup.config.channel, &me.id)
                    .wrap_err("the `redis` setting is not a usable Redis URL")?,
            ),
            _ => None,
        };
        let identify = self.identify.map(|server| {
            setup
                .env_vars
                .push(("MEWLD_IDENTIFY_URL".into(), server.url()));
            let (config, shards) = (setup.config.clone(), setup.shard_count);
            let limit = setup
                .gateway
                .as_ref()
                .map(|g| g.session_start_limit.clone());
            (server, config, shards, limit)
        });
        let gateway = setup.gateway.clone();
        let (mut engine, handle) = Engine::new(setup, transport);
        if let Some((server, config, shards, limit)) = identify {
            let link = server.serve(&config, shards, limit.as_ref(), handle.snapshot(), gate);
            engine.follow_identify(link);
        }
        if let Some(metrics) = self.metrics {
            metrics.follow(handle.clone());
        }
        if let Some(web) = self.web {
            web.follow(handle.clone(), gateway);
        }
        Ok((engine, handle))
    }
}

/// Why the listener `key` could not be bound at `addr`: the key, the
/// address and how it was made, and, when it is taken, what to do.
fn not_bound(config: &Config, key: &str, addr: SocketAddr, e: &std::io::Error) -> Report {
    let origin = config.listen_origin(key, addr);
    let how = origin
        .as_deref()
        .map(|o| format!(" ({o})"))
        .unwrap_or_default();
    let mut message = format!("{key} {addr}{how}: {e}");
    if e.kind() == std::io::ErrorKind::AddrInUse {
        let file = config.path.display();
        let fix = match config.host.slot {
            _ if origin.as_deref() == Some("--metrics-addr") => {
                "another program listens there: give this host another --metrics-addr".to_string()
            }
            Some(slot) => format!(
                "another program listens there, or another manager runs as {slot}. Each host \
                 of a fleet listens on the port of `{key}` in {file} plus its index: choose \
                 a port there with the next ones free (one per host)"
            ),
            None => format!(
                "another program listens there (another mewld on this config?): choose \
                 another port for `{key}` in {file}"
            ),
        };
        message = format!("{message}; {fix}");
    }
    eyre!(message)
}
