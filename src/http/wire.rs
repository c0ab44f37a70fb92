//! The bytes a connection reads before actix-http parses them. actix-http answers a
//! request line it cannot take (a path over 64 KiB, a head over 128 KiB) with an empty
//! 400 or 431 before any middleware runs, so such a line is swapped here for one that is
//! still too long for [`super::guard`] but short enough to parse: the client gets the
//! contract's 414 `uri_too_long` as problem+json, with its request id, in the request
//! log and the metrics like any other refusal.
//!
//! To know where the next request line starts on a kept-alive connection the scanner
//! follows the framing (`Content-Length`); framing it does not follow (chunked bodies,
//! upgrades, heads too long to hold) makes it pass the rest of the connection through
//! untouched, leaving those to actix-http.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::guard::MAX_PATH;

/// Request lines longer than this are swapped (actix-http itself takes up to 64 KiB).
const LONGEST_LINE: usize = 2 * MAX_PATH;
/// Header blocks longer than this are left to actix-http (which refuses them).
const LONGEST_HEAD: usize = 64 * 1024;
/// What one read from the socket takes at most.
const READ_CHUNK: usize = 8 * 1024;

/// A connection whose over-long request lines are swapped before actix-http reads them.
pub struct Wire<T> {
    io: T,
    peer: Option<SocketAddr>,
    scan: Scan,
    /// Bytes scanned and ready for actix-http, from `sent` on.
    ready: Vec<u8>,
    sent: usize,
}

impl<T> Wire<T> {
    pub fn new(io: T, peer: Option<SocketAddr>) -> Self {
        Self {
            io,
            peer,
            scan: Scan::RequestLine(Vec::new()),
            ready: Vec::new(),
            sent: 0,
        }
    }

    /// The socket peer (not the client a trusted proxy speaks for).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }
}

#[derive(Debug)]
enum Scan {
    /// Within a request line: its bytes are held until it ends or proves too long.
    RequestLine(Vec<u8>),
    /// Skipping a request line that proved too long, up to its end; what is kept of it
    /// are its method and its last bytes (the HTTP version).
    Skipping { method: Vec<u8>, tail: Vec<u8> },
    /// Within the header block, kept to learn how long the body is.
    Headers(Vec<u8>),
    /// Within a body: bytes still to come.
    Body(u64),
    /// Framing this scanner does not follow: the rest passes through.
    Opaque,
}

impl Scan {
    /// Scans `input`, appending what actix-http is to read to `out`.
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            input = match self {
                Scan::Opaque => {
                    out.extend_from_slice(input);
                    &[]
                }
                Scan::Body(_) => self.body(input, out),
                Scan::RequestLine(_) => self.request_line(input, out),
                Scan::Skipping { .. } => self.skipping(input, out),
                Scan::Headers(_) => self.headers(input, out),
            };
        }
    }

    fn body<'a>(&mut self, input: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
        let Scan::Body(left) = self else {
            unreachable!()
        };
        let n = usize::try_from(*left)
            .unwrap_or(usize::MAX)
            .min(input.len());
        out.extend_from_slice(&input[..n]);
        *left -= n as u64;
        if *left == 0 {
            *self = Scan::RequestLine(Vec::new());
        }
        &input[n..]
    }

    fn request_line<'a>(&mut self, input: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
        let Scan::RequestLine(held) = self else {
            unreachable!()
        };
        let Some(end) = line_end(input) else {
            held.extend_from_slice(input);
            if held.len() > LONGEST_LINE {
                let tail = held[held.len() - 16..].to_vec();
                *self = Scan::Skipping {
                    method: method(held),
                    tail,
                };
            }
            return &[];
        };
        held.extend_from_slice(&input[..=end]);
        let line = std::mem::take(held);
        if line.len() > LONGEST_LINE {
            out.extend(replacement(&method(&line), &line));
        } else {
            out.extend_from_slice(&line);
        }
        // Empty lines before a request line are allowed (RFC 9112 §2.2).
        if line.iter().any(|b| !b.is_ascii_whitespace()) {
            *self = Scan::Headers(Vec::new());
        }
        &input[end + 1..]
    }

    fn skipping<'a>(&mut self, input: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
        let Scan::Skipping { method, tail } = self else {
            unreachable!()
        };
        let end = line_end(input);
        let upto = end.map_or(input.len(), |end| end + 1);
        tail.extend_from_slice(&input[..upto]);
        tail.drain(..tail.len().saturating_sub(16));
        if end.is_some() {
            out.extend(replacement(method, tail));
            *self = Scan::Headers(Vec::new());
        }
        &input[upto..]
    }

    fn headers<'a>(&mut self, input: &'a [u8], out: &mut Vec<u8>) -> &'a [u8] {
        let Scan::Headers(block) = self else {
            unreachable!()
        };
        let end = line_end(input);
        let upto = end.map_or(input.len(), |end| end + 1);
        let line_start = block.len();
        block.extend_from_slice(&input[..upto]);
        out.extend_from_slice(&input[..upto]);
        if block.len() > LONGEST_HEAD {
            *self = Scan::Opaque;
        } else if end.is_some() {
            // The line just ended started after the previous line feed.
            let start = block[..line_start]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            if matches!(&block[start..], b"\n" | b"\r\n") {
                *self = framing(block);
            }
        }
        &input[upto..]
    }

    /// The bytes held back, released as they were (at the end of the stream).
    fn release(&mut self, out: &mut Vec<u8>) {
        if let Scan::RequestLine(held) = self {
            out.append(held);
        }
    }
}

fn line_end(input: &[u8]) -> Option<usize> {
    input.iter().position(|&b| b == b'\n')
}

/// The request line's method, if it looks like one (else `GET`).
fn method(line: &[u8]) -> Vec<u8> {
    let token = line.split(|&b| b == b' ').next().unwrap_or_default();
    if (1..=16).contains(&token.len()) && token.iter().all(u8::is_ascii_alphabetic) {
        token.to_vec()
    } else {
        b"GET".to_vec()
    }
}

/// A request line with the same method and version whose path the guard refuses (414).
fn replacement(method: &[u8], line_end: &[u8]) -> Vec<u8> {
    let trimmed = line_end.trim_ascii_end();
    let version: &[u8] = if trimmed.ends_with(b" HTTP/1.0") {
        b"HTTP/1.0"
    } else {
        b"HTTP/1.1"
    };
    let mut line = method.to_vec();
    line.extend_from_slice(b" /");
    line.extend(std::iter::repeat_n(b'x', MAX_PATH));
    line.push(b' ');
    line.extend_from_slice(version);
    line.extend_from_slice(b"\r\n");
    line
}

/// What follows a complete header block: a body of known length, the next request, or
/// framing left to actix-http.
fn framing(block: &[u8]) -> Scan {
    let mut length: Option<u64> = None;
    for line in block.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"transfer-encoding") || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Scan::Opaque;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let parsed = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
            match (parsed, length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(seen)) if n == seen => {}
                _ => return Scan::Opaque,
            }
        }
    }
    match length {
        Some(n) if n > 0 => Scan::Body(n),
        _ => Scan::RequestLine(Vec::new()),
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Wire<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.sent < this.ready.len() {
                let n = (this.ready.len() - this.sent).min(buf.remaining());
                buf.put_slice(&this.ready[this.sent..this.sent + n]);
                this.sent += n;
                if this.sent == this.ready.len() {
                    this.ready.clear();
                    this.sent = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if matches!(this.scan, Scan::Opaque) {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut raw = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut raw))?;
            if raw.filled().is_empty() {
                // The end of the stream: what was held goes on as it came.
                this.scan.release(&mut this.ready);
                if this.ready.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.scan.feed(raw.filled(), &mut this.ready);
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Wire<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The socket this server reads through [`Wire`].
pub type Connection = Wire<actix_web::rt::net::TcpStream>;

/// What `actix_web::HttpServer::listen` builds, with each connection read through
/// [`Wire`] (HttpServer takes no stream but the socket itself). The app's
/// [`AppConfig`](actix_web::dev::AppConfig) is the default one: this service never
/// builds URLs from it.
pub fn serve<F, T, B>(
    listener: std::net::TcpListener,
    app: F,
    on_connect: impl Fn(&Connection, &mut actix_web::dev::Extensions) + Clone + Send + 'static,
) -> io::Result<actix_server::ServerBuilder>
where
    F: Fn() -> actix_web::App<T> + Clone + Send + 'static,
    T: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Response = actix_web::dev::ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: actix_web::body::MessageBody + 'static,
{
    use actix_service::{fn_service, map_config, ServiceFactoryExt};
    let addr = listener.local_addr()?;
    let builder = actix_server::Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    builder.listen("roampay", listener, move || {
        let shutdown = shutdown.clone();
        let http = actix_http::HttpService::build()
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
            .client_disconnect_timeout(std::time::Duration::from_secs(1))
            .local_addr(addr)
            .on_connect_ext(on_connect.clone())
            .finish(map_config(app(), |_| actix_web::dev::AppConfig::default()));
        fn_service(|io: actix_web::rt::net::TcpStream| async move {
            let peer = io.peer_addr().ok();
            Ok((Wire::new(io, peer), actix_http::Protocol::Http1, peer))
        })
        .and_then(http)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan(chunks: &[&[u8]]) -> Vec<u8> {
        let mut scan = Scan::RequestLine(Vec::new());
        let mut out = Vec::new();
        for chunk in chunks {
            scan.feed(chunk, &mut out);
        }
        scan.release(&mut out);
        out
    }

    fn request(path: &str, body: &str) -> Vec<u8> {
        format!(
            "POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn an_overlong_request_line_becomes_one_the_guard_refuses() {
        let long = format!("/{}", "a".repeat(100_000));
        let input = [request(&long, "{}"), request("/next", "{\"a\":1}")].concat();
        let out = scan(&[&input]);
        let expected = [
            format!(
                "POST /{} HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{{}}",
                "x".repeat(MAX_PATH)
            )
            .into_bytes(),
            request("/next", "{\"a\":1}"),
        ]
        .concat();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }

    #[test]
    fn a_body_line_as_long_as_a_path_is_left_alone() {
        let body = "b".repeat(3 * LONGEST_LINE);
        let input = [request("/a", &body), request("/b", "")].concat();
        assert_eq!(scan(&[&input]), input);
    }

    #[test]
    fn chunked_bodies_are_passed_through() {
        let input = format!(
            "POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}\r\n",
            "c".repeat(3 * LONGEST_LINE)
        );
        assert_eq!(scan(&[input.as_bytes()]), input.as_bytes());
    }

    #[test]
    fn the_version_and_method_are_kept() {
        let input = format!("HEAD /{} HTTP/1.0\r\n\r\n", "a".repeat(70_000));
        let out = String::from_utf8(scan(&[input.as_bytes()])).unwrap();
        assert_eq!(
            out,
            format!("HEAD /{} HTTP/1.0\r\n\r\n", "x".repeat(MAX_PATH))
        );
    }

    proptest! {
        /// However the bytes are split, requests of sane length pass unchanged, and an
        /// over-long line is swapped the same way.
        #[test]
        fn splits_do_not_matter(
            bodies in proptest::collection::vec("[a-z\n]{0,300}", 1..4),
            long in 0usize..3,
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut input = Vec::new();
            for (i, body) in bodies.iter().enumerate() {
                let path = if i == long { format!("/{}", "p".repeat(LONGEST_LINE)) } else { format!("/r{i}") };
                input.extend(request(&path, body));
            }
            let whole = scan(&[&input]);
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            at.sort_unstable();
            let mut pieces = Vec::new();
            let mut from = 0;
            for to in at {
                pieces.push(&input[from..to]);
                from = to;
            }
            pieces.push(&input[from..]);
            prop_assert_eq!(scan(&pieces), whole.clone());
            if long >= bodies.len() {
                prop_assert_eq!(whole, input);
            }
        }

        /// Any bytes, however split: no panic, the same output, and nothing but an
        /// over-long request line is ever changed (`make fuzz` runs it long).
        #[test]
        fn fuzz_the_scanner_takes_any_bytes(
            parts in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..512),
                    Just(b"\r\n\r\n".to_vec()),
                    Just(b"Content-Length: 7\r\n".to_vec()),
                    Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
                    (1usize..3 * LONGEST_LINE).prop_map(|n| vec![b'p'; n]),
                ],
                0..8,
            ),
            cut in any::<prop::sample::Index>(),
        ) {
            let input = parts.concat();
            let at = cut.index(input.len() + 1);
            let whole = scan(&[&input]);
            prop_assert_eq!(scan(&[&input[..at], &input[at..]]), whole.clone());
            let longest = input.split(|&b| b == b'\n').map(<[u8]>::len).max().unwrap_or(0);
            if longest < LONGEST_LINE {
                prop_assert_eq!(whole, input);
            }
        }
    }
}
