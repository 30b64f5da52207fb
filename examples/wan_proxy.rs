//! wan_proxy: a TCP proxy that makes loopback behave like a link between two data centres, for
//! `scripts/bench` (issue "performance": a full sync and a no-change run through a 25 ms each way
//! link, and through one that is also capped at 100 Mbit/s).
//!
//! ```text
//! wan_proxy --to 127.0.0.1:143 --delay-ms 25 [--rate-mbit 100] [--listen 127.0.0.1:0]
//! ```
//!
//! Prints `LISTEN <addr>` on stdout once it accepts connections and runs until killed.
//!
//! The model is a serialized link with a propagation delay, one per direction and shared by
//! every connection through the proxy (as a real link is): a chunk read at time `t` occupies
//! the link from `max(t, link free)` for `bytes * 8 / rate` seconds and arrives `delay` after
//! that. Without `--rate-mbit` the link has no bandwidth limit, only the delay. Each direction
//! holds at most `QUEUE` chunks in flight; beyond that the proxy stops reading, so TCP's own
//! flow control pushes back on the sender as a full link would.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Chunks in flight per direction and connection.
const QUEUE: usize = 4096;
/// Largest chunk read at once.
const CHUNK: usize = 16 * 1024;

/// A TCP proxy adding delay (and optionally a bandwidth cap) to both directions.
#[derive(Parser, Debug)]
#[command(name = "wan_proxy")]
struct Args {
    /// Where to listen (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The server to forward to.
    #[arg(long)]
    to: SocketAddr,
    /// One-way delay in milliseconds, added in each direction.
    #[arg(long, default_value_t = 25)]
    delay_ms: u64,
    /// Bandwidth cap per direction in Mbit/s (10^6 bits), shared by all connections.
    #[arg(long)]
    rate_mbit: Option<f64>,
}

/// One direction of the link: when it is next free to carry a byte.
#[derive(Clone)]
struct Link {
    free_at: Arc<Mutex<Instant>>,
    delay: Duration,
    /// Seconds per byte, or 0 without a cap.
    secs_per_byte: f64,
}

impl Link {
    fn new(delay: Duration, rate_mbit: Option<f64>) -> Link {
        Link {
            free_at: Arc::new(Mutex::new(Instant::now())),
            delay,
            secs_per_byte: rate_mbit.map_or(0.0, |r| 8.0 / (r * 1e6)),
        }
    }

    /// When a chunk of `n` bytes read now arrives at the far end.
    fn arrival(&self, n: usize) -> Instant {
        let now = Instant::now();
        let sent = if self.secs_per_byte > 0.0 {
            let mut free = self.free_at.lock().unwrap_or_else(|p| p.into_inner());
            let start = (*free).max(now);
            *free = start + Duration::from_secs_f64(n as f64 * self.secs_per_byte);
            *free
        } else {
            now
        };
        sent + self.delay
    }
}

/// Copies `from` to `to` through `link`: a reader stamps each chunk with its arrival time, a
/// writer delivers it then. Ends (shutting `to` down) when `from` ends or either side fails.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Link,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let reader = async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let at = link.arrival(n);
                    if tx.send((at, buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let delay = Duration::from_millis(args.delay_ms);
    let up = Link::new(delay, args.rate_mbit);
    let down = Link::new(delay, args.rate_mbit);
    let listener = TcpListener::bind(args.listen).await?;
    println!("LISTEN {}", listener.local_addr()?);
    loop {
        let (client, _) = listener.accept().await?;
        let (to, up, down) = (args.to, up.clone(), down.clone());
        tokio::spawn(async move {
            // A real connection costs a round trip (SYN, SYN-ACK) before the first byte.
            tokio::time::sleep(2 * delay).await;
            let Ok(server) = TcpStream::connect(to).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::join!(pump(cr, sw, up), pump(sr, cw, down));
        });
    }
}
