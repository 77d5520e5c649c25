//! A `no_std`, heap-free MQTT 3.1.1 client for microcontrollers, with MQTT 5.0 behind the `v5` feature.
//!
//! Data flows through it in this order:
//!
//! 1. [`session`]: the sans-IO core. [`Session`] takes framed packets from the broker and the caller's `now`, and
//!    hands out packets to send and [`Event`]s. It keeps every unacknowledged PUBLISH serialized in a buffer the
//!    caller lends, so a resumed session resends it byte for byte with DUP=1 and the same packet identifier.
//! 2. `conn` (private): the receive and transmit buffers both front ends share, with framing by
//!    `mqtt_codec::frame_len`.
//! 3. [`blocking`]: [`blocking::Client`] over `embedded_io::{Read, Write}`.
//! 4. `asynch` (feature `async`): `asynch::Client` over `embedded_io_async::{Read, Write}`.
//!
//! Capacities are const generics: `INFLIGHT` outbound messages (in flight or queued while offline) and inbound QoS 2
//! messages awaiting PUBREL, `SUBS` subscriptions, `TOPIC` bytes per stored topic filter. Byte buffers (receive,
//! transmit, store) are lent by the caller. A full table or buffer is an error that hands the value back
//! ([`Rejected`]), never a panic, and nothing the broker sends can panic the client.
//!
//! ```
//! use firmware_client::{Instant, Message, Options, Session, QoS, Event};
//!
//! let mut store = [0u8; 256];
//! let mut options = Options::new("sensor-1");
//! # #[cfg(feature = "v5")] { options.version = firmware_client::ProtocolVersion::V311; }
//! let mut session: Session<'_, 4, 2, 32> = Session::new(options, &mut store);
//! let temp = session.subscribe("cmd/sensor-1/#", QoS::AtLeastOnce).unwrap();
//! // Accepted while offline: sent after CONNACK, in order.
//! session.publish(Message::new("sensors/1/t", b"21.5", QoS::AtLeastOnce)).unwrap();
//!
//! session.connect(Instant::from_millis(0));
//! let mut out = [0u8; 128];
//! let n = session.poll_transmit(Instant::from_millis(0), &mut out).unwrap().unwrap();
//! assert_eq!(out[0], 0x10); // CONNECT
//! let event = session.on_packet(Instant::from_millis(5), &[0x20, 2, 0, 0]).unwrap(); // CONNACK
//! assert!(matches!(event, Some(Event::Connected { session_present: false })));
//! # let _ = (n, temp);
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]

#[macro_use]
mod fmt;

#[cfg(feature = "async")]
pub mod asynch;
pub mod blocking;
mod conn;
pub mod session;

pub use mqtt_codec::{DecodeError, EncodeError, PacketId, ProtocolVersion, QoS, ReasonCode};
pub use session::{Session, SubId};

/// A point in time from the caller's clock, in milliseconds since any fixed origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(u64);

impl Instant {
    /// The instant `ms` milliseconds after the clock's origin.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the clock's origin.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// `ms` milliseconds later (saturating).
    pub const fn after(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }
}

/// The will message the broker publishes if the link dies without DISCONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LastWill<'a> {
    /// Topic name (no wildcards).
    pub topic: &'a str,
    /// Payload.
    pub payload: &'a [u8],
    /// QoS.
    pub qos: QoS,
    /// Whether the broker retains it.
    pub retain: bool,
}

/// What CONNECT says, and the client's timeouts.
#[derive(Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Options<'a> {
    /// Client identifier; keep it stable to resume a session.
    pub client_id: &'a str,
    /// User name.
    pub username: Option<&'a str>,
    /// Password (MQTT 3.1.1 requires a user name with it).
    pub password: Option<&'a [u8]>,
    /// Will message.
    pub will: Option<LastWill<'a>>,
    /// Keep alive in seconds; 0 turns PINGREQ off. Default 60.
    pub keep_alive_secs: u16,
    /// Clean Session (3.1.1) / Clean Start (5): `false` (the default) resumes the broker's stored session.
    pub clean_start: bool,
    /// How long to wait for CONNACK and PINGRESP before declaring the link dead. Default 10 s.
    pub response_timeout_ms: u32,
    /// Protocol version (`v5` feature): `V5` (default) or `V311`.
    #[cfg(feature = "v5")]
    pub version: ProtocolVersion,
    /// MQTT 5 Session Expiry Interval in seconds (`v5` feature); 0 ends the session with the connection.
    /// Default 3600, so a reconnect within an hour resumes.
    #[cfg(feature = "v5")]
    pub session_expiry_secs: u32,
}

impl<'a> Options<'a> {
    /// Defaults for `client_id`: no credentials or will, keep alive 60 s, resume sessions, 10 s response timeout.
    pub const fn new(client_id: &'a str) -> Self {
        Self {
            client_id,
            username: None,
            password: None,
            will: None,
            keep_alive_secs: 60,
            clean_start: false,
            response_timeout_ms: 10_000,
            #[cfg(feature = "v5")]
            version: ProtocolVersion::V5,
            #[cfg(feature = "v5")]
            session_expiry_secs: 3600,
        }
    }
}

/// An application message, to publish or received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Message<'p> {
    /// Topic name.
    pub topic: &'p str,
    /// Payload.
    pub payload: &'p [u8],
    /// QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
}

impl<'p> Message<'p> {
    /// A message that is not retained.
    pub const fn new(topic: &'p str, payload: &'p [u8], qos: QoS) -> Self {
        Self { topic, payload, qos, retain: false }
    }
}

/// What the session reports to the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Event<'p> {
    /// CONNACK accepted the connection; `session_present` tells whether the broker resumed the session.
    Connected {
        /// The broker kept our session (subscriptions and in-flight messages).
        session_present: bool,
    },
    /// A message arrived, with the first subscription whose filter matches its topic (to pick a handler).
    /// QoS 2 messages are delivered exactly once.
    Message(Message<'p>, Option<SubId>),
    /// A QoS 1 or 2 publish completed (PUBACK or PUBCOMP; MQTT 5 may carry a failure reason).
    Published {
        /// The identifier `publish` returned.
        pid: PacketId,
        /// `Success` unless an MQTT 5 broker refused the message.
        reason: ReasonCode,
    },
    /// SUBACK: the granted QoS, or `None` if the broker refused (the subscription is then removed).
    Subscribed {
        /// The subscription.
        sub: SubId,
        /// Granted maximum QoS.
        granted: Option<QoS>,
    },
    /// UNSUBACK: the subscription is gone.
    Unsubscribed {
        /// The former subscription.
        sub: SubId,
    },
}

/// A request the session could not take; the value is handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Rejected<T> {
    /// No room now: a capacity or buffer is full. Retry after acks have drained it.
    Full(T),
    /// Never acceptable: an invalid topic or filter, or too large for the buffers or the broker.
    Invalid(T),
}

impl<T> Rejected<T> {
    /// The value handed back.
    pub fn into_inner(self) -> T {
        match self {
            Self::Full(v) | Self::Invalid(v) => v,
        }
    }
}

/// Why the link was declared dead. After any of these, reconnect and call `connect` again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The broker sent bytes that do not decode.
    Malformed(DecodeError),
    /// The broker sent a packet of this type that a server may not send, or not now.
    Unexpected(u8),
    /// CONNACK refused the connection.
    Refused(ReasonCode),
    /// The broker sent DISCONNECT (MQTT 5) with this reason.
    ServerDisconnect(ReasonCode),
    /// No CONNACK or PINGRESP within the response timeout.
    Timeout,
    /// The broker sent more QoS 1/2 messages than we can track without acks going out.
    Overrun,
    /// A packet did not fit the transmit buffer.
    Encode(EncodeError),
    /// A lent buffer is too small.
    BufferTooSmall,
    /// A packet arrived while no connection was open.
    NotConnected,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Malformed(_) => "malformed packet from broker",
            Self::Unexpected(_) => "unexpected packet from broker",
            Self::Refused(_) => "connection refused",
            Self::ServerDisconnect(_) => "disconnected by broker",
            Self::Timeout => "broker did not answer in time",
            Self::Overrun => "too many unacknowledged inbound messages",
            Self::Encode(_) => "packet does not fit the buffer",
            Self::BufferTooSmall => "buffer too small",
            Self::NotConnected => "not connected",
        })
    }
}

impl core::error::Error for Error {}
