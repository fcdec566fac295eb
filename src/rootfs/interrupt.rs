//! Ctrl-C and SIGTERM: the handler only raises a flag. Long-running loops check it, kill their
//! child (which takes its namespaces and mounts with it) and return an error, so every guard and
//! `AtomicOutput` is dropped normally and nothing half-done is left behind.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP (without SA_RESTART, so a blocked read
/// returns and the flag is seen at once).
pub fn install() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let _ = sigaction(sig, &action);
        }
    }
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// An error if a stop was requested.
pub fn check() -> anyhow::Result<()> {
    if requested() {
        anyhow::bail!("interrupted");
    }
    Ok(())
}
