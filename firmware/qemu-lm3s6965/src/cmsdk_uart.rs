//! A polled driver for the MPS2 AN386's UART0, an ARM CMSDK APB UART at 0x4000_4000, as
//! `embedded_io::{Read, Write}`. It holds one received byte at a time (no FIFO).
//!
//! Under QEMU (`-serial chardev:uart0`) the UART is a TCP connection to the broker. QEMU does not pace the UART; the
//! smallest valid baud divider (16) is set because a smaller one is invalid.

use embedded_io::ErrorKind;

use crate::clock::Clock;

const BASE: usize = 0x4000_4000;
const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;

fn read_reg(off: usize) -> u32 {
    // SAFETY: BASE + off is a CMSDK UART register on this board; reading DATA only takes the received byte.
    unsafe { core::ptr::read_volatile((BASE + off) as *const u32) }
}

fn write_reg(off: usize, v: u32) {
    // SAFETY: BASE + off is a CMSDK UART register on this board, and only this driver touches the UART.
    unsafe { core::ptr::write_volatile((BASE + off) as *mut u32, v) }
}

/// UART0. `read` waits at most `wait_ms` for the first byte, then reports `TimedOut`, which the client takes as
/// "nothing yet", so keepalive and the application's own deadline keep running.
pub struct Uart<'c> {
    clock: &'c Clock,
    wait_ms: u64,
}

impl<'c> Uart<'c> {
    /// Enables UART0: transmit and receive on.
    pub fn new(clock: &'c Clock, wait_ms: u64) -> Self {
        write_reg(CTRL, 0);
        write_reg(BAUDDIV, 16);
        write_reg(CTRL, CTRL_TX_EN | CTRL_RX_EN);
        Self { clock, wait_ms }
    }
}

impl embedded_io::ErrorType for Uart<'_> {
    type Error = ErrorKind;
}

impl embedded_io::Read for Uart<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if buf.is_empty() {
            return Ok(0);
        }
        let until = self.clock.now().after(self.wait_ms);
        while read_reg(STATE) & STATE_RX_FULL == 0 {
            if self.clock.now() >= until {
                return Err(ErrorKind::TimedOut);
            }
        }
        let mut n = 0;
        for b in buf.iter_mut() {
            if read_reg(STATE) & STATE_RX_FULL == 0 {
                break;
            }
            *b = read_reg(DATA) as u8;
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::Write for Uart<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        let mut n = 0;
        for &b in buf {
            let until = self.clock.now().after(self.wait_ms);
            while read_reg(STATE) & STATE_TX_FULL != 0 {
                if self.clock.now() >= until {
                    return if n == 0 { Err(ErrorKind::TimedOut) } else { Ok(n) };
                }
            }
            write_reg(DATA, u32::from(b));
            n += 1;
        }
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}
