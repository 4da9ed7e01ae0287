//! A deliberately small HTTP/1.x server for `GET /metrics`: one request per
//! connection, handled one connection at a time (a scrape reads one /proc
//! file), with a bounded request head and read/write timeouts so a slow or
//! hostile client holds the listener for at most [`IO_TIMEOUT`].
//! Anything but `GET /metrics` (`HEAD` too) is answered 404 or 405.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use kmlink_procview::ProcSource;

use crate::{scrape, Error, Format, Options};

/// The longest request head read (request line and headers).
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// How long one connection may take to send its request or read the
/// answer, unless [`Server::set_timeout`] says otherwise.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The exporter's HTTP endpoint.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    source: ProcSource,
    options: Options,
    timeout: Duration,
}

impl Server {
    /// Binds `addr` (`HOST:PORT`; port 0 picks a free one).
    pub fn bind(addr: &str, source: ProcSource, options: Options) -> Result<Self, Error> {
        let listener = TcpListener::bind(addr).map_err(|error| Error::Listen {
            addr: addr.to_string(),
            error,
        })?;
        Ok(Server {
            listener,
            source,
            options,
            timeout: IO_TIMEOUT,
        })
    }

    /// Per-connection read and write timeout (not zero).
    pub fn set_timeout(&mut self, timeout: Duration) {
        if !timeout.is_zero() {
            self.timeout = timeout;
        }
    }

    /// The address bound (the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the process ends. A connection that fails is logged and
    /// dropped; the listener goes on.
    pub fn run(&self) -> ! {
        loop {
            self.serve_one();
        }
    }

    /// Accepts and answers one connection.
    pub fn serve_one(&self) {
        match self.listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = self.handle(stream) {
                    log::info!("metrics request from {peer}: {e}");
                }
            }
            Err(e) => {
                log::warn!("accepting a metrics connection: {e}");
                // Out of descriptors and the like: do not spin.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    fn handle(&self, mut stream: TcpStream) -> io::Result<()> {
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let head = match read_head(&mut stream)? {
            Some(h) => h,
            None => return respond(&mut stream, 431, "text/plain", b"request head too large\n"),
        };
        let Some(req) = Request::parse(&head) else {
            return respond(&mut stream, 400, "text/plain", b"bad request\n");
        };
        if req.path != "/metrics" {
            return respond(&mut stream, 404, "text/plain", b"not found: try /metrics\n");
        }
        if req.method != "GET" {
            return respond(&mut stream, 405, "text/plain", b"only GET\n");
        }
        let format = Format::negotiate(req.accept.as_deref());
        match scrape(&self.source, self.options, format) {
            Ok(body) => respond(&mut stream, 200, format.content_type(), body.as_bytes()),
            Err(e) => {
                let body = format!("{}\n", kmlink_errors::Chain(&e));
                log::warn!("scrape failed: {}", body.trim_end());
                respond(&mut stream, 500, "text/plain", body.as_bytes())
            }
        }
    }
}

/// Reads until the blank line ending the head; `None` when it does not
/// fit in [`MAX_REQUEST_HEAD`]. A body, if any, is not read.
fn read_head(stream: &mut impl Read) -> io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_end(&buf) {
            buf.truncate(end);
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() >= MAX_REQUEST_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the end of the request head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n"))
}

#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    accept: Option<String>,
}

impl Request {
    fn parse(head: &str) -> Option<Request> {
        let mut lines = head.lines();
        let mut parts = lines.next()?.split_ascii_whitespace();
        let method = parts.next()?.to_string();
        let target = parts.next()?;
        if !parts.next()?.starts_with("HTTP/1.") || parts.next().is_some() {
            return None;
        }
        let path = target
            .split(['?', '#'])
            .next()
            .unwrap_or(target)
            .to_string();
        let accept = lines.find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("accept")
                .then(|| v.trim().to_string())
        });
        Some(Request {
            method,
            path,
            accept,
        })
    }
}

fn respond(
    stream: &mut impl Write,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    };
    let allow = if status == 405 { "Allow: GET\r\n" } else { "" };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let r = Request::parse("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nACCEPT: application/openmetrics-text;version=1.0.0\r\n").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/metrics");
        assert_eq!(Format::negotiate(r.accept.as_deref()), Format::OpenMetrics);
        let r = Request::parse("HEAD / HTTP/1.0").unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.accept),
            ("HEAD", "/", None)
        );
        for bad in [
            "",
            "GET",
            "GET /metrics",
            "GET /metrics SPDY/3",
            "GET /metrics HTTP/1.1 x",
        ] {
            assert_eq!(Request::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn head_is_bounded() {
        let mut long = io::Cursor::new(vec![b'a'; MAX_REQUEST_HEAD * 4]);
        assert_eq!(read_head(&mut long).unwrap(), None);
        let mut ok = io::Cursor::new(b"GET /metrics HTTP/1.1\r\n\r\nbody".to_vec());
        assert_eq!(
            read_head(&mut ok).unwrap().unwrap(),
            "GET /metrics HTTP/1.1"
        );
        let mut cut = io::Cursor::new(b"GET /metrics HTTP/1.1\r\n".to_vec());
        assert!(read_head(&mut cut).is_err());
    }
}
