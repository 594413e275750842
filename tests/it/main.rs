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
mod labels;
mod lines;
pub mod nginx;
mod output;
mod processes;
pub mod queues;
mod quoting;
mod redaction;
mod report_schema;
mod reports;
mod resources;
mod resources_dist;
mod resume;
mod running;
mod scheduling;
mod secrets;
mod services;
mod slurm;
mod terminal;
mod uptodate;
mod writes;
