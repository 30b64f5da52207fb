//! The byte stream under an IMAP session: plain TCP or TLS, with connect timeouts and STARTTLS.
//!
//! One enum instead of boxed trait objects keeps the type concrete for async-imap's `Client<T>`
//! and lets the raw layer buffer reads and writes itself.

use crate::config::{Security, ServerConfig};
use crate::error::{Error, Retry, Scope};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufStream, ReadBuf,
};
use tokio::net::TcpStream;

/// Stream buffer sizes. Small on purpose: every connection of every parallel user holds them,
/// and message literals larger than a buffer bypass it (read_exact / write_all of a body go
/// straight to the socket), so bigger buffers only cost memory.
const BUF_READ: usize = 16 * 1024;
const BUF_WRITE: usize = 16 * 1024;

/// Plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<async_native_tls::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The buffered stream handed to async-imap and then to the raw layer.
pub type Buffered = BufStream<Stream>;

fn account_err(server: &ServerConfig, retry: Retry, what: String) -> Error {
    Error::new(
        Scope::Account,
        retry,
        format!(
            "{} server {}:{}: {what}",
            server.side, server.host, server.port
        ),
    )
}

/// Connects, performs TLS or STARTTLS as configured. For `Plain` and `Tls` the greeting is
/// still unread (`None`); for `Starttls` it was read before the upgrade and is returned.
pub async fn connect(server: &ServerConfig) -> Result<(Buffered, Option<String>), Error> {
    let addr = (server.host.as_str(), server.port);
    let tcp = match tokio::time::timeout(server.timeout, TcpStream::connect(addr)).await {
        Err(_) => {
            return Err(account_err(
                server,
                Retry::Transient,
                format!(
                    "no answer within {}s (check host, port and firewall)",
                    server.timeout.as_secs()
                ),
            ))
        }
        Ok(Err(e)) => {
            let text = e.to_string();
            let (retry, fix) = match e.kind() {
                std::io::ErrorKind::ConnectionRefused => (
                    Retry::Transient,
                    "connection refused: is the IMAP server running on that port?".to_string(),
                ),
                _ if text.contains("lookup") || text.contains("resolve") => (
                    Retry::Fix,
                    format!(
                        "cannot resolve the host name \"{}\": check [{}].host",
                        server.host, server.side
                    ),
                ),
                _ => (
                    Retry::Transient,
                    "cannot connect: check host, port and network".to_string(),
                ),
            };
            return Err(account_err(server, retry, format!("{fix} ({e})")));
        }
        Ok(Ok(s)) => s,
    };
    tcp.set_nodelay(true).ok();
    match server.security {
        Security::Plain => Ok((
            BufStream::with_capacity(BUF_READ, BUF_WRITE, Stream::Plain(tcp)),
            None,
        )),
        Security::Tls => {
            let tls = tls_handshake(server, tcp).await?;
            Ok((
                BufStream::with_capacity(BUF_READ, BUF_WRITE, Stream::Tls(Box::new(tls))),
                None,
            ))
        }
        Security::Starttls => {
            let mut plain = BufReader::new(tcp);
            let t = server.timeout;
            let mut line = Vec::new();
            read_line(&mut plain, &mut line, t, server).await?;
            if !line.starts_with(b"* OK") {
                return Err(account_err(
                    server,
                    Retry::Transient,
                    format!(
                        "unexpected greeting {:?}",
                        String::from_utf8_lossy(&line).trim_end()
                    ),
                ));
            }
            let greeting = String::from_utf8_lossy(&line).trim_end().to_string();
            io(server, plain.write_all(b"S0 STARTTLS\r\n").await)?;
            io(server, plain.flush().await)?;
            loop {
                line.clear();
                read_line(&mut plain, &mut line, t, server).await?;
                if line.starts_with(b"S0 ") {
                    break;
                }
            }
            if !line[3..].to_ascii_uppercase().starts_with(b"OK") {
                return Err(account_err(
                    server,
                    Retry::Fix,
                    format!(
                        "STARTTLS refused: {} (use security = \"tls\" on port 993, or \"plain\" only on a trusted network)",
                        String::from_utf8_lossy(&line[3..]).trim_end()
                    ),
                ));
            }
            if !plain.buffer().is_empty() {
                return Err(account_err(
                    server,
                    Retry::Fix,
                    "server sent data after STARTTLS OK (possible injection attack); refusing"
                        .into(),
                ));
            }
            let tcp = plain.into_inner();
            let tls = tls_handshake(server, tcp).await?;
            Ok((
                BufStream::with_capacity(BUF_READ, BUF_WRITE, Stream::Tls(Box::new(tls))),
                Some(greeting),
            ))
        }
    }
}

fn io<T>(server: &ServerConfig, r: std::io::Result<T>) -> Result<T, Error> {
    r.map_err(|e| account_err(server, Retry::Transient, format!("connection lost: {e}")))
}

async fn read_line(
    s: &mut BufReader<TcpStream>,
    line: &mut Vec<u8>,
    t: std::time::Duration,
    server: &ServerConfig,
) -> Result<(), Error> {
    match tokio::time::timeout(t, s.read_until(b'\n', line)).await {
        Err(_) => Err(account_err(
            server,
            Retry::Transient,
            "timed out waiting for the server".into(),
        )),
        Ok(Err(e)) => Err(account_err(
            server,
            Retry::Transient,
            format!("connection lost: {e}"),
        )),
        Ok(Ok(0)) => Err(account_err(
            server,
            Retry::Transient,
            "server closed the connection".into(),
        )),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Reads a `ca_file`: every `BEGIN CERTIFICATE` block of a PEM file, each checked to parse.
/// The error says what is wrong with the file and how to make one.
pub fn read_ca_file(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&text);
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = text.as_ref();
    while let Some(b) = rest.find(BEGIN) {
        let Some(e) = rest[b..].find(END) else {
            return Err(format!(
                "{}: certificate {} has no END CERTIFICATE line (the file is cut short?)",
                path.display(),
                blocks.len() + 1
            ));
        };
        let block = &rest[b..b + e + END.len()];
        async_native_tls::Certificate::from_pem(block.as_bytes()).map_err(|err| {
            format!(
                "{}: certificate {} does not parse: {err}",
                path.display(),
                blocks.len() + 1
            )
        })?;
        blocks.push(format!("{block}\n"));
        rest = &rest[b + e + END.len()..];
    }
    if blocks.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the CA's certificate, \
             or the server's own (openssl s_client -connect HOST:993 -showcerts)",
            path.display()
        ));
    }
    Ok(blocks)
}

/// `accept_invalid_certs` is said once per side and process, at the first TLS connection.
static UNCHECKED_WARNED: [AtomicBool; 2] = [AtomicBool::new(false), AtomicBool::new(false)];

fn warn_unchecked(server: &ServerConfig) {
    let i = usize::from(server.side == "new");
    if !UNCHECKED_WARNED[i].swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "[{side}] accept_invalid_certs = true: the certificate of {}:{} is not checked (issuer, \
             expiry, name), so anyone on the network path could read the passwords and the mail; \
             use it only on a network you trust, or trust the server's CA with [{side}].ca_file",
            server.host,
            server.port,
            side = server.side
        );
    }
}

/// What a refused certificate means and how to fix it, from the verification result the TLS
/// library names (OpenSSL's texts; `self signed` is OpenSSL 1.1's spelling).
fn certificate_problem(text: &str) -> Option<&'static str> {
    let t = text.to_ascii_lowercase();
    let table: &[(&[&str], &str)] = &[
        (
            &["self-signed certificate in certificate chain", "self signed certificate in certificate chain"],
            "the certificate chain ends in a CA this host does not trust",
        ),
        (
            &["self-signed certificate", "self signed certificate"],
            "the certificate is self-signed",
        ),
        (&["certificate has expired"], "the certificate has expired"),
        (&["certificate is not yet valid"], "the certificate is not valid yet (check both clocks)"),
        (
            &["hostname mismatch", "ip address mismatch"],
            "the certificate is for another name than the configured host",
        ),
        (
            &["unable to get local issuer certificate", "unable to get issuer certificate"],
            "the certificate is issued by a CA this host does not trust (or the server sends no intermediate certificate)",
        ),
        (&["certificate revoked"], "the certificate is revoked"),
        (&["certificate verify failed"], "the certificate could not be verified"),
    ];
    table
        .iter()
        .find(|(needles, _)| needles.iter().any(|n| t.contains(n)))
        .map(|(_, what)| *what)
}

async fn tls_handshake(
    server: &ServerConfig,
    tcp: TcpStream,
) -> Result<async_native_tls::TlsStream<TcpStream>, Error> {
    let mut connector = async_native_tls::TlsConnector::new()
        .danger_accept_invalid_certs(server.accept_invalid_certs)
        .danger_accept_invalid_hostnames(server.accept_invalid_certs);
    if server.accept_invalid_certs {
        warn_unchecked(server);
    }
    for pem in server.ca.iter().flat_map(|ca| ca.pem.iter()) {
        // Parsed once already when the configuration was loaded.
        if let Ok(c) = async_native_tls::Certificate::from_pem(pem.as_bytes()) {
            connector = connector.add_root_certificate(c);
        }
    }
    match tokio::time::timeout(server.timeout, connector.connect(server.host.as_str(), tcp)).await {
        Err(_) => Err(account_err(
            server,
            Retry::Transient,
            "TLS handshake timed out".into(),
        )),
        Ok(Err(e)) => {
            let text = e.to_string();
            let side = server.side;
            let trusted = match &server.ca {
                Some(ca) => format!(
                    "; the certificates of [{side}].ca_file ({}) do not vouch for it",
                    ca.path.display()
                ),
                None => String::new(),
            };
            let what = match certificate_problem(&text) {
                Some(problem) => format!(
                    "TLS certificate refused: {problem} ({text}){trusted}; fix: give the server a \
                     certificate for \"{}\" from a CA this host trusts, or trust its CA (or \
                     the certificate itself) with [{side}].ca_file = \"ca.pem\", or, on a \
                     network you trust only, set [{side}].accept_invalid_certs = true",
                    server.host
                ),
                None => format!(
                    "TLS handshake failed: {text} (is it a TLS port? security = \"tls\" is \
                     port 993, \"starttls\" port 143)"
                ),
            };
            Err(account_err(server, Retry::Fix, what))
        }
        Ok(Ok(s)) => Ok(s),
    }
}
