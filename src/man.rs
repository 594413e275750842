//! `runner __man DIR` (hidden): the man pages, from the clap definitions with
//! clap_mangen: `runner.1`, and one per command (`runner-run.1`, `runner-cache-prune.1`,
//! …). The checked-in pages in man/ are these; a test fails when they differ from what
//! the code says (regenerate: `cargo run -- __man man`). A hidden command rather than an
//! example or an xtask: the pages are then made by the binary users have, from the
//! very definitions it parses with, and need no second build.

use crate::error::{Error, Outcome};
use clap::CommandFactory;
use std::ffi::OsString;
use std::path::PathBuf;

/// The hidden command's name.
pub const COMMAND: &str = "__man";

/// Writes every page into the folder given (made when missing).
pub fn write(args: &[OsString]) -> Result<Outcome, Error> {
    let dir = PathBuf::from(args.first().cloned().unwrap_or_else(|| "man".into()));
    std::fs::create_dir_all(&dir).map_err(Error::path("make the folder", &dir))?;
    let command = crate::cli::Cli::command();
    clap_mangen::generate_to(command, &dir).map_err(Error::path("write man pages into", &dir))?;
    Ok(Outcome::Success)
}
