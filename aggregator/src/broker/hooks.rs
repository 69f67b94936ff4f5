//! The glue between rmqtt's hooks and [`super::acl`]: who may log in (password, client id,
//! last will), subscribe and publish. Refusals are logged rate-limited, since a hostile
//! client can cause them at will.

use std::collections::HashMap;
use std::time::Instant;

use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::session::Session;
use rmqtt::types::{AuthResult, ConnectInfo, PublishAclResult, SubscribeAclResult};

use super::acl::{Acl, Role};
use crowdflow_contract::log_limit::LogLimit;

/// The embedded broker's accounts and rules.
pub(super) struct Guard {
    /// username -> password.
    pub(super) credentials: HashMap<String, String>,
    pub(super) acl: Acl,
    pub(super) log: LogLimit,
    /// Every refusal, by reason.
    pub(super) counted: prometheus::IntCounterVec,
}

impl Guard {
    /// The verdict on a login: a known account with its password, a client id of its own, a
    /// clean session for sensors (only the aggregator's session outlives its connection, so
    /// no one else can have messages queued for it), and a last will it may publish.
    fn login(&self, info: &ConnectInfo) -> Result<(), &'static str> {
        let user = info.username().ok_or("no user name")?;
        let expected = self.credentials.get(&**user).ok_or("unknown account")?;
        let given = info.password().map(|p| p.as_ref()).unwrap_or_default();
        if !same(given, expected.as_bytes()) {
            return Err("wrong password");
        }
        let role = self.acl.role(user).ok_or("account has no role")?;
        if !self.acl.may_use_client_id(&role, &info.id().client_id) {
            return Err("client id of another account");
        }
        if matches!(role, Role::Sensor(_)) && !info.clean_start() {
            return Err("sensors use clean sessions");
        }
        if let Some(will) = info.last_will() {
            let (topic, retain) = match will {
                rmqtt::types::LastWill::V3(w) => (w.topic.as_ref(), w.retain),
                rmqtt::types::LastWill::V5(w) => (w.topic.as_ref(), w.retain),
            };
            if !self.acl.may_publish(&role, topic, retain) {
                return Err("last will on a topic the account may not publish");
            }
        }
        Ok(())
    }

    fn role(&self, session: &Session) -> Option<Role> {
        session.id.username.as_ref().and_then(|u| self.acl.role(u))
    }

    /// Counts a refusal (the metric label is the reason in snake case).
    fn count(&self, reason: &str) {
        self.counted
            .with_label_values(&[reason.replace(' ', "_").as_str()])
            .inc();
    }

    fn refused(&self, reason: &'static str, session: &Session, topic: &str) {
        self.count(reason);
        if self.log.allow(reason, Instant::now()) {
            tracing::warn!(
                client_id = %session.id.client_id,
                account = session.id.username.as_deref().unwrap_or("none"),
                topic,
                "embedded broker refused: {reason}"
            );
        }
    }
}

/// Constant-time comparison of a given password with the expected one.
fn same(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Counts and logs the messages the broker drops rather than delivers: a sensor's sketch
/// that the broker acknowledged (so the agent let go of it) and then dropped is lost, and
/// an operator must see that (`crowdflow_broker_dropped_total`).
pub(super) struct DropCounter {
    pub(super) counted: prometheus::IntCounterVec,
    pub(super) log: LogLimit,
}

#[async_trait::async_trait]
impl Handler for DropCounter {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        if let Parameter::MessageDropped(to, _, publish, reason) = param {
            let reason = match reason {
                rmqtt::types::Reason::MessageQueueFull => "queue_full",
                rmqtt::types::Reason::MessageExpiration => "expired",
                _ => "other",
            };
            self.counted.with_label_values(&[reason]).inc();
            if self.log.allow(reason, Instant::now()) {
                tracing::warn!(
                    to = to.as_ref().map_or("none", |id| &*id.client_id),
                    topic = %publish.topic,
                    "embedded broker dropped a message ({reason}): the subscriber is a whole queue behind"
                );
            }
        }
        (true, acc)
    }
}

/// One handler per hook type, sharing the guard.
pub(super) struct GuardHandler(pub(super) std::sync::Arc<Guard>);

#[async_trait::async_trait]
impl Handler for GuardHandler {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        let guard = &self.0;
        match param {
            Parameter::ClientAuthenticate(info) => {
                let verdict = match guard.login(info) {
                    Ok(()) => AuthResult::Allow(false, None),
                    Err(reason) => {
                        guard.count(reason);
                        if guard.log.allow(reason, Instant::now()) {
                            tracing::warn!(
                                client_id = %info.id().client_id,
                                account = info.username().map_or("none", |u| &**u),
                                "embedded broker refused a login: {reason}"
                            );
                        }
                        AuthResult::NotAuthorized
                    }
                };
                (false, Some(HookResult::AuthResult(verdict)))
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let filter = subscribe.topic_filter.as_ref();
                match guard.role(session) {
                    Some(role) if guard.acl.may_subscribe(&role, filter) => (true, acc),
                    _ => {
                        guard.refused("subscription outside the ACL", session, filter);
                        let no = SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized);
                        (false, Some(HookResult::SubscribeAclResult(no)))
                    }
                }
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let topic = publish.topic.as_ref();
                match guard.role(session) {
                    Some(role) if guard.acl.may_publish(&role, topic, publish.retain) => {
                        (true, acc)
                    }
                    _ => {
                        let reason = if publish.retain {
                            "retained publish outside the ACL"
                        } else {
                            "publish outside the ACL"
                        };
                        guard.refused(reason, session, topic);
                        // Not a disconnect: like Mosquitto, the message is dropped (MQTT 3.1.1
                        // has no way to say so in the PUBACK).
                        let no = PublishAclResult::rejected(false, None);
                        (false, Some(HookResult::PublishAclResult(no)))
                    }
                }
            }
            _ => (true, acc),
        }
    }
}
