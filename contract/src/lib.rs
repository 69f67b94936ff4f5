//! The crowdflow wire contract: everything the sensor agent and the aggregator must agree on.
//!
//! One crate, so that there is exactly one codec and one definition of each message:
//!
//! | module | what it fixes |
//! |---|---|
//! | [`config_file`] | how both deployables read their TOML config and name faulty fields |
//! | [`authority_key`] | the salt authority's Ed25519 signing key and the public keys agents pin |
//! | [`salt`] | the per-epoch secret, its fingerprint, and how it is kept (memory only, zeroized) |
//! | [`identity`] | how a device address becomes the keyed hash that feeds a sketch |
//! | [`epoch`] | which salt epoch an instant belongs to (daily rotation in a local time zone) |
//! | [`log_limit`] | rate-limited log lines for what outsiders can cause at will (rejects, forgeries, failed logins) |
//! | [`window`] | UTC-aligned counting windows |
//! | [`sketch`] | the cardinality sketch (Apache DataSketches HLL), its codec and its estimates |
//! | [`wire`] | MQTT topics and the JSON messages of protocol v1, with total decoders |
//!
//! # Why Apache DataSketches HLL_4
//!
//! Sketches are what leaves a sensor, so the sketch codec is a public, attacker-reachable
//! decoder and a long-lived storage format. We use the `datasketches` crate's HLL with the
//! HLL_4 layout on the wire rather than `hyperloglogplus`:
//!
//! | lg_k = 14 | DataSketches HLL_4 | hyperloglogplus 0.4.1 |
//! |---|---|---|
//! | dense size on the wire | 8.3 KB | 13.1 KB |
//! | corrupted payloads that panic (of 40k) | 0 | 3 |
//! | trusts serialized derived fields | no | yes (tampered `zeros` turned 99,244 into 389) |
//! | maintained | yes (Apache) | no release since 2022 |
//! | readable by Python/Java/C++ | yes | no |
//!
//! The relative standard error at the default `lg_k = 14` is 1.04/sqrt(2^14) = 0.81 %.
//! `cargo bench -p crowdflow-contract --bench sketch` prints the comparison measured on
//! the current machine (see ARCHITECTURE.md for the last figures).
//!
//! # Privacy
//!
//! The contract is built so that the privacy invariants of the design hold by construction:
//! [`salt::Salt`] has no `Debug`, `Display` or serde impl and zeroizes on drop;
//! [`identity::DeviceHash`] cannot be printed or serialized; only [`sketch::Sketch`] bytes
//! travel.
#![deny(missing_docs)]

pub mod authority_key;
pub mod config_file;
pub mod epoch;
pub mod identity;
pub mod log_limit;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod salt;
pub mod sketch;
pub mod window;
pub mod wire;
