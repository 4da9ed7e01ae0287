//! Cgroup ids as paths: the monitor's `cgroup` table is keyed by the cgroup
//! v2 id, which is the inode number of the cgroup's directory in the
//! cgroup2 file system. Walking that file system (`/sys/fs/cgroup`) maps
//! ids to paths; the path says what the group is (a systemd slice or
//! service, a container).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Where cgroup2 is mounted on systemd hosts (and in kmlink's test guests).
pub const CGROUP2_ROOT: &str = "/sys/fs/cgroup";

/// Directories deeper than this are not walked (the kernel's default
/// cgroup.max.depth is unlimited; real hierarchies are a few levels deep).
const MAX_DEPTH: usize = 32;
/// At most this many cgroups are read.
const MAX_GROUPS: usize = 100_000;

/// Cgroup ids mapped to paths relative to the cgroup2 root (`/` for the
/// root itself).
#[derive(Debug, Clone, Default)]
pub struct CgroupPaths {
    by_id: BTreeMap<u64, String>,
}

impl CgroupPaths {
    /// The cgroup2 hierarchy of this host: `/sys/fs/cgroup` on unified
    /// hosts, `/sys/fs/cgroup/unified` on hybrid ones (a cgroup2 root has a
    /// `cgroup.controllers` file); empty when there is none.
    pub fn discover() -> Self {
        let base = Path::new(CGROUP2_ROOT);
        [base.to_path_buf(), base.join("unified")]
            .into_iter()
            .find(|r| r.join("cgroup.controllers").is_file())
            .map(|r| Self::walk(&r))
            .unwrap_or_default()
    }

    /// The hierarchy at `root` when given (`--cgroup-root`), else this
    /// host's ([`CgroupPaths::discover`]).
    pub fn at(root: Option<&Path>) -> Self {
        match root {
            Some(r) => Self::walk(r),
            None => Self::discover(),
        }
    }

    /// Walks the cgroup2 hierarchy at `root`. Directories that cannot be
    /// read (gone since listed, or not ours to list) are skipped: the map is
    /// a best effort, and ids it lacks stay numbers.
    pub fn walk(root: &Path) -> Self {
        let mut by_id = BTreeMap::new();
        let mut stack: Vec<(PathBuf, usize)> = vec![(root.to_path_buf(), 0)];
        let Ok(dev) = std::fs::metadata(root).map(|m| m.dev()) else {
            return CgroupPaths { by_id };
        };
        while let Some((dir, depth)) = stack.pop() {
            // One file system: inode numbers are ids only within it.
            let Ok(meta) = std::fs::metadata(&dir) else {
                continue;
            };
            if meta.dev() != dev {
                continue;
            }
            let rel = match dir.strip_prefix(root) {
                Ok(r) if r.as_os_str().is_empty() => "/".to_string(),
                Ok(r) => format!("/{}", r.to_string_lossy()),
                Err(_) => continue,
            };
            by_id.insert(meta.ino(), rel);
            if depth >= MAX_DEPTH || by_id.len() >= MAX_GROUPS {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push((e.path(), depth + 1));
                }
            }
        }
        CgroupPaths { by_id }
    }

    /// From known pairs (tests, recorded snapshots).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u64, String)>) -> Self {
        CgroupPaths {
            by_id: pairs.into_iter().collect(),
        }
    }

    /// The path of cgroup `id`, if it was found.
    pub fn path(&self, id: u64) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }

    /// How many cgroups were found.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none was found (no cgroup2 mounted there).
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// What a cgroup path says the group is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupKind {
    /// The root of the hierarchy.
    Root,
    /// A container: the runtime and the container id (short form).
    Container {
        /// `docker`, `podman`, `containerd`, `cri-o`, `kubernetes`, `lxc`.
        runtime: &'static str,
        /// The id, up to 12 characters.
        id: String,
    },
    /// A systemd unit: the last `.service`, `.scope` or `.slice` component.
    Systemd(String),
    /// Anything else: the path is all we know.
    Other,
}

/// Classifies a path from [`CgroupPaths`].
pub fn classify(path: &str) -> CgroupKind {
    if path == "/" {
        return CgroupKind::Root;
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    // Container runtimes, innermost component first.
    for (i, part) in parts.iter().enumerate().rev() {
        let stripped = part.trim_end_matches(".scope");
        for (prefix, runtime) in [
            ("docker-", "docker"),
            ("libpod-", "podman"),
            ("cri-containerd-", "containerd"),
            ("crio-", "cri-o"),
        ] {
            if let Some(id) = stripped.strip_prefix(prefix) {
                if is_hex_id(id) {
                    return container(runtime, id);
                }
            }
        }
        // cgroupfs driver: /docker/<id>, /kubepods/…/<id>, /lxc.payload.<name>.
        if i > 0 && is_hex_id(part) {
            let runtime = match parts[0] {
                "docker" => "docker",
                "machine.slice" | "libpod_parent" => "podman",
                p if p.starts_with("kubepods") => "kubernetes",
                _ => continue,
            };
            return container(runtime, part);
        }
        if let Some(name) = part.strip_prefix("lxc.payload.") {
            return CgroupKind::Container {
                runtime: "lxc",
                id: name.to_string(),
            };
        }
    }
    parts
        .iter()
        .rev()
        .find(|p| p.ends_with(".service") || p.ends_with(".scope") || p.ends_with(".slice"))
        .map_or(CgroupKind::Other, |p| CgroupKind::Systemd((*p).to_string()))
}

fn is_hex_id(s: &str) -> bool {
    s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn container(runtime: &'static str, id: &str) -> CgroupKind {
    CgroupKind::Container {
        runtime,
        id: id.chars().take(12).collect(),
    }
}

/// A short label for people: `container docker 0123456789ab`, `systemd
/// sshd.service`, `root`, or nothing.
pub fn label(path: &str) -> Option<String> {
    match classify(path) {
        CgroupKind::Root => Some("root".to_string()),
        CgroupKind::Container { runtime, id } => Some(format!("container {runtime} {id}")),
        CgroupKind::Systemd(unit) => Some(format!("systemd {unit}")),
        CgroupKind::Other => None,
    }
}

/// A cgroup's name for a column `width` characters wide: the path and its
/// label when both fit; else the path; else, for a container, its label
/// (`container docker 0123456789ab`: the path's hex id is no help); else
/// the path with its middle elided, keeping the first component and the
/// leaf (`/user.slice/…/session-3.scope`), or only the leaf (`…/leaf`);
/// else the leaf elided in its middle, keeping its start and end.
pub fn display_name(path: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthStr;
    let fits = |s: &str| s.width() <= width;
    let label = label(path).filter(|l| l != "root");
    if let Some(l) = &label {
        let full = format!("{path} ({l})");
        if fits(&full) {
            return full;
        }
    }
    if fits(path) {
        return path.to_string();
    }
    if let (Some(l), CgroupKind::Container { .. }) = (&label, classify(path)) {
        if fits(l) {
            return l.clone();
        }
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let leaf = parts.last().copied().unwrap_or(path);
    if parts.len() > 2 {
        let s = format!("/{}/…/{leaf}", parts[0]);
        if fits(&s) {
            return s;
        }
    }
    let s = format!("…/{leaf}");
    if fits(&s) {
        return s;
    }
    elide_middle(leaf, width)
}

/// `text` cut to `width` columns by replacing its middle with `…`, the end
/// (where names differ: ids, unit suffixes) kept a little longer.
fn elide_middle(text: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    if width == 0 {
        return String::new();
    }
    let keep = width - 1;
    let (head_w, tail_w) = (keep / 2, keep - keep / 2);
    let mut head = String::new();
    let mut w = 0;
    for c in text.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw > head_w {
            break;
        }
        head.push(c);
        w += cw;
    }
    let mut tail: Vec<char> = Vec::new();
    let mut w = 0;
    for c in text.chars().rev() {
        let cw = c.width().unwrap_or(0);
        if w + cw > tail_w {
            break;
        }
        tail.push(c);
        w += cw;
    }
    tail.reverse();
    format!("{head}…{}", tail.into_iter().collect::<String>())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn containers_and_units_are_recognised() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            label(&format!("/system.slice/docker-{id}.scope")).as_deref(),
            Some("container docker 0123456789ab")
        );
        assert_eq!(
            label(&format!("/docker/{id}")).as_deref(),
            Some("container docker 0123456789ab")
        );
        assert_eq!(
            label(&format!("/machine.slice/libpod-{id}.scope/container")).as_deref(),
            Some("container podman 0123456789ab")
        );
        assert_eq!(
            label(&format!(
                "/kubepods.slice/kubepods-burstable.slice/cri-containerd-{id}.scope"
            ))
            .as_deref(),
            Some("container containerd 0123456789ab")
        );
        assert_eq!(
            label("/lxc.payload.web1/init.scope").as_deref(),
            Some("container lxc web1")
        );
        assert_eq!(
            label("/system.slice/ssh.service").as_deref(),
            Some("systemd ssh.service")
        );
        assert_eq!(
            label("/user.slice/user-1000.slice/session-3.scope").as_deref(),
            Some("systemd session-3.scope")
        );
        assert_eq!(label("/").as_deref(), Some("root"));
        assert_eq!(label("/a"), None);
        // Not a hex id: a plain group under a slice is the slice's.
        assert_eq!(
            label("/system.slice/mygroup").as_deref(),
            Some("systemd system.slice")
        );
    }

    #[test]
    fn long_paths_keep_their_leaf() {
        use unicode_width::UnicodeWidthStr;
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            display_name("/system.slice/ssh.service", 60),
            "/system.slice/ssh.service (systemd ssh.service)"
        );
        assert_eq!(
            display_name("/system.slice/ssh.service", 30),
            "/system.slice/ssh.service"
        );
        assert_eq!(display_name("/", 18), "/");
        assert_eq!(
            display_name(&format!("/system.slice/docker-{id}.scope"), 30),
            "container docker 0123456789ab"
        );
        assert_eq!(
            display_name("/user.slice/user-1000.slice/session-3.scope", 30),
            "/user.slice/…/session-3.scope"
        );
        assert_eq!(
            display_name("/user.slice/user-1000.slice/session-3.scope", 18),
            "…/session-3.scope"
        );
        let long = "/workloads/batch/nightly-reindex-of-the-search-cluster";
        let s = display_name(long, 18);
        assert_eq!(s, "nightly-…h-cluster");
        for w in [1, 5, 18, 29, 40] {
            assert!(display_name(long, w).width() <= w, "{w}");
            assert!(
                display_name(&format!("/system.slice/docker-{id}.scope"), w).width() <= w,
                "{w}"
            );
        }
        assert_eq!(elide_middle("abcdef", 0), "");
    }

    #[test]
    fn walk_maps_inode_numbers_to_paths() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::create_dir_all(d.path().join("c")).unwrap();
        std::fs::write(d.path().join("a/cgroup.procs"), "").unwrap();
        let p = CgroupPaths::walk(d.path());
        assert_eq!(p.len(), 4);
        let ino = |rel: &str| std::fs::metadata(d.path().join(rel)).unwrap().ino();
        assert_eq!(p.path(ino("a/b")), Some("/a/b"));
        assert_eq!(p.path(ino("c")), Some("/c"));
        assert_eq!(p.path(ino("")), Some("/"));
        assert!(CgroupPaths::walk(&d.path().join("missing")).is_empty());
    }
}
