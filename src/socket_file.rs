//! Socket files the manager listens on (the Unix-socket transport, the
//! control socket): created owner-only whatever the umask, a stale one from
//! a dead manager replaced, a live one refused, and removed at exit.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// Socket files this process made, removed by [`remove_all`] at exit.
static SOCKETS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// Removes the socket files this process listens on; for the end of `main`.
pub fn remove_all() {
    if let Ok(mut paths) = SOCKETS.lock() {
        for p in paths.drain(..) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Binds `path`, owner-only. A stale socket (nobody listening) is
/// replaced; a live one, or anything that is not a socket, is an error, so
/// two managers cannot share it and no file is deleted by mistake. The
/// file is removed by [`remove_all`].
pub fn claim(path: &Path) -> std::io::Result<UnixListener> {
    check_length(path)?;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ));
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            // Anything but a refusal may be a live manager that could not
            // be reached: never delete its socket.
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot tell whether another process listens on it: {e}"),
                ))
            }
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another process is listening on it",
                ))
            }
        }
        std::fs::remove_file(path)?;
    }
    let listener = bind_owner_only(path)?;
    let _ = SOCKETS.lock().map(|mut s| s.push(path.to_path_buf()));
    Ok(listener)
}

/// The longest socket path the OS can bind and connect to: `sun_path` is
/// 108 bytes on Linux, with a NUL at the end.
pub const MAX_PATH: usize = 107;

/// Refuses a path nobody could connect to. (Bound through a short staging
/// path and renamed, a longer one would be listened on yet unreachable: a
/// second manager would take it for stale and run every cluster again.)
pub fn check_length(path: &Path) -> std::io::Result<()> {
    let len = path.as_os_str().len();
    if len > MAX_PATH {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "the path is {len} bytes, over the {MAX_PATH} a Unix socket's path may have; \
                 choose a shorter one"
            ),
        ));
    }
    Ok(())
}

/// Binds the socket with mode 0600 whatever the umask: whoever can connect
/// can stop every cluster. It is bound in a private directory, made
/// owner-only there, then renamed into place, so it is never reachable
/// with a wider mode.
fn bind_owner_only(path: &Path) -> std::io::Result<UnixListener> {
    let private = tempfile::Builder::new()
        .prefix(".mewld")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(crate::config::dir_of(path))?;
    let staged = private.path().join("s");
    let listener = UnixListener::bind(&staged)?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&staged, path)?;
    Ok(listener)
}

/// Refuses a directory anyone may write to: another user could put their
/// own socket in the path, or remove ours between a check and a connect.
pub fn check_private_dir(path: &Path) -> Result<(), String> {
    let dir = crate::config::dir_of(path);
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if meta.permissions().mode() & 0o002 != 0 {
        return Err(format!(
            "{} is writable by every user; put the control socket in a directory only its owner (or group) can write",
            dir.display()
        ));
    }
    Ok(())
}
