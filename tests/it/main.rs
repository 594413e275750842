//! Integration tests: each drives the real `runner` binary.

mod util;

mod broker_faults;
mod changed;
mod choosing;
mod cli;
pub mod control;
mod deadlock;
pub mod distributed;
mod errors;
mod house;
mod html;
mod lines;
mod output;
mod processes;
pub mod queues;
mod quoting;
mod reports;
mod resources;
mod resume;
mod running;
mod scheduling;
mod secrets;
mod terminal;
mod uptodate;
mod writes;
