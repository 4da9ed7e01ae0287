//! `kmlink exporter`: the monitor's aggregates for Prometheus, over HTTP
//! (`--listen`) or as node_exporter textfile-collector files (`--textfile`);
//! the work is in kmlink-exporter.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use kmlink_exporter::http::Server;
use kmlink_exporter::{scrape, textfile, Format, Options};
use kmlink_procview::ProcSource;

use super::stats::{seconds, to_stdout};

/// Arguments of `kmlink exporter`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  kmlink exporter --listen 127.0.0.1:9465
  kmlink exporter --textfile /var/lib/prometheus/node-exporter --interval 15
  kmlink exporter --textfile /var/lib/prometheus/node-exporter --once
  kmlink exporter --once | promtool check metrics

Scrape by hand: curl -s http://127.0.0.1:9465/metrics
Metric names and labels: docs/operator.md (\"Metrics\").")]
pub struct ExporterArgs {
    /// Serve GET /metrics on ADDR (HOST:PORT; OpenMetrics when the scraper
    /// asks for it, else the Prometheus text format).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Write DIR/kmlink.prom for node_exporter's textfile collector,
    /// replaced atomically every --interval.
    #[arg(long, value_name = "DIR")]
    pub textfile: Option<PathBuf>,
    /// Seconds between textfile writes.
    #[arg(
        long,
        value_name = "S",
        default_value_t = 15.0,
        allow_negative_numbers = true
    )]
    pub interval: f64,
    /// Write the textfile once and exit; without --textfile, print the
    /// metrics (Prometheus text) once on standard output.
    #[arg(long, conflicts_with = "listen")]
    pub once: bool,
    /// Export at most N processes (the largest by bytes allocated) plus the
    /// monitor's (other) row: bounds the series each scrape creates.
    #[arg(long, value_name = "N", default_value_t = Options::default().top_processes)]
    pub top_processes: usize,
    /// Export at most N call sites (the largest by outstanding bytes) plus
    /// the monitor's (other) row.
    #[arg(long, value_name = "N", default_value_t = Options::default().top_callsites)]
    pub top_callsites: usize,
    /// Read DIR/kmlink/stats instead of /proc (recorded snapshots).
    #[arg(long, value_name = "DIR", default_value = "/proc")]
    pub proc_root: PathBuf,
}

/// Runs `kmlink exporter`.
pub fn run(args: ExporterArgs) -> Result<ExitCode> {
    let source = ProcSource::new(&args.proc_root);
    let options = Options {
        top_processes: args.top_processes,
        top_callsites: args.top_callsites,
    };
    if args.once {
        match &args.textfile {
            Some(dir) => {
                textfile::write(dir, &source, options)?;
            }
            None => {
                let text = scrape(&source, options, Format::Prometheus)?;
                to_stdout(|o| o.write_all(text.as_bytes()))?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let interval = seconds("--interval", args.interval)?;
    let server = args
        .listen
        .as_deref()
        .map(|addr| Server::bind(addr, source.clone(), options))
        .transpose()?;
    if let Some(dir) = &args.textfile {
        // The first write shows a wrong directory at once; later failures
        // are logged and retried.
        let path = textfile::write(dir, &source, options)?;
        log::info!("writing {} every {interval:?}", path.display());
        let dir = dir.clone();
        let source = source.clone();
        let writer = move || loop {
            std::thread::sleep(interval);
            if let Err(e) = textfile::write(&dir, &source, options) {
                log::warn!("{}", kmlink_errors::Chain(&e));
            }
        };
        if server.is_none() {
            writer();
        }
        std::thread::spawn(writer);
    }
    match server {
        Some(server) => {
            let addr = server.local_addr().context("the listening socket")?;
            log::info!("serving http://{addr}/metrics");
            server.run()
        }
        None => bail!("nothing to do: give --listen ADDR, --textfile DIR or --once"),
    }
}
