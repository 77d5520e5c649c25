//! The typed records of durable state and their binary form.
//!
//! Every record *sets* a piece of state (or removes it), so replaying a record twice, or replaying the records
//! written after a checkpoint began over the checkpoint's state, gives the same result: that is what lets a
//! checkpoint be taken while the broker runs (see [`super`]).
//!
//! The form is little-endian and length-prefixed: a tag byte, then the fields in order; strings and byte strings
//! carry a `u32` length. [`Record::decode`] checks every length against the buffer and never panics: a record
//! that does not decode is reported, and recovery goes on without it.

use mqtt_codec::QoS;

/// Why a record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record ends before its fields do.
    #[error("record truncated")]
    Truncated,
    /// An unknown tag or an invalid field value.
    #[error("invalid record: {0}")]
    Invalid(&'static str),
}

/// A message as stored: what is needed to rebuild it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Payload.
    pub payload: &'a [u8],
    /// QoS it was published with.
    pub qos: QoS,
    /// RETAIN flag it was published with.
    pub retain: bool,
    /// MQTT 5 properties: context (0 PUBLISH, 1 will), wire bytes, Message Expiry Interval in seconds.
    pub props: Option<(u8, &'a [u8], Option<u32>)>,
    /// When it expires, in milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
}

/// One subscription's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSubOpts {
    /// Granted QoS.
    pub qos: QoS,
    /// MQTT 5 No Local.
    pub no_local: bool,
    /// MQTT 5 Retain As Published.
    pub retain_as_published: bool,
    /// MQTT 5 Subscription Identifier.
    pub id: Option<u32>,
    /// The filter is only partly readable under the client's ACL: each message is checked on delivery.
    pub acl_check: bool,
}

/// A message's entry in a persistent session's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The session's client id.
    pub client: &'a str,
    /// The delivery's number in the session.
    pub seq: u64,
    /// QoS of the delivery.
    pub qos: QoS,
    /// RETAIN flag of the delivery.
    pub retain: bool,
    /// MQTT 5 Subscription Identifiers.
    pub sub_ids: Vec<u32>,
}

/// Who attached a session last: the protocol version of its CONNECT and the user it logged in as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredOwner<'a> {
    /// The protocol level of the CONNECT (3: MQTT 3.1, 4: 3.1.1, 5: 5.0).
    pub version: u8,
    /// The username it logged in as (`None`: anonymous, or no authentication).
    pub username: Option<&'a str>,
    /// The ACL its permissions came from (see [`crate::auth::ListenerAuth::acl_key`]); `None` without one.
    pub acl: Option<&'a str>,
}

/// A change of durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// A persistent session exists (`fresh`: a new one, replacing any before; else resumed) with this expiry in
    /// seconds (`None`: never), attached to a connection of `owner` (`None` in journals written before the owner
    /// was recorded, and for sessions without a client connection).
    SessionOpen { client: &'a str, fresh: bool, expiry: Option<u32>, owner: Option<StoredOwner<'a>> },
    /// Its connection closed at `at_ms` (Unix milliseconds); the expiry in force from then.
    SessionOffline { client: &'a str, at_ms: u64, expiry: Option<u32> },
    /// The session ended.
    SessionEnd { client: &'a str },
    /// A subscription was made or changed.
    Subscribe { client: &'a str, filter: &'a str, opts: StoredSubOpts },
    /// A subscription was removed.
    Unsubscribe { client: &'a str, filter: &'a str },
    /// A message, referenced by `id` from queues and the retained store.
    Message { id: u64, msg: StoredMessage<'a> },
    /// A message was routed: the message, the entries it got in persistent sessions' queues, whether it is now its
    /// topic's retained message (an empty payload clears it), and the publisher's QoS 2 packet identifier, held
    /// until PUBREL. One record, so a crash keeps all of it or none: a publisher's resend after a crash is then
    /// recognised exactly when the message was queued.
    Routed { id: u64, msg: StoredMessage<'a>, retain: bool, origin: Option<(&'a str, u16)>, entries: Vec<Entry<'a>> },
    /// Message `msg` was queued for the session as its `seq`-th delivery.
    Enqueue { client: &'a str, seq: u64, msg: u64, qos: QoS, retain: bool, sub_ids: Vec<u32> },
    /// Delivery `seq` was sent with packet identifier `pid` and awaits its acknowledgement.
    Sent { client: &'a str, seq: u64, pid: u16 },
    /// QoS 2 delivery `seq` was received by the client (PUBREC): a PUBREL is owed.
    Released { client: &'a str, seq: u64 },
    /// Delivery `seq` is finished (acknowledged, expired or given up).
    Done { client: &'a str, seq: u64 },
    /// An inbound QoS 2 packet identifier was received (`held`) or released by PUBREL.
    Inbound { client: &'a str, pid: u16, held: bool },
    /// The retained message of a topic is `msg` (`None`: cleared).
    Retain { topic: &'a str, msg: Option<u64> },
    /// The will of a session: `None` when there is none; `due_ms` is when it goes out (Unix milliseconds), `None`
    /// while its connection is open (then the delay counts from the connection's end).
    Will { client: &'a str, will: Option<(StoredMessage<'a>, u32)>, due_ms: Option<u64> },
}

const SESSION_OPEN: u8 = 1;
const SESSION_OFFLINE: u8 = 2;
const SESSION_END: u8 = 3;
const SUBSCRIBE: u8 = 4;
const UNSUBSCRIBE: u8 = 5;
const MESSAGE: u8 = 6;
const ENQUEUE: u8 = 7;
const SENT: u8 = 8;
const RELEASED: u8 = 9;
const DONE: u8 = 10;
const INBOUND: u8 = 11;
const RETAIN: u8 = 12;
const WILL: u8 = 13;
const ROUTED: u8 = 14;
/// `SESSION_OPEN` with the owner after the expiry. A session without an owner is still written as `SESSION_OPEN`,
/// which is also how journals written before the owner was recorded read.
const SESSION_OPEN_OWNED: u8 = 15;
/// `SESSION_OPEN_OWNED` followed by the ACL the owner's permissions came from; written only for an owner with one.
const SESSION_OPEN_ACL: u8 = 16;

impl Record<'_> {
    /// Appends the binary form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::SessionOpen { client, fresh, expiry, owner } => {
                out.push(match owner {
                    None => SESSION_OPEN,
                    Some(StoredOwner { acl: None, .. }) => SESSION_OPEN_OWNED,
                    Some(StoredOwner { acl: Some(_), .. }) => SESSION_OPEN_ACL,
                });
                put_str(out, client);
                out.push(u8::from(*fresh));
                put_opt_u32(out, *expiry);
                if let Some(owner) = owner {
                    out.push(owner.version);
                    match owner.username {
                        Some(name) => {
                            out.push(1);
                            put_str(out, name);
                        }
                        None => out.push(0),
                    }
                    if let Some(acl) = owner.acl {
                        put_str(out, acl);
                    }
                }
            }
            Record::SessionOffline { client, at_ms, expiry } => {
                out.push(SESSION_OFFLINE);
                put_str(out, client);
                out.extend_from_slice(&at_ms.to_le_bytes());
                put_opt_u32(out, *expiry);
            }
            Record::SessionEnd { client } => {
                out.push(SESSION_END);
                put_str(out, client);
            }
            Record::Subscribe { client, filter, opts } => {
                out.push(SUBSCRIBE);
                put_str(out, client);
                put_str(out, filter);
                let flags = u8::from(opts.no_local) << 2 | u8::from(opts.retain_as_published) << 3;
                out.push(opts.qos as u8 | flags | u8::from(opts.acl_check) << 4);
                put_opt_u32(out, opts.id);
            }
            Record::Unsubscribe { client, filter } => {
                out.push(UNSUBSCRIBE);
                put_str(out, client);
                put_str(out, filter);
            }
            Record::Message { id, msg } => {
                out.push(MESSAGE);
                out.extend_from_slice(&id.to_le_bytes());
                put_message(out, msg);
            }
            Record::Routed { id, msg, retain, origin, entries } => {
                out.push(ROUTED);
                out.extend_from_slice(&id.to_le_bytes());
                put_message(out, msg);
                out.push(u8::from(*retain));
                match origin {
                    Some((client, pid)) => {
                        out.push(1);
                        put_str(out, client);
                        out.extend_from_slice(&pid.to_le_bytes());
                    }
                    None => out.push(0),
                }
                put_u32(out, u32::try_from(entries.len()).unwrap_or(u32::MAX));
                for e in entries {
                    put_str(out, e.client);
                    out.extend_from_slice(&e.seq.to_le_bytes());
                    out.push(e.qos as u8 | u8::from(e.retain) << 2);
                    put_ids(out, &e.sub_ids);
                }
            }
            Record::Enqueue { client, seq, msg, qos, retain, sub_ids } => {
                out.push(ENQUEUE);
                put_str(out, client);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&msg.to_le_bytes());
                out.push(*qos as u8 | u8::from(*retain) << 2);
                put_ids(out, sub_ids);
            }
            Record::Sent { client, seq, pid } => {
                out.push(SENT);
                put_str(out, client);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&pid.to_le_bytes());
            }
            Record::Released { client, seq } => {
                out.push(RELEASED);
                put_str(out, client);
                out.extend_from_slice(&seq.to_le_bytes());
            }
            Record::Done { client, seq } => {
                out.push(DONE);
                put_str(out, client);
                out.extend_from_slice(&seq.to_le_bytes());
            }
            Record::Inbound { client, pid, held } => {
                out.push(INBOUND);
                put_str(out, client);
                out.extend_from_slice(&pid.to_le_bytes());
                out.push(u8::from(*held));
            }
            Record::Retain { topic, msg } => {
                out.push(RETAIN);
                put_str(out, topic);
                match msg {
                    Some(id) => {
                        out.push(1);
                        out.extend_from_slice(&id.to_le_bytes());
                    }
                    None => out.push(0),
                }
            }
            Record::Will { client, will, due_ms } => {
                out.push(WILL);
                put_str(out, client);
                match will {
                    Some((msg, delay)) => {
                        out.push(1);
                        put_message(out, msg);
                        put_u32(out, *delay);
                    }
                    None => out.push(0),
                }
                put_opt_u64(out, *due_ms);
            }
        }
    }
}

impl<'a> Record<'a> {
    /// Reads a record from its binary form (the whole of `buf`).
    ///
    /// # Errors
    /// [`RecordError`] when `buf` is not a whole, valid record.
    pub fn decode(buf: &'a [u8]) -> Result<Self, RecordError> {
        let mut r = Reader(buf);
        let record = match r.u8()? {
            SESSION_OPEN => {
                Record::SessionOpen { client: r.str()?, fresh: r.bool()?, expiry: r.opt_u32()?, owner: None }
            }
            tag @ (SESSION_OPEN_OWNED | SESSION_OPEN_ACL) => {
                let (client, fresh, expiry) = (r.str()?, r.bool()?, r.opt_u32()?);
                let version = r.u8()?;
                if !(3..=5).contains(&version) {
                    return Err(RecordError::Invalid("protocol version"));
                }
                let username = if r.bool()? { Some(r.str()?) } else { None };
                let acl = if tag == SESSION_OPEN_ACL { Some(r.str()?) } else { None };
                Record::SessionOpen { client, fresh, expiry, owner: Some(StoredOwner { version, username, acl }) }
            }
            SESSION_OFFLINE => Record::SessionOffline { client: r.str()?, at_ms: r.u64()?, expiry: r.opt_u32()? },
            SESSION_END => Record::SessionEnd { client: r.str()? },
            SUBSCRIBE => {
                let client = r.str()?;
                let filter = r.str()?;
                let flags = r.u8()?;
                let opts = StoredSubOpts {
                    qos: qos(flags & 3)?,
                    no_local: flags & 4 != 0,
                    retain_as_published: flags & 8 != 0,
                    id: r.opt_u32()?,
                    acl_check: flags & 16 != 0,
                };
                Record::Subscribe { client, filter, opts }
            }
            UNSUBSCRIBE => Record::Unsubscribe { client: r.str()?, filter: r.str()? },
            MESSAGE => Record::Message { id: r.u64()?, msg: r.message()? },
            ROUTED => {
                let id = r.u64()?;
                let msg = r.message()?;
                let retain = r.bool()?;
                let origin = if r.bool()? { Some((r.str()?, r.u16()?)) } else { None };
                let n = usize::try_from(r.u32()?).map_err(|_| RecordError::Invalid("entries"))?;
                // An entry takes at least 18 bytes: a count larger than what is left is corrupt, not an allocation.
                if n > r.0.len() / 18 {
                    return Err(RecordError::Truncated);
                }
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let client = r.str()?;
                    let seq = r.u64()?;
                    let flags = r.u8()?;
                    entries.push(Entry {
                        client,
                        seq,
                        qos: qos(flags & 3)?,
                        retain: flags & 4 != 0,
                        sub_ids: r.ids()?,
                    });
                }
                Record::Routed { id, msg, retain, origin, entries }
            }
            ENQUEUE => {
                let client = r.str()?;
                let seq = r.u64()?;
                let msg = r.u64()?;
                let flags = r.u8()?;
                Record::Enqueue { client, seq, msg, qos: qos(flags & 3)?, retain: flags & 4 != 0, sub_ids: r.ids()? }
            }
            SENT => Record::Sent { client: r.str()?, seq: r.u64()?, pid: r.u16()? },
            RELEASED => Record::Released { client: r.str()?, seq: r.u64()? },
            DONE => Record::Done { client: r.str()?, seq: r.u64()? },
            INBOUND => Record::Inbound { client: r.str()?, pid: r.u16()?, held: r.bool()? },
            RETAIN => {
                let topic = r.str()?;
                let msg = if r.bool()? { Some(r.u64()?) } else { None };
                Record::Retain { topic, msg }
            }
            WILL => {
                let client = r.str()?;
                let will = if r.bool()? { Some((r.message()?, r.u32()?)) } else { None };
                Record::Will { client, will, due_ms: r.opt_u64()? }
            }
            _ => return Err(RecordError::Invalid("unknown record tag")),
        };
        if !r.0.is_empty() {
            return Err(RecordError::Invalid("trailing bytes"));
        }
        Ok(record)
    }
}

fn qos(v: u8) -> Result<QoS, RecordError> {
    QoS::from_u8(v).map_err(|_| RecordError::Invalid("QoS"))
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_ids(out: &mut Vec<u8>, ids: &[u32]) {
    put_u32(out, u32::try_from(ids.len()).unwrap_or(u32::MAX));
    for id in ids {
        put_u32(out, *id);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Topics, filters, client ids and payloads are bounded by the packet size (at most 256 MiB).
    put_u32(out, u32::try_from(b.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(b);
}

fn put_opt_u32(out: &mut Vec<u8>, v: Option<u32>) {
    match v {
        Some(v) => {
            out.push(1);
            put_u32(out, v);
        }
        None => out.push(0),
    }
}

fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        None => out.push(0),
    }
}

fn put_message(out: &mut Vec<u8>, m: &StoredMessage<'_>) {
    put_str(out, m.topic);
    put_bytes(out, m.payload);
    out.push(m.qos as u8 | u8::from(m.retain) << 2);
    match m.props {
        Some((ctx, wire, expiry)) => {
            out.push(1);
            out.push(ctx);
            put_bytes(out, wire);
            put_opt_u32(out, expiry);
        }
        None => out.push(0),
    }
    put_opt_u64(out, m.expires_at_ms);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        self.take(N)?.try_into().map_err(|_| RecordError::Truncated)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    fn bool(&mut self) -> Result<bool, RecordError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RecordError::Invalid("flag")),
        }
    }

    fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn opt_u32(&mut self) -> Result<Option<u32>, RecordError> {
        Ok(if self.bool()? { Some(self.u32()?) } else { None })
    }

    fn opt_u64(&mut self) -> Result<Option<u64>, RecordError> {
        Ok(if self.bool()? { Some(self.u64()?) } else { None })
    }

    fn bytes(&mut self) -> Result<&'a [u8], RecordError> {
        let n = usize::try_from(self.u32()?).map_err(|_| RecordError::Truncated)?;
        self.take(n)
    }

    fn ids(&mut self) -> Result<Vec<u32>, RecordError> {
        let n = usize::try_from(self.u32()?).map_err(|_| RecordError::Invalid("subscription ids"))?;
        // Each id takes four bytes: a count larger than what is left is corrupt, not an allocation to make.
        if n > self.0.len() / 4 {
            return Err(RecordError::Truncated);
        }
        (0..n).map(|_| self.u32()).collect()
    }

    fn str(&mut self) -> Result<&'a str, RecordError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| RecordError::Invalid("UTF-8"))
    }

    fn message(&mut self) -> Result<StoredMessage<'a>, RecordError> {
        let topic = self.str()?;
        let payload = self.bytes()?;
        let flags = self.u8()?;
        let props = if self.bool()? { Some((self.u8()?, self.bytes()?, self.opt_u32()?)) } else { None };
        let expires_at_ms = self.opt_u64()?;
        Ok(StoredMessage { topic, payload, qos: qos(flags & 3)?, retain: flags & 4 != 0, props, expires_at_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record<'static>> {
        let msg = StoredMessage {
            topic: "a/b",
            payload: b"payload",
            qos: QoS::ExactlyOnce,
            retain: true,
            props: Some((0, b"\x03\x00\x04text", Some(60))),
            expires_at_ms: Some(1_800_000_000_000),
        };
        let opts = StoredSubOpts {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: false,
            id: Some(7),
            acl_check: true,
        };
        vec![
            Record::SessionOpen { client: "c", fresh: true, expiry: None, owner: None },
            Record::SessionOpen { client: "c", fresh: false, expiry: Some(3600), owner: None },
            Record::SessionOpen {
                client: "c",
                fresh: true,
                expiry: Some(60),
                owner: Some(StoredOwner { version: 5, username: Some("alice"), acl: None }),
            },
            Record::SessionOpen {
                client: "c",
                fresh: false,
                expiry: None,
                owner: Some(StoredOwner { version: 4, username: None, acl: None }),
            },
            Record::SessionOpen {
                client: "c",
                fresh: true,
                expiry: Some(60),
                owner: Some(StoredOwner { version: 5, username: Some("alice"), acl: Some("acl_file /etc/acl") }),
            },
            Record::SessionOffline { client: "c", at_ms: 42, expiry: Some(0) },
            Record::SessionEnd { client: "c" },
            Record::Subscribe { client: "c", filter: "a/#", opts },
            Record::Unsubscribe { client: "c", filter: "a/#" },
            Record::Message { id: 9, msg: msg.clone() },
            Record::Message { id: 10, msg: StoredMessage { props: None, expires_at_ms: None, ..msg.clone() } },
            Record::Enqueue { client: "c", seq: 3, msg: 9, qos: QoS::AtLeastOnce, retain: false, sub_ids: vec![1, 2] },
            Record::Routed {
                id: 11,
                msg: msg.clone(),
                retain: true,
                origin: Some(("p", 7)),
                entries: vec![
                    Entry { client: "c", seq: 4, qos: QoS::ExactlyOnce, retain: false, sub_ids: vec![] },
                    Entry { client: "d", seq: 1, qos: QoS::AtLeastOnce, retain: true, sub_ids: vec![3] },
                ],
            },
            Record::Routed { id: 12, msg: msg.clone(), retain: false, origin: None, entries: vec![] },
            Record::Sent { client: "c", seq: 3, pid: 65535 },
            Record::Released { client: "c", seq: 3 },
            Record::Done { client: "c", seq: 3 },
            Record::Inbound { client: "c", pid: 1, held: true },
            Record::Retain { topic: "a/b", msg: Some(9) },
            Record::Retain { topic: "a/b", msg: None },
            Record::Will { client: "c", will: Some((msg, 30)), due_ms: Some(5) },
            Record::Will { client: "c", will: None, due_ms: None },
        ]
    }

    #[test]
    fn every_record_reads_back_as_written() {
        for record in samples() {
            let mut buf = Vec::new();
            record.encode(&mut buf);
            assert_eq!(Record::decode(&buf), Ok(record));
        }
    }

    #[test]
    fn a_session_record_written_before_the_owner_was_recorded_still_reads() {
        // SESSION_OPEN as the broker wrote it before it recorded the owner: tag, client id "dev-1", fresh,
        // expiry Some(3600).
        let old = b"\x01\x05\x00\x00\x00dev-1\x01\x01\x10\x0e\x00\x00";
        assert_eq!(
            Record::decode(old),
            Ok(Record::SessionOpen { client: "dev-1", fresh: true, expiry: Some(3600), owner: None })
        );
        let mut again = Vec::new();
        Record::decode(old).unwrap().encode(&mut again);
        assert_eq!(again, old, "a session without an owner is still written in the old form");
    }

    #[test]
    fn a_cut_or_damaged_record_is_an_error_never_a_panic() {
        for record in samples() {
            let mut buf = Vec::new();
            record.encode(&mut buf);
            for cut in 0..buf.len() {
                assert!(Record::decode(buf.get(..cut).unwrap_or_default()).is_err(), "{record:?} cut at {cut}");
            }
            let mut longer = buf.clone();
            longer.push(0);
            assert!(Record::decode(&longer).is_err());
            for at in 0..buf.len() {
                for bit in 0..8 {
                    let mut bad = buf.clone();
                    bad[at] ^= 1 << bit;
                    let _ = Record::decode(&bad);
                }
            }
        }
    }
}
