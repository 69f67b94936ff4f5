//! The salt side of the aggregator: small state machines that say what to do and leave the
//! doing (publishing, recording) to the service, so each is tested without a broker.
//!
//! - [`authority`]: draws each epoch's salt, announces held salts, forgets ended ones,
//!   adopts a leader's or a recovered salt.
//! - [`leadership`]: among replicas, the lowest authority id heard recently leads.
//! - [`recovery`]: a restarted aggregator asks the agents for the salt it lost.
//! - [`protocol`]: the three together for one replica, answering messages and ticks with
//!   [`Action`]s; it signs what it sends and believes only announcements a trusted key signed.
//! - [`key_file`]: the replica's signing key on disk, created on first start.

pub mod authority;
pub mod key_file;
pub mod leadership;
pub mod protocol;
pub mod recovery;

pub use authority::{Drawn, SaltAuthority};
pub use leadership::Leadership;
pub use protocol::{Action, SaltProtocol, Signing};
pub use recovery::Recovery;
