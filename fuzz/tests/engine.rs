//! The engine finds a planted panic, saves its input and keeps inputs
//! within the target's bound (its own binary: it silences the panic hook).
#![allow(clippy::unwrap_used)]

use kmlink_fuzz::engine::{self, Budget, Dirs};
use kmlink_fuzz::Target;

fn planted(data: &[u8]) {
    if data.windows(2).any(|w| w == b"!!") {
        panic!("planted");
    }
}

fn planted_seeds() -> Vec<Vec<u8>> {
    vec![b"a!b".to_vec()]
}

#[test]
fn engine_reports_a_planted_panic_and_respects_max_len() {
    let t = Target {
        name: "planted",
        what: "test",
        run: planted,
        seeds: planted_seeds,
        max_len: 64,
    };
    engine::silence_panics();
    let root = tempfile_dir();
    let out = engine::fuzz(
        &t,
        &Dirs::new(&root, "planted"),
        Budget::Execs(50_000),
        7,
        &[],
    );
    let _ = std::panic::take_hook();
    assert!(out.execs >= 50_000);
    assert_eq!(out.findings.len(), 1, "{:?}", out.findings);
    let saved = std::fs::read(&out.findings[0].1).unwrap();
    assert!(saved.windows(2).any(|w| w == b"!!"));
    let mut rng = engine::Rng::new(1);
    let mut buf = vec![0u8; 10];
    for _ in 0..10_000 {
        engine::mutate(&mut rng, &mut buf, b"0123456789", 64);
        assert!(buf.len() <= 64);
    }
    let _ = std::fs::remove_dir_all(&root);
}

fn tempfile_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("kmlink-fuzz-engine-{}", std::process::id()))
}
