//! Flame graphs of the sampled allocation stacks (`/proc/kmlink/stacks`):
//! the folded lines of [`kmlink_procview::Stacks::folded`] drawn as an
//! interactive SVG by `inferno` (the Rust port of flamegraph.pl).

use kmlink_procview::Stacks;

use crate::Error;

/// What the graph's widths count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// Sampled allocations.
    Allocs,
    /// Their bytes allocated.
    Bytes,
}

/// The SVG of `stacks`, frames reduced to functions. Fails with
/// [`Error::NoStacks`] when nothing was sampled (an empty graph says
/// nothing).
pub fn svg(stacks: &Stacks, weight: Weight, title: &str) -> Result<Vec<u8>, Error> {
    let folded = stacks.folded(weight == Weight::Bytes, false);
    if folded.is_empty() {
        return Err(Error::NoStacks);
    }
    let mut opts = inferno::flamegraph::Options::default();
    opts.title = title.to_string();
    opts.count_name = match weight {
        Weight::Allocs => "sampled allocations".to_string(),
        Weight::Bytes => "bytes (sampled)".to_string(),
    };
    opts.subtitle = Some(format!(
        "kmlink: 1 in {} slab allocations sampled; {} stacks",
        stacks.sample_every,
        stacks.stacks.len()
    ));
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut opts, folded.lines(), &mut out)
        .map_err(|error| Error::Flame { error })?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn draws_the_frames_and_refuses_nothing() {
        let s = kmlink_procview::parse_stacks(
            "# stacks: sample_every 8 slots 2048 depth 32 sampled 3 dropped 0 available 1\n\
             \n\
             stack 1 allocs 3 bytes 96 frames 3\n \
             __kmalloc_noprof+0x2a9/0x420\n \
             seq_read_iter+0x11c/0x4b0\n \
             do_syscall_64+0x82/0x190\n",
        )
        .unwrap();
        let svg = String::from_utf8(svg(&s, Weight::Allocs, "t").unwrap()).unwrap();
        assert!(svg.starts_with("<?xml"), "{svg}");
        for f in [
            "__kmalloc_noprof",
            "seq_read_iter",
            "do_syscall_64",
            "1 in 8",
        ] {
            assert!(svg.contains(f), "{f} missing");
        }
        let empty = kmlink_procview::parse_stacks("# stacks: sample_every 8\n").unwrap();
        assert!(matches!(svg_err(&empty), Error::NoStacks));
    }

    fn svg_err(s: &Stacks) -> Error {
        svg(s, Weight::Bytes, "t").unwrap_err()
    }
}
