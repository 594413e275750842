//! `runner`: a declarative job runner. A TOML job graph (`jobfile`) is checked, scheduled
//! (`scheduler`) onto a process pool (`exec`), with queues between jobs (`queue`), one
//! terminal writer (`display`) and reports at the end (`report`); `run` drives a run and
//! `session` holds what every driver shares. See ARCHITECTURE.md for the map and the
//! invariants.
//!
//! The public surface is what the binary and the fuzz target need: [`main`], [`Error`]
//! and [`exit_status`], and the loader and the graph renderings.

#[cfg(feature = "distributed")]
mod broker;
mod cache;
mod changed;
mod cli;
mod commands;
mod completions;
mod diagnostic;
mod display;
mod error;
mod escapees;
mod exec;
mod fds;
pub mod graph;
mod held;
pub mod jobfile;
mod lost;
mod man;
mod pattern;
mod plan;
mod queue;
mod render;
mod report;
mod run;
mod scheduler;
mod schema;
mod scrub;
mod secrets;
mod service;
mod session;
mod shell;
mod signals;
mod size;
mod state;
mod sys;
mod task;
mod template;
#[cfg(all(test, feature = "distributed"))]
mod test_redis;
mod watchdog;

pub use error::{exit_status, Error, Outcome};

/// Runs the command line `args` (program name first). Prints what the command prints;
/// an error is returned, not printed (see [`Error::render`]).
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<Outcome, Error> {
    // Before any thread starts, so that every thread has it blocked.
    sys::block_child_signal();
    commands::dispatch(args.into_iter().collect())
}

/// Whether messages to stderr may be coloured (a terminal, `NO_COLOR` unset).
pub fn stderr_color() -> bool {
    display::Options::detect(false).color
}
