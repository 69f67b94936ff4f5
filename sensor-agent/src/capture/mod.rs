//! Capture sources, the first stage: everything that hears frames and hands them, with their
//! time, to the counter.
//!
//! Capture files are read by [`mod@file`] (and replayed as a live source by [`paced`]);
//! radios are a monitor-mode Wi-Fi interface ([`wifi_monitor`]) and a Bluetooth controller
//! ([`ble_scan`]). Programs embedding the agent ([`crate::in_process`]) hand in what they
//! heard directly. Every source decodes through [`crate::frame`].

pub mod ble_scan;
pub mod file;
pub mod paced;
pub mod wifi_monitor;
