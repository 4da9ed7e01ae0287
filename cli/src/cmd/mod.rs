//! One module per subcommand.

pub mod build;
pub mod crawler;
pub mod vm;
