//! Receive and transmit buffers shared by the blocking and async front ends.
//!
//! The receive buffer collects bytes until `frame_len` finds a whole packet; the packet handed to the session stays
//! in place until the next call, because the [`Event`] borrows it. The transmit buffer holds one packet from
//! [`Session::poll_transmit`] and a cursor, so a write that stops early (or an async write that is cancelled) resumes
//! where it stopped.

use mqtt_codec::frame_len;

use crate::{Error, Event, Instant, Session};

/// Cursors are `u16`: packets are measured in buffers of at most 64 KiB (larger buffers are used up to that).
pub(crate) struct Buffers<'a> {
    rx: &'a mut [u8],
    tx: &'a mut [u8],
    rx_len: u16,
    rx_used: u16,
    tx_pos: u16,
    tx_len: u16,
}

impl<'a> Buffers<'a> {
    pub(crate) fn new(rx: &'a mut [u8], tx: &'a mut [u8]) -> Self {
        let rx = match rx.len() {
            n if n > usize::from(u16::MAX) => rx.get_mut(..usize::from(u16::MAX)).unwrap_or_default(),
            _ => rx,
        };
        let tx = match tx.len() {
            n if n > usize::from(u16::MAX) => tx.get_mut(..usize::from(u16::MAX)).unwrap_or_default(),
            _ => tx,
        };
        Self { rx, tx, rx_len: 0, rx_used: 0, tx_pos: 0, tx_len: 0 }
    }

    /// The buffer sizes in use.
    pub(crate) fn limits(&self) -> (usize, usize) {
        (self.rx.len(), self.tx.len())
    }

    /// A new transport: whatever was half received or half sent belongs to the old one.
    pub(crate) fn reset(&mut self) {
        self.rx_len = 0;
        self.rx_used = 0;
        self.tx_pos = 0;
        self.tx_len = 0;
    }

    /// Drops the packet handed out by the previous [`Buffers::next_event`].
    pub(crate) fn release(&mut self) {
        if self.rx_used > 0 {
            if let Some(live) = self.rx.get_mut(..usize::from(self.rx_len)) {
                crate::session::shift_down(live, usize::from(self.rx_used));
            }
            self.rx_len = self.rx_len.saturating_sub(self.rx_used);
            self.rx_used = 0;
        }
    }

    /// Bytes still to write, taking the next packet from the session when the buffer is empty.
    pub(crate) fn pending_tx<const I: usize, const S: usize, const T: usize>(
        &mut self,
        session: &mut Session<'_, I, S, T>,
        now: Instant,
    ) -> Result<&[u8], Error> {
        if self.tx_pos >= self.tx_len {
            self.tx_pos = 0;
            let n = session.poll_transmit(now, self.tx)?.unwrap_or(0);
            self.tx_len = u16::try_from(n).map_err(|_| Error::BufferTooSmall)?;
        }
        Ok(self.tx.get(usize::from(self.tx_pos)..usize::from(self.tx_len)).unwrap_or_default())
    }

    pub(crate) fn sent(&mut self, n: usize) {
        let n = u16::try_from(n).unwrap_or(u16::MAX);
        self.tx_pos = self.tx_pos.saturating_add(n).min(self.tx_len);
    }

    /// Free space for the next read.
    pub(crate) fn read_buf(&mut self) -> &mut [u8] {
        self.rx.get_mut(usize::from(self.rx_len)..).unwrap_or_default()
    }

    pub(crate) fn received(&mut self, n: usize) {
        let n = u16::try_from(n).unwrap_or(u16::MAX);
        self.rx_len = self.rx_len.saturating_add(n).min(u16::try_from(self.rx.len()).unwrap_or(u16::MAX));
    }

    /// Whether a whole packet is buffered.
    pub(crate) fn has_frame(&self) -> Result<bool, Error> {
        let max = u32::try_from(self.rx.len()).unwrap_or(u32::MAX);
        let live = self.rx.get(..usize::from(self.rx_len)).unwrap_or_default();
        Ok(frame_len(live, max).map_err(Error::Malformed)?.is_some())
    }

    /// Hands the first buffered packet to the session. Call only after [`Buffers::has_frame`] said yes.
    pub(crate) fn next_event<const I: usize, const S: usize, const T: usize>(
        &mut self,
        session: &mut Session<'_, I, S, T>,
        now: Instant,
    ) -> Result<Option<Event<'_>>, Error> {
        let max = u32::try_from(self.rx.len()).unwrap_or(u32::MAX);
        let live = self.rx.get(..usize::from(self.rx_len)).unwrap_or_default();
        let Some(len) = frame_len(live, max).map_err(Error::Malformed)? else { return Ok(None) };
        self.rx_used = u16::try_from(len).unwrap_or(u16::MAX);
        session.on_packet(now, live.get(..len).unwrap_or_default())
    }
}
