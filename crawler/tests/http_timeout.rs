//! Issue #16, item 5: the HTTP timeout bounds the whole transfer, not only
//! connecting and each read: a server trickling a byte at a time cannot
//! hold a request past its deadline.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use kmlink_crawler::Http;

/// A server answering every request with an endless body, one byte every
/// 50 ms (each read succeeds well within any per-read timeout).
fn trickler() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let mut req = [0u8; 4096];
                let _ = c.read(&mut req);
                let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n");
                for _ in 0..100_000 {
                    if c.write_all(b"x").is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
    });
    format!("http://{addr}/slow")
}

#[test]
fn a_trickling_server_cannot_hold_a_request_past_its_deadline() {
    let url = trickler();
    let http = Http::new()
        .unwrap()
        .with_total_timeout(Duration::from_secs(2));
    let t = Instant::now();
    let e = http.get_bytes(&url, 1 << 10).expect_err("endless body");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "held for {:?}: {e}",
        t.elapsed()
    );
    let t = Instant::now();
    let (mut resp, _) = http.get_from(&url, 0, 1000).unwrap();
    let mut buf = Vec::new();
    let r = resp.read_to_end(&mut buf);
    assert!(r.is_err(), "read {} bytes without error", buf.len());
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "held for {:?}",
        t.elapsed()
    );
}
