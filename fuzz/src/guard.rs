//! What a fuzzing process needs beyond `catch_unwind`: an address-space
//! limit (an allocation that fails aborts), a handler that saves the input
//! being run when the process dies of a signal (abort, segfault), and a
//! watchdog that saves it and exits when one execution runs too long.
#![allow(unsafe_code)] // setrlimit, sigaction and an async-signal-safe write

use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static CUR_PTR: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static CUR_LEN: AtomicUsize = AtomicUsize::new(0);
static CRASH_PATH: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());
static EXEC: AtomicU64 = AtomicU64::new(0);

/// Limit the process's address space to `bytes` (allocations beyond fail).
pub fn limit_memory(bytes: u64) -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: plain system call on a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

extern "C" fn on_fatal(sig: libc::c_int) {
    // Only async-signal-safe calls: open, write, close, _exit.
    let path = CRASH_PATH.load(Ordering::SeqCst);
    let ptr = CUR_PTR.load(Ordering::SeqCst);
    let len = CUR_LEN.load(Ordering::SeqCst);
    if !path.is_null() && !ptr.is_null() {
        // SAFETY: `path` is a leaked CString; `ptr..len` is the input being
        // run, alive while its execution is under way (we are inside it).
        unsafe {
            let fd = libc::open(path, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644);
            if fd >= 0 {
                libc::write(fd, ptr as *const libc::c_void, len);
                libc::close(fd);
            }
        }
    }
    // SAFETY: terminate without running anything else.
    unsafe { libc::_exit(128 + sig) };
}

/// Save the running input to `crash_file` if the process dies of SIGABRT,
/// SIGSEGV, SIGBUS, SIGILL or SIGFPE.
pub fn install_crash_handler(crash_file: &Path) -> std::io::Result<()> {
    let c = CString::new(crash_file.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::other("crash path contains NUL"))?;
    CRASH_PATH.store(c.into_raw(), Ordering::SeqCst);
    for sig in [
        libc::SIGABRT,
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
    ] {
        // SAFETY: installing a handler that only makes async-signal-safe
        // calls; the sigaction struct is zeroed then filled.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_fatal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_ONSTACK;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    Ok(())
}

/// Mark `input` as the one being run (for the crash handler and watchdog).
pub fn begin(input: &[u8]) {
    CUR_PTR.store(input.as_ptr() as *mut u8, Ordering::SeqCst);
    CUR_LEN.store(input.len(), Ordering::SeqCst);
    EXEC.fetch_add(1, Ordering::SeqCst);
}

/// No input is being run any more.
pub fn end() {
    CUR_PTR.store(std::ptr::null_mut(), Ordering::SeqCst);
    CUR_LEN.store(0, Ordering::SeqCst);
    EXEC.fetch_add(1, Ordering::SeqCst);
}

/// Start a thread that, when one execution lasts longer than `limit`,
/// writes the input being run to `hang_file` and exits with status 3.
pub fn start_watchdog(limit: Duration, hang_file: std::path::PathBuf) {
    std::thread::spawn(move || {
        let mut last = EXEC.load(Ordering::SeqCst);
        let mut since = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let now = EXEC.load(Ordering::SeqCst);
            if now != last {
                last = now;
                since = Instant::now();
                continue;
            }
            let ptr = CUR_PTR.load(Ordering::SeqCst);
            if !ptr.is_null() && since.elapsed() > limit {
                let len = CUR_LEN.load(Ordering::SeqCst);
                // SAFETY: the execution of this input has not ended (the
                // counter did not move), so its buffer is alive.
                let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
                let _ = std::fs::write(&hang_file, bytes);
                eprintln!(
                    "kmlink-fuzz: one execution ran over {}s; input saved to {}",
                    limit.as_secs(),
                    hang_file.display()
                );
                std::process::exit(3);
            }
        }
    });
}
