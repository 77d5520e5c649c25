//! Host time through semihosting: `SYS_ELAPSED` (ticks since the program started) and `SYS_TICKFREQ` (ticks per
//! second). Under QEMU both come from the host's clock, so timeouts hold in wall-clock time however fast the
//! emulation runs. `SYS_CLOCK` is not used: in QEMU it measures the emulator's own CPU time.

use cortex_m_semihosting::{nr, syscall1};
use firmware_client::Instant;

/// Milliseconds since the program started, from the host.
pub struct Clock {
    ticks_per_sec: u64,
}

impl Clock {
    /// Asks the host for its tick rate; `None` when the debugger or emulator does not implement it.
    pub fn new() -> Option<Self> {
        // SAFETY: SYS_TICKFREQ takes no parameter block and only returns a value in r0.
        let freq = unsafe { syscall1(nr::TICKFREQ, 0) };
        (freq != 0 && freq != usize::MAX).then_some(Self { ticks_per_sec: freq as u64 })
    }

    /// Now, in milliseconds since the program started (0 if the host refuses `SYS_ELAPSED`).
    pub fn now(&self) -> Instant {
        let mut block = [0u32; 2]; // low word, high word
        // SAFETY: SYS_ELAPSED writes two words to the block r1 points at, which lives until the call returns.
        let r = unsafe { syscall1(nr::ELAPSED, block.as_mut_ptr() as usize) };
        if r != 0 {
            return Instant::from_millis(0);
        }
        let ticks = (u64::from(block[1]) << 32) | u64::from(block[0]);
        let f = self.ticks_per_sec;
        // Split so that nothing overflows: QEMU counts nanoseconds.
        Instant::from_millis(ticks / f * 1000 + ticks % f * 1000 / f)
    }
}
