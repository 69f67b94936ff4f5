//! `[http]`: where the API listens, the role of requests without a token, and the bounds
//! that keep one client (or many) from holding the server: how long a request head may take,
//! how long a kept-alive connection may idle, how many connections and live streams at once.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::Role;

use super::{FieldError, field};

/// Default `http.header_read_timeout_s`: a request head is a few hundred bytes that browsers
/// and tools send in one packet; 10 s covers a congested event network's retransmissions many
/// times over, while a client that trickles its head (slowloris) holds a connection for at
/// most that long.
pub const DEFAULT_HEADER_READ_TIMEOUT_S: u64 = 10;
/// Default `http.idle_timeout_s`: Apache's `KeepAliveTimeout`. The dashboard fetches in short
/// bursts, and its stream is never idle (a ping every 5 s), so only spare connections close.
pub const DEFAULT_IDLE_TIMEOUT_S: u64 = 5;
/// Default `http.max_connections`: each connection holds a file descriptor, and the process
/// shares its open-file limit (1024 on most systems unless raised) with the embedded broker's
/// sensor connections, the SQLite files and PostgreSQL connections; 256 leaves three quarters
/// for them and serves about 100 open dashboards (a stream and a connection or two for
/// fetches each).
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default `http.max_streams`: one per open dashboard; half the connections, so that live
/// streams never crowd out the API's other requests.
pub const DEFAULT_MAX_STREAMS: usize = 128;

/// Default `http.max_connections_per_address`: a quarter of the connections, so that one
/// client (a slowloris holding half-sent heads, say) cannot take them all, while a control
/// room of ten dashboards behind one NAT address (a stream and a few fetches each) fits
/// (the per-client cap of nginx's `limit_conn`).
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 64;

/// Upper bound of the two timeouts: beyond five minutes a timeout no longer bounds anything.
const MAX_TIMEOUT_S: u64 = 300;
/// Upper bound of `max_connections`: the port range of one client address; a real limit comes
/// from the open-file limit, checked when the server starts.
const MAX_CONNECTIONS: usize = 65_536;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    #[serde(default = "default_http")]
    listen: String,
    anonymous_role: Option<String>,
    #[serde(default = "default_header_read_timeout")]
    header_read_timeout_s: u64,
    #[serde(default = "default_idle_timeout")]
    idle_timeout_s: u64,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_max_streams")]
    max_streams: usize,
    #[serde(default = "default_max_connections_per_address")]
    max_connections_per_address: usize,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: default_http(),
            anonymous_role: None,
            header_read_timeout_s: DEFAULT_HEADER_READ_TIMEOUT_S,
            idle_timeout_s: DEFAULT_IDLE_TIMEOUT_S,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_streams: DEFAULT_MAX_STREAMS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        }
    }
}

fn default_http() -> String {
    "127.0.0.1:8080".into()
}

fn default_header_read_timeout() -> u64 {
    DEFAULT_HEADER_READ_TIMEOUT_S
}

fn default_idle_timeout() -> u64 {
    DEFAULT_IDLE_TIMEOUT_S
}

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

fn default_max_connections_per_address() -> usize {
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
}

fn default_max_streams() -> usize {
    DEFAULT_MAX_STREAMS
}

/// How much of the server one client, or all of them together, may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// The longest a connection may take to send a whole request head, counted from when it
    /// starts waiting for one (after it is accepted, or after the previous answer); then it
    /// is closed.
    pub header_read_timeout: Duration,
    /// How long a connection that has had an answer may sit with nothing moving before it is
    /// closed (an answer in progress is finished first). Never above `header_read_timeout`,
    /// whose timer also runs while a connection waits for its next request.
    pub idle_timeout: Duration,
    /// Open connections at most; beyond it a new connection is closed at once.
    pub max_connections: usize,
    /// Live-stream subscribers at most (below `max_connections`); beyond it the stream
    /// answers 503 with `Retry-After`.
    pub max_streams: usize,
    /// Open connections from one client address at most (never above `max_connections`).
    pub max_connections_per_address: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(DEFAULT_HEADER_READ_TIMEOUT_S),
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_S),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_streams: DEFAULT_MAX_STREAMS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        }
    }
}

pub(super) fn listen(raw: &RawHttp) -> Result<SocketAddr, FieldError> {
    raw.listen
        .parse()
        .map_err(|_| field("http.listen", "must be ADDRESS:PORT, e.g. 127.0.0.1:8080"))
}

pub(super) fn anonymous_role(raw: &RawHttp) -> Result<Option<Role>, FieldError> {
    raw.anonymous_role
        .as_deref()
        .map(|r| {
            Role::parse(r).ok_or_else(|| {
                field(
                    "http.anonymous_role",
                    "must be \"viewer\", \"planner\" or \"admin\"",
                )
            })
        })
        .transpose()
}

pub(super) fn limits(raw: &RawHttp) -> Result<HttpLimits, FieldError> {
    if !(1..=MAX_TIMEOUT_S).contains(&raw.header_read_timeout_s) {
        return Err(field(
            "http.header_read_timeout_s",
            format!(
                "must be 1 to {MAX_TIMEOUT_S} seconds (default {DEFAULT_HEADER_READ_TIMEOUT_S})"
            ),
        ));
    }
    if !(1..=raw.header_read_timeout_s).contains(&raw.idle_timeout_s) {
        return Err(field(
            "http.idle_timeout_s",
            format!(
                "must be 1 second to http.header_read_timeout_s ({} s), whose timer also runs \
                 while a connection waits for its next request (default {DEFAULT_IDLE_TIMEOUT_S})",
                raw.header_read_timeout_s
            ),
        ));
    }
    if !(2..=MAX_CONNECTIONS).contains(&raw.max_connections) {
        return Err(field(
            "http.max_connections",
            format!("must be 2 to {MAX_CONNECTIONS} (default {DEFAULT_MAX_CONNECTIONS})"),
        ));
    }
    if !(1..raw.max_connections).contains(&raw.max_streams) {
        return Err(field(
            "http.max_streams",
            format!(
                "must be at least 1 and below http.max_connections ({}), so that open streams \
                 leave connections for the API's other requests (default {DEFAULT_MAX_STREAMS})",
                raw.max_connections
            ),
        ));
    }
    if raw.max_connections_per_address == 0 {
        return Err(field(
            "http.max_connections_per_address",
            format!("must be at least 1 (default {DEFAULT_MAX_CONNECTIONS_PER_ADDRESS})"),
        ));
    }
    Ok(HttpLimits {
        header_read_timeout: Duration::from_secs(raw.header_read_timeout_s),
        idle_timeout: Duration::from_secs(raw.idle_timeout_s),
        max_connections: raw.max_connections,
        max_streams: raw.max_streams,
        // More than max_connections could never be reached.
        max_connections_per_address: raw.max_connections_per_address.min(raw.max_connections),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawHttp {
        crowdflow_contract::config_file::parse_toml(text, std::path::Path::new("http.toml"))
            .expect("toml")
    }

    #[test]
    fn an_empty_section_gets_the_documented_defaults() {
        assert_eq!(limits(&raw("")), Ok(HttpLimits::default()));
        assert_eq!(
            HttpLimits::default(),
            HttpLimits {
                header_read_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(5),
                max_connections: 256,
                max_streams: 128,
                max_connections_per_address: 64,
            }
        );
    }

    #[test]
    fn each_bound_out_of_range_names_its_field() {
        let cases = [
            ("header_read_timeout_s = 0", "http.header_read_timeout_s"),
            ("header_read_timeout_s = 301", "http.header_read_timeout_s"),
            ("idle_timeout_s = 0", "http.idle_timeout_s"),
            (
                "header_read_timeout_s = 5\nidle_timeout_s = 6",
                "http.idle_timeout_s",
            ),
            ("max_connections = 1", "http.max_connections"),
            ("max_connections = 70000", "http.max_connections"),
            ("max_streams = 0", "http.max_streams"),
            ("max_connections = 10\nmax_streams = 10", "http.max_streams"),
            (
                "max_connections_per_address = 0",
                "http.max_connections_per_address",
            ),
        ];
        for (text, name) in cases {
            let (field, message) = limits(&raw(text)).expect_err(text);
            assert_eq!(field, name, "{text}: {message}");
        }
        let (_, message) = limits(&raw("max_connections = 10\nmax_streams = 10")).expect_err("");
        assert!(
            message.contains("below http.max_connections (10)"),
            "{message}"
        );
    }

    #[test]
    fn small_limits_for_a_test_server_are_accepted() {
        let l = limits(&raw(
            "header_read_timeout_s = 1\nidle_timeout_s = 1\nmax_connections = 2\nmax_streams = 1",
        ))
        .expect("valid");
        assert_eq!(l.header_read_timeout, Duration::from_secs(1));
        assert_eq!((l.max_connections, l.max_streams), (2, 1));
    }
}
