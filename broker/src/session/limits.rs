//! Broker-wide limits a client's packets are held to: filters per SUBSCRIBE, the memory budget for messages.

use mqtt_codec::{ReasonCode, Subscribe};

use super::{ProtocolError, Session};
use crate::budget::DropReason;
use crate::logging::{Untrusted, conn_event};
use crate::message::Message;

impl Session {
    /// Refuses a SUBSCRIBE with more topic filters than `limits.max_filters_per_subscribe`, before any of them
    /// is looked at: the connection is closed (MQTT 5: DISCONNECT `0x97` Quota exceeded), since a client that
    /// sends such a packet is not following the server's limits, and answering it filter by filter is the very
    /// work the limit bounds.
    pub(super) fn check_filter_count(&self, s: &Subscribe<'_>) -> Result<(), ProtocolError> {
        let max = self.ctx.caps.max_filters_per_subscribe;
        // Zero (a `Capabilities::default()`) means no limit; the configuration never gives zero.
        if max > 0 && s.subscriptions.iter().nth(max).is_some() {
            return Err(ProtocolError::Violation(ReasonCode::QuotaExceeded, "too many topic filters in one SUBSCRIBE"));
        }
        Ok(())
    }

    /// The message, copied out of its read buffer when small and charged to the broker's memory budget; `None`
    /// (counted, and logged within the log budget) when the budget cannot take it.
    pub(super) fn within_budget(&self, msg: Message) -> Option<Message> {
        let budget = &self.ctx.counters.budget;
        match msg.compact().charge_to(budget) {
            Ok(msg) => Some(msg),
            Err(msg) => {
                budget.count(DropReason::Budget);
                conn_event!(
                    WARN,
                    client_id = ?Untrusted(self.client_id()),
                    topic = ?Untrusted(msg.topic()),
                    used = budget.used(),
                    limit = budget.limit(),
                    "message memory budget used up; message refused"
                );
                None
            }
        }
    }
}
