//! A client that comes before the engine runs: start-up may ask Discord
//! for seconds or wait hours for the session budget's reset, and the
//! socket answers at once all the while. The client gets the step of the
//! start, and again at each step; `shutdown` and `restart_process`
//! abandon the start (the engine has not run: no cluster has started),
//! anything else is refused with the step. Once the engine runs, the same
//! connection goes on as any other, from the snapshot on.

use futures_util::StreamExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{FramedRead, LinesCodec};

use super::{send, Client, ClientMsg, ServerMsg};
use crate::engine::EngineHandle;
use crate::phase::{Lifecycle, Stop, Window};
use mewld_core::model::{Exit, Operation, Peer, Refused};

/// Answers the client until the engine runs (its handle, to serve the
/// client on), or until it leaves or a stop abandons the start (`None`,
/// after the last word: the step with `exiting`). Nothing here holds up
/// the start: it only reads the phase and the window.
pub(super) async fn until_engine(
    write: &mut OwnedWriteHalf,
    lines: &mut FramedRead<OwnedReadHalf, LinesCodec>,
    peer: Peer,
    client: Client,
    life: &Lifecycle,
) -> Result<Option<EngineHandle>, String> {
    let mut window = life.window();
    let mut said = None;
    loop {
        // Made before the phase is read, so no step falls in between.
        let stepped = life.phase().changed();
        let exiting = match &*window.borrow_and_update() {
            Window::Running(engine) => return Ok(Some(engine.clone())),
            Window::Abandoned(stop) => Some(stop.exit),
            Window::Starting => None,
        };
        let phase = life.phase().get();
        if exiting.is_some() || said != Some(phase) {
            let phase_text = life.phase().step_said();
            send(
                write,
                &ServerMsg::Starting {
                    phase: phase_text,
                    exiting,
                },
            )
            .await?;
            if exiting.is_some() {
                return Ok(None);
            }
            said = Some(phase);
        }
        tokio::select! {
            () = stepped => {}
            _ = window.changed() => {}
            text = lines.next() => match text {
                Some(Ok(text)) => {
                    if let Some(verdict) = answer(&text, peer, client, life).await {
                        send(write, &verdict).await?;
                    }
                }
                Some(Err(e)) => return Err(format!("an unreadable line: {e}")),
                None => return Ok(None),
            },
        }
    }
}

/// The verdict on a request made during start-up.
async fn answer(text: &str, peer: Peer, client: Client, life: &Lifecycle) -> Option<ServerMsg> {
    let (id, op) = match serde_json::from_str::<ClientMsg>(text) {
        Ok(ClientMsg::Request { id, op }) => (id, op),
        Ok(ClientMsg::Hello { .. }) => return None,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "ignored an unknown message from a control client");
            return None;
        }
    };
    let exit = match op {
        Operation::Shutdown => Exit::Shutdown,
        Operation::RestartProcess => Exit::RestartProcess,
        _ => {
            let step = life.phase().step_said();
            return Some(verdict(id, Err(Refused::Starting(step))));
        }
    };
    let by = format!("{} ({peer})", client.noun());
    let result = match life.abandon(Stop { exit, by }) {
        Ok(()) => Ok(()),
        // The engine runs by now: it is the engine's to do.
        Err(engine) => engine.request(op, client.via(peer)).await,
    };
    Some(verdict(id, result))
}

fn verdict(id: u64, result: Result<(), Refused>) -> ServerMsg {
    ServerMsg::Verdict { id, result }
}
