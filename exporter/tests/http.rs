//! The `/metrics` endpoint over a real socket: the metrics for GET, 404 and
//! 405 for anything else, and a request head that never ends is cut off.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use kmlink_exporter::http::{Server, MAX_REQUEST_HEAD};
use kmlink_exporter::Options;
use kmlink_procview::ProcSource;

/// Sends `request` to a fresh server and returns the whole answer.
fn exchange(request: &[u8]) -> String {
    let source =
        ProcSource::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kprobe"));
    let server = Server::bind("127.0.0.1:0", source, Options::default()).unwrap();
    let addr = server.local_addr().unwrap();
    let t = std::thread::spawn(move || server.serve_one());
    let mut s = TcpStream::connect(addr).unwrap();
    // The server may answer (and close) before reading all of a long request.
    let _ = s.write_all(request);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    t.join().unwrap();
    out
}

#[test]
fn get_metrics_negotiates_the_format() {
    let r = exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(r.contains("Content-Type: text/plain; version=0.0.4"), "{r}");
    assert!(r.contains("\r\n\r\n# HELP kmlink_monitor_loaded"), "{r}");
    let (head, body) = r.split_once("\r\n\r\n").unwrap();
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", body.len())),
        "{head}"
    );

    let r = exchange(
        b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n",
    );
    assert!(
        r.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{r}"
    );
    assert!(r.ends_with("# EOF\n"), "{r}");
}

#[test]
fn only_get_metrics() {
    for (req, status) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], "404"),
        (b"GET /metricsx HTTP/1.0\r\n\r\n", "404"),
        (
            b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            "405",
        ),
        (b"HEAD /metrics HTTP/1.1\r\n\r\n", "405"),
        (b"hello\r\n\r\n", "400"),
    ] {
        let r = exchange(req);
        assert!(
            r.starts_with(&format!("HTTP/1.1 {status} ")),
            "{}: {r}",
            String::from_utf8_lossy(req)
        );
        assert!(!r.contains("kmlink_"), "{r}");
    }
}

#[test]
fn an_endless_request_head_is_refused() {
    let mut req = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    req.resize(MAX_REQUEST_HEAD * 3, b'a');
    let r = exchange(&req);
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
}

#[test]
fn a_silent_client_is_dropped_and_the_next_one_served() {
    let source =
        ProcSource::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kprobe"));
    let mut server = Server::bind("127.0.0.1:0", source, Options::default()).unwrap();
    server.set_timeout(std::time::Duration::from_millis(200));
    let addr = server.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        server.serve_one();
        server.serve_one();
    });
    let started = std::time::Instant::now();
    // Connects and says nothing: the server gives up on it.
    let mut silent = TcpStream::connect(addr).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    let mut rest = Vec::new();
    assert_eq!(
        silent.read_to_end(&mut rest).unwrap_or(0),
        0,
        "nothing for the silent one"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    t.join().unwrap();
}
