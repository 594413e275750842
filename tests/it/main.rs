//! Integration tests: each drives the real `runner` binary.

mod util;

mod cli;
mod control;
mod errors;
mod queues;
mod reports;
mod running;
