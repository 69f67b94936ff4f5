//! Protocol v1 on MQTT: topics and messages, with total decoders.
//!
//! | topic | direction | QoS / retain | message |
//! |---|---|---|---|
//! | `{prefix}/sketch/{sensor_id}` | agent -> aggregator | 1 / no | [`SketchMessage`] |
//! | `{prefix}/status/{sensor_id}` | agent -> aggregator | 1 / yes, last will `offline` | [`AgentStatus`] |
//! | `{prefix}/salt` | aggregator -> agents | 0 / never | [`SaltAnnouncement`] |
//! | `{prefix}/salt/request/{sensor_id}` | agent -> aggregator | 0 / no | empty |
//! | `{prefix}/salt/recover` | aggregator -> agents | 0 / never | [`SaltRecovery`] |
//! | `{prefix}/salt/return/{sensor_id}` | agent -> aggregator | 0 / never | [`SaltAnnouncement`] |
//! | `{prefix}/salt/answer/{sensor_id}` | aggregator -> that agent | 0 / never | [`SaltAnswer`] |
//!
//! Every decoder takes bytes from outside and returns a typed [`WireError`] that names the
//! field at fault; none echoes payload contents in its message.

mod envelope;
mod error;
mod salt_answer;
mod salt_msg;
mod sensor_id;
mod status;
mod topic;

pub use envelope::{DEFAULT_MAX_BYTES, DecodeRules, SKETCH_ENCODING, SketchMessage};
pub use error::WireError;
pub use salt_answer::SaltAnswer;
pub use salt_msg::{EpochSalt, EpochSaltRef, SaltAnnouncement, SaltRecovery};
pub use sensor_id::SensorId;
pub use status::{AgentState, AgentStatus, OutboxHealth, SaltState};
pub use topic::{DEFAULT_PREFIX, TopicKind, Topics};

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;
