//! `LameDns`: a tiny UDP nameserver that answers every MX question WITHOUT the AA bit, as a
//! lame delegation's caching resolver or an old provider's leftover server does.
//!
//! Knot only answers authoritatively for its zones (REFUSED for others, referrals without
//! records below a cut), so it cannot play this part. This plays it on a real socket, for the
//! real binary: the MX question's header and question are echoed with QR set, AA clear, RA set,
//! one MX record `10 <exchange>` (TTL 60) in the answer. Anything not an MX question gets an
//! empty NOERROR. It runs on a thread until dropped.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct LameDns {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl LameDns {
    /// Listens on `ip:0` and answers MX questions with `exchange` (e.g. `park.example.net`).
    pub fn start(ip: &str, exchange: &str) -> LameDns {
        let sock = UdpSocket::bind((ip, 0)).expect("bind the lame nameserver");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, exchange) = (stop.clone(), exchange.to_string());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !flag.load(Ordering::SeqCst) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = answer(&buf[..n], &exchange) {
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        LameDns { addr, stop }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for LameDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The reply to one query, or `None` if it is not one.
fn answer(q: &[u8], exchange: &str) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut end = 12;
    while *q.get(end)? != 0 {
        end += 1 + usize::from(q[end]);
    }
    let qtype = u16::from_be_bytes([*q.get(end + 1)?, *q.get(end + 2)?]);
    let question = &q[12..end + 5];
    let is_mx = qtype == 15;
    let mut r = Vec::with_capacity(128);
    r.extend_from_slice(&q[0..2]); // id
    r.push(0x80 | (q[2] & 0x01)); // QR, opcode 0, AA clear, RD copied
    r.push(0x80); // RA, NOERROR
    r.extend_from_slice(&[0, 1, 0, u8::from(is_mx), 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if is_mx {
        let mut name = Vec::new();
        for label in exchange.trim_end_matches('.').split('.') {
            name.push(label.len() as u8);
            name.extend_from_slice(label.as_bytes());
        }
        name.push(0);
        r.extend_from_slice(&[0xc0, 12, 0, 15, 0, 1]); // the question's name, MX, IN
        r.extend_from_slice(&60u32.to_be_bytes());
        r.extend_from_slice(&((name.len() + 2) as u16).to_be_bytes());
        r.extend_from_slice(&10u16.to_be_bytes());
        r.extend_from_slice(&name);
    }
    Some(r)
}
