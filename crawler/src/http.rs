//! A thin blocking HTTP client.

use std::time::Duration;

use crate::{Error, Result};
use kmlink_errors::Chain;

/// A thin wrapper on [`reqwest::blocking::Client`]: connect and per-read
/// timeouts, user agent `kmlink/<version>`, and the retry policy used by
/// [`crate::cache::Cache::fetch`] and [`crate::index::fetch_packages`].
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::blocking::Client,
    retry_delay: Duration,
    tries: u32,
    total: Duration,
    min_rate: u64,
}

/// The whole-transfer timeout of a request of unknown or small size.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(60);

/// The slowest transfer rate (bytes per second) a large download may have:
/// a request of `n` expected bytes may take [`TOTAL_TIMEOUT`] plus `n` at
/// this rate.
pub const MIN_RATE: u64 = 64 * 1024;

impl Http {
    /// A client with a 20 s connect timeout, a 60 s timeout on every read
    /// and on every whole transfer (longer for a large file: see
    /// [`MIN_RATE`]), 3 tries per URL and a 1 s initial backoff (doubled on
    /// every retry).
    pub fn new() -> Result<Http> {
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("kmlink/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(20))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(Error::HttpClient)?;
        Ok(Http {
            client,
            retry_delay: Duration::from_secs(1),
            tries: 3,
            total: TOTAL_TIMEOUT,
            min_rate: MIN_RATE,
        })
    }

    /// Change the whole-transfer timeout (tests use a second or two).
    pub fn with_total_timeout(mut self, total: Duration) -> Http {
        self.total = total;
        self
    }

    /// The deadline for a whole transfer of about `expected` bytes.
    pub fn deadline(&self, expected: u64) -> Duration {
        self.total
            .saturating_add(Duration::from_secs(expected / self.min_rate.max(1)))
    }

    /// Change the initial retry backoff (tests use a few milliseconds).
    pub fn with_retry_delay(mut self, delay: Duration) -> Http {
        self.retry_delay = delay;
        self
    }

    /// Number of tries per URL (at least 1).
    pub fn tries(&self) -> u32 {
        self.tries.max(1)
    }

    /// Backoff before try number `attempt` (0-based; 0 means no wait).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        match attempt {
            0 => Duration::ZERO,
            n => self.retry_delay.saturating_mul(1 << (n - 1).min(10)),
        }
    }

    /// GET `url`, failing on any status other than 2xx
    /// ([`Error::HttpStatus`], 404 included).
    pub fn get(&self, url: &str) -> Result<reqwest::blocking::Response> {
        self.get_within(url, self.total)
    }

    /// [`Http::get`] with the whole transfer (connecting, headers, body)
    /// bounded by `deadline`: a server trickling bytes cannot hold it.
    pub fn get_within(&self, url: &str, deadline: Duration) -> Result<reqwest::blocking::Response> {
        check_url(url)?;
        let resp = self
            .client
            .get(url)
            .timeout(deadline)
            .send()
            .map_err(|source| Error::Http {
                url: url.to_owned(),
                source,
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Error::HttpStatus {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        Ok(resp)
    }

    /// GET `url` from byte `from` on (an HTTP Range request when `from` >
    /// 0). Returns the response and whether it is partial (206, starting at
    /// `from`); a 200 answer is the whole file.
    ///
    /// The whole transfer is bounded by [`Http::deadline`] of `size`, the
    /// file's expected size.
    pub fn get_from(
        &self,
        url: &str,
        from: u64,
        size: u64,
    ) -> Result<(reqwest::blocking::Response, bool)> {
        let deadline = self.deadline(size);
        if from == 0 {
            return Ok((self.get_within(url, deadline)?, false));
        }
        let resp = self
            .client
            .get(url)
            .timeout(deadline)
            .header(reqwest::header::RANGE, format!("bytes={from}-"))
            .send()
            .map_err(|source| Error::Http {
                url: url.to_owned(),
                source,
            })?;
        let status = resp.status().as_u16();
        match status {
            200 => Ok((resp, false)),
            206 => {
                let start = resp
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if start == Some(from) {
                    Ok((resp, true))
                } else {
                    // A range we did not ask for: fetch the whole file.
                    Ok((self.get_within(url, deadline)?, false))
                }
            }
            // Range not satisfiable (the file shrank?): fetch it whole.
            416 => Ok((self.get_within(url, deadline)?, false)),
            _ => Err(Error::HttpStatus {
                url: url.to_owned(),
                status,
            }),
        }
    }

    /// GET `url` into memory, at most `limit` bytes, the whole transfer
    /// within [`Http::deadline`] of `limit` (of 16 MiB at most).
    pub fn get_bytes(&self, url: &str, limit: u64) -> Result<Vec<u8>> {
        use std::io::Read;
        // `limit` is the file's size when known (a verified index), else a
        // bound: the deadline grows with it up to 16 MiB worth (316 s).
        let resp = self.get_within(url, self.deadline(limit.min(16 << 20)))?;
        let mut out = Vec::new();
        resp.take(limit.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|source| Error::HttpBody {
                url: url.to_owned(),
                source,
            })?;
        if out.len() as u64 > limit {
            return Err(Error::HttpBody {
                url: url.to_owned(),
                source: std::io::Error::other(format!("response larger than {limit} bytes")),
            });
        }
        Ok(out)
    }
}

/// Run `f(url)` up to `http.tries()` times with backoff; 404 is not retried.
pub(crate) fn retrying<T>(
    http: &Http,
    url: &str,
    mut f: impl FnMut(&str) -> Result<T>,
) -> Result<T> {
    let mut attempt = 0;
    loop {
        std::thread::sleep(http.backoff(attempt));
        match f(url) {
            Ok(v) => return Ok(v),
            Err(e) if e.is_not_found() => return Err(e),
            Err(e) => {
                attempt += 1;
                if attempt >= http.tries() {
                    return Err(e);
                }
                log::warn!("{}; retrying ({attempt}/{})", Chain(&e), http.tries() - 1);
            }
        }
    }
}

/// Refuses what reqwest would only call a "builder error", saying why.
fn check_url(url: &str) -> Result<()> {
    let bad = |what: String| Error::BadUrl {
        url: url.to_owned(),
        what,
    };
    let u = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad(format!("scheme {:?}", u.scheme())));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    Ok(())
}

/// Join a base URI and a relative path with exactly one `/`.
pub(crate) fn join_url(base: &str, rel: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        rel.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #16, item 8: a malformed mirror URL said only "builder error".
    #[test]
    fn a_malformed_url_says_what_is_wrong() {
        let http = Http::new().expect("client");
        for url in [
            "http//example/dists/x",
            "ftp://h/x",
            "http://[::1/x",
            "https://",
        ] {
            let e = http.get(url).expect_err(url).to_string();
            assert!(
                e.contains("is not a valid http:// or https:// URL"),
                "{url}: {e}"
            );
        }
    }
}
