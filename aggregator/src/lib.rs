//! The crowdflow aggregator: salt authority, sketch ingest, storage, API and dashboard.
//!
//! Being built; see ARCHITECTURE.md for what exists.
#![deny(missing_docs)]

pub mod api;
pub mod broker;
pub mod config;
pub mod demo;
pub mod ingest;
pub mod live;
pub mod metrics;
pub mod query;
pub mod salt;
pub mod service;
pub mod store;
