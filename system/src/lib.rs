//! kmlink on an installed system: the configuration the service and the
//! kernel hooks read (`/etc/kmlink/kmlink.toml`), and the prebuilt modules
//! the hooks keep under `/var/lib/kmlink/modules/<release>/` with a record
//! of what they were linked from, so that the boot path loads them without
//! linking again while their inputs are unchanged.

#![deny(missing_docs)]

pub mod config;
pub mod prebuilt;

pub use config::Config;
pub use prebuilt::{Inputs, Prebuilt};
