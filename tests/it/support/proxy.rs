//! A TCP proxy a test puts between a replica and its Postgres, to fault the network for real:
//! pass traffic, black-hole it (connections stay open, nothing is forwarded either way, new
//! ones are accepted and never answered), reset every connection (RST, and new ones reset at
//! once), or refuse new connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Pass = 0,
    /// Accept, hold, forward nothing, never close: a partition without a reset.
    BlackHole = 1,
    /// Reset every connection, open or new.
    Reset = 2,
}

pub struct Proxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    /// Bumped on every mode change, so open links re-read it at once.
    changed: watch::Sender<u64>,
}

fn mode_of(v: u8) -> Mode {
    match v {
        1 => Mode::BlackHole,
        2 => Mode::Reset,
        _ => Mode::Pass,
    }
}

/// Closes a connection with a reset (SO_LINGER 0) rather than a FIN.
fn reset(stream: TcpStream) {
    if let Ok(std) = stream.into_std() {
        let _ = socket2::SockRef::from(&std).set_linger(Some(std::time::Duration::ZERO));
        drop(std);
    }
}

impl Proxy {
    /// A proxy to `upstream` (`host:port`), passing traffic.
    pub async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(Mode::Pass as u8));
        let (changed, _) = watch::channel(0u64);
        let (m, c) = (mode.clone(), changed.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, mode, rx) = (upstream.clone(), m.clone(), c.subscribe());
                tokio::spawn(link(client, upstream, mode, rx));
            }
        });
        Proxy {
            addr,
            mode,
            changed,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
        self.changed.send_modify(|n| *n += 1);
    }
}

/// One client connection: forwards while passing, stalls while black-holed (reading and
/// dropping nothing — the bytes stay unread in the kernel), resets when told.
async fn link(
    client: TcpStream,
    upstream: String,
    mode: Arc<AtomicU8>,
    mut changed: watch::Receiver<u64>,
) {
    let current = || mode_of(mode.load(Ordering::SeqCst));
    // A new connection in a black hole is accepted and then never answered.
    while current() == Mode::BlackHole {
        if changed.changed().await.is_err() {
            return;
        }
    }
    if current() == Mode::Reset {
        return reset(client);
    }
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return reset(client);
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    loop {
        match current() {
            Mode::Reset => {
                if let (Ok(c), Ok(_)) = (cr.reunite(cw), sr.reunite(sw)) {
                    reset(c);
                }
                return;
            }
            Mode::BlackHole => {
                // Hold both ends open, move nothing, until the mode changes.
                if changed.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Mode::Pass => {}
        }
        tokio::select! {
            _ = changed.changed() => continue,
            n = cr.read(&mut up) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if sw.write_all(&up[..n]).await.is_err() { return },
            },
            n = sr.read(&mut down) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if cw.write_all(&down[..n]).await.is_err() { return },
            },
        }
    }
}

/// `postgres://user@host:port/db?x` → (`host:port`, the URL with `via` in its place).
pub fn reroute(url: &str, via: SocketAddr) -> (String, String) {
    let after_scheme = url.find("://").unwrap() + 3;
    let rest = &url[after_scheme..];
    let host_start = rest.find('@').map_or(0, |i| i + 1);
    let host_end = rest[host_start..]
        .find(['/', '?'])
        .map_or(rest.len(), |i| host_start + i);
    let host = rest[host_start..host_end].to_string();
    let host = if host.contains(':') {
        host
    } else {
        format!("{host}:5432")
    };
    let url = format!(
        "{}{}{via}{}",
        &url[..after_scheme],
        &rest[..host_start],
        &rest[host_end..]
    );
    (host, url)
}

/// A proxy in front of the database `url` names, and the URL that goes through it.
pub async fn in_front_of(url: &str) -> (Proxy, String) {
    let (upstream, _) = reroute(url, "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::start(upstream).await;
    let (_, via) = reroute(url, proxy.addr);
    (proxy, via)
}
