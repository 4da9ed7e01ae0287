//! Shared test helpers: a tiny HTTP server and `.deb` builders.
#![allow(clippy::unwrap_used, dead_code, missing_docs)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One scripted answer: status and body.
pub type Reply = (u16, Vec<u8>);

/// A bounded HTTP/1.1 server: serves scripted replies per path (the last
/// reply of a script repeats; unknown paths get 404), one request per
/// connection, and stops by itself after `max_requests` or 20 seconds.
pub struct Server {
    pub base: String,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(routes: Vec<(&str, Vec<Reply>)>, max_requests: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}/archive", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let mut routes: HashMap<String, Vec<Reply>> = routes
            .into_iter()
            .map(|(p, r)| (format!("/archive/{p}"), r))
            .collect();
        let seen = Arc::clone(&hits);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut served = 0;
            while served < max_requests && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        served += 1;
                        let _ = serve(stream, &mut routes, &seen);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server { base, hits }
    }

    pub fn hits(&self) -> usize {
        self.hits.lock().unwrap().len()
    }

    /// The request paths served so far, in order.
    pub fn paths(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

fn serve(
    mut s: TcpStream,
    routes: &mut HashMap<String, Vec<Reply>>,
    seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16384 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&req)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    let path = line.split(' ').nth(1).unwrap_or("").to_owned();
    let range_from: Option<u64> = String::from_utf8_lossy(&req)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("range").then(|| v.trim().to_owned())
        })
        .and_then(|v| v.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok());
    seen.lock().unwrap().push(match range_from {
        Some(n) => format!("{path} range={n}-"),
        None => path.clone(),
    });
    let (status, body) = match routes.get_mut(&path) {
        Some(script) if script.len() > 1 => script.remove(0),
        Some(script) => script[0].clone(),
        None => (404, b"not found".to_vec()),
    };
    let range = match (status, range_from) {
        (206, Some(n)) => format!(
            "Content-Range: bytes {n}-{}/*\r\n",
            n + (body.len() as u64).max(1) - 1
        ),
        _ => String::new(),
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n{range}Connection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(&body)?;
    s.flush()
}

/// A tar entry of a test package.
pub enum Ent<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Link(&'a str, &'a str),
}

/// A tar header with the name written raw, so tests can store the unsafe
/// paths the `tar` crate's own setters refuse.
pub fn header(name: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let raw = &mut h.as_old_mut().name;
    raw[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_mtime(0);
    h
}

pub fn tar_bytes(entries: &[Ent]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            Ent::Dir(p) => {
                let mut h = header(p, tar::EntryType::Directory, 0);
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
            Ent::File(p, data) => {
                let mut h = header(p, tar::EntryType::Regular, data.len() as u64);
                h.set_cksum();
                b.append(&h, *data).unwrap();
            }
            Ent::Link(p, target) => {
                let mut h = header(p, tar::EntryType::Symlink, 0);
                h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

pub fn compress(ext: &str, data: &[u8]) -> Vec<u8> {
    match ext {
        "xz" => {
            let mut w = xz2::write::XzEncoder::new(Vec::new(), 1);
            w.write_all(data).unwrap();
            w.finish().unwrap()
        }
        "zst" => zstd::encode_all(data, 1).unwrap(),
        "gz" => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            w.write_all(data).unwrap();
            w.finish().unwrap()
        }
        _ => data.to_vec(),
    }
}

pub fn ar_bytes(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = ar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
        h.set_mode(0o644);
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

pub const CONTROL: &str = "Package: linux-image-9.9.9-1-amd64\nVersion: 9.9.9-1\nArchitecture: amd64\nDescription: test kernel\n more lines\n";

pub fn deb_bytes(ext: &str, data: &[Ent]) -> Vec<u8> {
    deb_bytes_with_control(CONTROL, ext, data)
}

pub fn deb_bytes_with_control(control: &str, ext: &str, data: &[Ent]) -> Vec<u8> {
    let control = tar_bytes(&[Ent::Dir("./"), Ent::File("./control", control.as_bytes())]);
    ar_bytes(&[
        ("debian-binary", b"2.0\n".to_vec()),
        (&format!("control.tar.{ext}"), compress(ext, &control)),
        (&format!("data.tar.{ext}"), compress(ext, &tar_bytes(data))),
    ])
}

pub fn write_deb(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A fresh Ed25519 signing key (test only) and its public keyring bytes.
pub fn test_key(uid: &str) -> (pgp::composed::SignedSecretKey, Vec<u8>) {
    use pgp::composed::{KeyType, SecretKeyParamsBuilder, SignedPublicKey};
    use pgp::ser::Serialize;
    let params = SecretKeyParamsBuilder::default()
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id(uid.into())
        .build()
        .unwrap();
    let key = params.generate(rand::thread_rng()).unwrap();
    let public = SignedPublicKey::from(key.clone());
    (key, public.to_bytes().unwrap())
}

/// Clearsign `text` (an `InRelease`).
pub fn clearsign(key: &pgp::composed::SignedSecretKey, text: &str) -> String {
    let msg = pgp::composed::CleartextSignedMessage::sign(
        rand::thread_rng(),
        text,
        &key.primary_key,
        &pgp::types::Password::empty(),
    )
    .unwrap();
    msg.to_armored_string(Default::default()).unwrap()
}

/// SHA256 of bytes, hex.
pub fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}
