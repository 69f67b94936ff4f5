//! Shared helpers for the whole-system scenarios: temp dirs, free ports, child processes.
