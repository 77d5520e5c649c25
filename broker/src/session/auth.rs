//! MQTT 5 enhanced authentication (AUTH exchanges) behind a trait.
//!
//! The broker knows no authentication method by default, so a CONNECT naming one is refused with
//! `0x8C Bad authentication method`. An [`Authenticator`] installed with [`crate::Broker::with_authenticator`]
//! supplies methods; each exchange is a small state machine that takes the client's Authentication Data and answers.

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Send this data in an AUTH `0x18 Continue authentication` and wait for the client's next AUTH.
    Continue(Vec<u8>),
    /// Authenticated; this data (if any) goes in the CONNACK (or the final AUTH `0x00` of a re-authentication).
    Success(Option<Vec<u8>>),
    /// Refused: CONNACK `0x87 Not authorized` (or DISCONNECT `0x87` on re-authentication).
    Failure,
}

/// One authentication exchange.
pub trait AuthExchange: Send {
    /// Takes the client's Authentication Data (empty if it sent none).
    fn step(&mut self, data: &[u8]) -> AuthStep;
}

/// The authentication methods the broker supports.
pub trait Authenticator: Send + Sync {
    /// Starts an exchange for `method` on behalf of `client_id`; `None` if the method is unknown.
    fn start(&self, method: &str, client_id: &str) -> Option<Box<dyn AuthExchange>>;
}

/// No enhanced authentication methods.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMethods;

impl Authenticator for NoMethods {
    fn start(&self, _method: &str, _client_id: &str) -> Option<Box<dyn AuthExchange>> {
        None
    }
}
