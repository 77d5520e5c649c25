//! A strict, `no_std`, allocation-free codec for MQTT 3.1, 3.1.1 and 5.0.
//!
//! The crate is shared by the broker and the firmware client. Data flows through it in this order:
//!
//! 1. [`frame`]: [`frame_len`] tells whether a whole packet has arrived, and rejects an oversized one from its
//!    fixed header alone.
//! 2. [`packet`]: [`decode`] turns one framed packet into a [`Packet`] that borrows from the input;
//!    [`Packet::encode`] writes one into a caller's buffer, and [`Packet::encoded_len`] says how long it will be.
//!    A device client uses the narrower entry points instead, so that only what it uses is linked: per packet type
//!    and version ([`Publish::encode_v311`], [`Publish::encode_v5`], [`Connect::encode_v311`], ...) and decoders of
//!    the packets a server sends ([`decode_from_server_v311`], [`decode_from_server_v5`]). The 3.1.1 ones link no
//!    MQTT 5 property code. [`decode`] and [`Packet::encode`] are built on the same functions.
//! 3. [`properties`]: MQTT 5 properties, validated on decode and iterated without allocation.
//! 4. [`topic`]: validated [`TopicName`] and [`TopicFilter`] types, wildcard matching and shared subscriptions.
//! 5. [`reason`]: MQTT 5 reason codes, with the MQTT 3.x return codes mapped onto them.
//! 6. [`error`]: one typed error per rule, naming the specification statement where there is one.
//!
//! Decoding is strict: everything the specifications call malformed or a protocol error is rejected with a
//! [`DecodeError`]. Role rules ("only a server sends SUBACK", "CONNECT comes first") are not the codec's business:
//! they live in the sessions of each side.
//!
//! ```
//! use mqtt_codec::{decode, frame_len, Packet, ProtocolVersion, Publish, QosPid, TopicName, Properties};
//!
//! let publish = Packet::Publish(Publish {
//!     dup: false,
//!     qos_pid: QosPid::AtMostOnce,
//!     retain: false,
//!     topic: TopicName::new("sensors/t1").unwrap(),
//!     properties: Properties::empty(),
//!     payload: b"21.5",
//! });
//! let mut buf = [0u8; 64];
//! let n = publish.encode(ProtocolVersion::V311, &mut buf).unwrap();
//! assert_eq!(frame_len(&buf[..n], 1024), Ok(Some(n)));
//! assert_eq!(decode(&buf[..n], ProtocolVersion::V311), Ok(publish));
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

pub mod error;
pub mod frame;
pub mod packet;
pub mod properties;
pub mod reason;
pub mod topic;
mod types;
mod wire;

pub use error::{DecodeError, EncodeError};
pub use frame::{MAX_REMAINING_LENGTH, frame_len};
pub use packet::{
    Ack, Auth, ConnAck, Connect, Disconnect, List, ListItem, Packet, PacketType, Publish, SubAck, Subscribe,
    Subscription, UnsubAck, Unsubscribe, Will, decode, decode_from_server_v5, decode_from_server_v311, encode_pingreq,
    encode_pingresp,
};
pub use properties::{Properties, Property, PropertyContext, PropertyId};
pub use reason::ReasonCode;
pub use topic::{SharedFilter, TopicFilter, TopicName, matches};
pub use types::{PacketId, ProtocolVersion, QoS, QosPid, RetainHandling, SubscriptionOptions};
