//! The crowdflow sensor agent.
//!
//! Hears Wi-Fi probe requests and BLE advertisements, hashes each transmitter address in
//! memory under the epoch's salt, counts the hashes in one sketch per (window, kind), and
//! publishes only the sketches. See ARCHITECTURE.md for the map.
//!
//! The pipeline, in order: [`capture`] hears, [`frame`] decodes, [`counting`] hashes under
//! the [`salt`] and sketches, [`publish`] sends. [`agent`] wires them for `run`,
//! [`in_process`] for a program that hears for the agent, [`replay`] counts a capture file
//! offline; [`selfcheck`], [`config`] and [`metrics`] serve the installer.
#![deny(missing_docs)]

// 1. Radios and capture files hear frames.
pub mod capture;
// 2. Bytes become "this device was heard", or a reason to skip.
pub mod frame;
// 3. Addresses are hashed under the epoch's salt into each window's sketches.
pub mod counting;
pub mod salt;
// 4. Finished windows go to the outbox and over MQTT.
pub mod publish;

// The stages wired together.
pub mod agent;
pub mod in_process;
pub mod replay;

// For the installer and the operator.
pub mod config;
pub mod metrics;
pub mod selfcheck;
