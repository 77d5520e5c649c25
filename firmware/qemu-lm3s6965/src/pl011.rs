//! A polled driver for the lm3s6965evb's UART0, an ARM PL011 at 0x4000_C000, as `embedded_io::{Read, Write}`.
//!
//! Under QEMU (`-serial chardev:uart0`) the UART is a TCP connection to the broker. QEMU does not pace the UART, so
//! no baud rate is set; on the real board, program `UARTIBRD`/`UARTFBRD` from the system clock first.

use embedded_io::ErrorKind;

use crate::clock::Clock;

const BASE: usize = 0x4000_C000;
const DR: usize = 0x000; // data
const FR: usize = 0x018; // flags
const LCRH: usize = 0x02C; // line control
const CR: usize = 0x030; // control

const FR_RXFE: u32 = 1 << 4; // receive FIFO empty
const FR_TXFF: u32 = 1 << 5; // transmit FIFO full
const LCRH_FEN: u32 = 1 << 4; // FIFOs on
const LCRH_WLEN_8: u32 = 0b11 << 5; // 8 data bits
const CR_UARTEN: u32 = 1 << 0;
const CR_TXE: u32 = 1 << 8;
const CR_RXE: u32 = 1 << 9;
const DR_ERRORS: u32 = 0xF00; // overrun, break, parity and framing errors next to the byte

fn read_reg(off: usize) -> u32 {
    // SAFETY: BASE + off is a PL011 register on this board; reading it has no effect beyond the UART's FIFO.
    unsafe { core::ptr::read_volatile((BASE + off) as *const u32) }
}

fn write_reg(off: usize, v: u32) {
    // SAFETY: BASE + off is a PL011 register on this board, and only this driver touches the UART.
    unsafe { core::ptr::write_volatile((BASE + off) as *mut u32, v) }
}

/// UART0. `read` waits at most `wait_ms` for the first byte, then reports `TimedOut`, which the client takes
/// as "nothing yet", so keepalive and the application's own deadline keep running.
pub struct Uart<'c> {
    clock: &'c Clock,
    wait_ms: u64,
}

impl<'c> Uart<'c> {
    /// Enables UART0: 8 data bits, FIFOs on, receive and transmit on.
    pub fn new(clock: &'c Clock, wait_ms: u64) -> Self {
        write_reg(CR, 0);
        write_reg(LCRH, LCRH_WLEN_8 | LCRH_FEN);
        write_reg(CR, CR_UARTEN | CR_TXE | CR_RXE);
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
        while read_reg(FR) & FR_RXFE != 0 {
            if self.clock.now() >= until {
                return Err(ErrorKind::TimedOut);
            }
        }
        let mut n = 0;
        for b in buf.iter_mut() {
            if read_reg(FR) & FR_RXFE != 0 {
                break;
            }
            let d = read_reg(DR);
            if d & DR_ERRORS != 0 {
                return Err(ErrorKind::InvalidData);
            }
            *b = d as u8;
            n += 1;
        }
        Ok(n)
    }
}

impl embedded_io::Write for Uart<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        let Some(&first) = buf.first() else { return Ok(0) };
        let until = self.clock.now().after(self.wait_ms);
        while read_reg(FR) & FR_TXFF != 0 {
            if self.clock.now() >= until {
                return Err(ErrorKind::TimedOut);
            }
        }
        write_reg(DR, u32::from(first));
        let mut n = 1;
        for &b in buf.iter().skip(1) {
            if read_reg(FR) & FR_TXFF != 0 {
                break;
            }
            write_reg(DR, u32::from(b));
            n += 1;
        }
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}
