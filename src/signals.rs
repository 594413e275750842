//! The one signal listener of every driver: SIGINT, SIGTERM and SIGHUP become events on a
//! channel (nothing exits from inside a handler), and [`Interrupt`] says which came and
//! what exit status it means.

use crossbeam_channel::{unbounded, Receiver};

/// Why a run ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Int,
    Term,
    Hup,
}

impl Interrupt {
    /// 128 + the signal's number, as shells report it.
    pub fn exit_status(self) -> u8 {
        match self {
            Interrupt::Int => 130,
            Interrupt::Term => 143,
            Interrupt::Hup => 129,
        }
    }

    /// "interrupted (SIGINT)", for notes and the summary.
    pub fn describe(self) -> &'static str {
        match self {
            Interrupt::Int => "interrupted (SIGINT)",
            Interrupt::Term => "terminated (SIGTERM)",
            Interrupt::Hup => "hung up (SIGHUP)",
        }
    }
}

/// Starts listening; every signal that arrives is sent on the returned channel, in order.
pub fn listen() -> std::io::Result<Receiver<Interrupt>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    let (tx, rx) = unbounded();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let event = match signal {
                    SIGINT => Interrupt::Int,
                    SIGTERM => Interrupt::Term,
                    _ => Interrupt::Hup,
                };
                // A decision hashing sources may hold the thread that reads this
                // channel: it gives up at once.
                crate::state::files::stop_hashing();
                if tx.send(event).is_err() {
                    return;
                }
            }
        })?;
    Ok(rx)
}
