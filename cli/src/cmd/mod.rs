//! One module per subcommand.

pub mod build;
pub mod bundle;
pub mod crawler;
pub mod db;
pub mod doctor;
pub mod events;
pub mod exporter;
pub mod flame;
pub mod key;
pub mod leaks;
pub mod load;
pub mod refresh_bundle;
pub mod sign;
pub mod stats;
pub mod system;
pub mod top;
pub mod vm;
