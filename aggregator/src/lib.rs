//! The crowdflow aggregator: salt authority, sketch ingest, storage, API and dashboard.
//!
//! Draws and announces each epoch's salt (keeping only its fingerprint), merges the agents'
//! sketches into per-zone windows in SQLite or PostgreSQL, and answers the live board, the
//! history queries, the metrics and the open-data export from them. See ARCHITECTURE.md for
//! the map.
#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod batching;
pub mod broker;
pub mod calibration;
pub mod config;
pub mod forecast;
pub mod ingest;
pub mod link;
pub mod live;
pub mod metrics;
pub mod people;
pub mod process;
pub mod purge;
pub mod query;
pub mod salt;
pub mod service;
pub mod store;
pub mod zone;
