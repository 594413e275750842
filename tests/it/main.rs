//! Integration tests: each drives the real `runner` binary.

mod util;

mod cli;
pub mod control;
mod distributed;
mod errors;
mod processes;
pub mod queues;
mod quoting;
mod reports;
mod running;
mod terminal;
mod writes;
