//! The crowdflow sensor agent.
//!
//! Hears Wi-Fi probe requests and BLE advertisements, hashes each transmitter address in
//! memory under the epoch's salt, counts the hashes in one sketch per (window, kind), and
//! publishes only the sketches. See ARCHITECTURE.md for the map.
#![deny(missing_docs)]

pub mod agent;
pub mod capture;
pub mod config;
pub mod count;
pub mod counter;
pub mod devices;
pub mod frame;
pub mod in_process;
pub mod metrics;
pub mod outbox;
pub mod replay;
pub mod salt;
pub mod selfcheck;
pub mod source;
pub mod window;
