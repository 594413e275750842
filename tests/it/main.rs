//! Integration tests: each drives the real `runner` binary.

mod util;

mod broker_faults;
mod cache;
mod cache_http;
mod cache_prune;
mod cache_redis;
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
pub mod nginx;
mod output;
mod prefetch;
mod processes;
pub mod queues;
mod quoting;
mod redaction;
mod remote_output;
mod reports;
mod resources;
mod resources_dist;
mod resume;
mod running;
mod scheduling;
mod secrets;
mod terminal;
mod uptodate;
mod writes;
