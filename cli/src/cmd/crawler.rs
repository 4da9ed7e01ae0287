//! `kmlink crawler`: discover and fetch kernel packages.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

/// Arguments of `kmlink crawler`.
#[derive(Args, Debug)]
pub struct CrawlerArgs {
    #[command(subcommand)]
    pub command: CrawlerCommand,
}

/// `kmlink crawler` subcommands.
#[derive(Subcommand, Debug)]
pub enum CrawlerCommand {}

/// Runs `kmlink crawler`.
pub fn run(args: CrawlerArgs) -> Result<ExitCode> {
    match args.command {}
}
