//! `runner`: a declarative job runner. A TOML job graph (`jobfile`) is checked
//! (`graph`), scheduled (`scheduler`) onto a process pool (`exec`), with queues between
//! jobs (`queue`), one terminal writer (`display`) and reports at the end (`report`);
//! `run` wires them together. See ARCHITECTURE.md for the map and the invariants.

pub mod broker;
pub mod cli;
pub mod diagnostic;
pub mod display;
pub mod exec;
pub mod graph;
pub mod jobfile;
pub mod queue;
pub mod report;
pub mod run;
pub mod scheduler;
pub mod schema;
pub mod template;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command};
use std::io::Write;

/// Exit status for an invalid job file or command line (nothing was run).
pub const EXIT_INVALID: i32 = 2;

/// Runs the command line `args` (program name first) and returns the exit status.
pub fn main_with_args(args: Vec<std::ffi::OsString>) -> i32 {
    let cli = match Cli::try_parse_from(cli::normalize(args)) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_INVALID } else { 0 };
        }
    };
    let color = display::Options::detect(false).color;
    match cli.command {
        Command::Run(args) => {
            let file = match jobfile::load(&args.file) {
                Ok(file) => file,
                Err(e) => return invalid(&e.render(color)),
            };
            let broker = match args.broker.broker.as_deref() {
                None => None,
                Some(url) => match broker::authkey(args.broker.authkey_file.as_deref()) {
                    Ok(key) => Some(broker::coordinator::Options {
                        url: url.to_string(),
                        no_local: args.no_local,
                        lease: args.lease,
                        max_deliveries: args.max_deliveries,
                        key,
                    }),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return EXIT_INVALID;
                    }
                },
            };
            // A report that cannot be written would be lost after the run: say so first.
            for path in [&args.report, &args.junit].into_iter().flatten() {
                if let Err(e) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return EXIT_INVALID;
                }
            }
            let options = run::Options {
                pool: args.pool.map(|p| p as usize),
                fail_fast: args.fail_fast,
                quiet: args.quiet,
                logs: args.logs,
                report: args.report,
                junit: args.junit,
                grace: args.grace,
                broker,
            };
            match run::run(file, options) {
                Ok(code) => code,
                Err(message) => {
                    eprintln!("error: {message}");
                    1
                }
            }
        }
        Command::Check { file } => match jobfile::load(&file) {
            Ok(f) => {
                let tasks: Option<u64> = f.jobs.iter().map(|j| j.items.count()).sum();
                let tasks =
                    tasks.map_or("tasks fed by queues".to_string(), |n| format!("{n} tasks"));
                println!(
                    "{}: ok ({} jobs, {} queues, {tasks})",
                    file.display(),
                    f.jobs.len(),
                    f.queues.len()
                );
                0
            }
            Err(e) => invalid(&e.render(color)),
        },
        Command::Graph { dot, file } => match jobfile::load(&file) {
            Ok(f) => {
                let text = if dot {
                    graph::render_dot(&f)
                } else {
                    graph::render_text(&f)
                };
                print(&text)
            }
            Err(e) => invalid(&e.render(color)),
        },
        Command::Worker(args) => broker::command::worker(args, color),
        Command::Schema => print(&schema::json_schema()),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut command, "runner", &mut out);
            print(&String::from_utf8_lossy(&out))
        }
    }
}

fn invalid(message: &str) -> i32 {
    eprint!("{message}");
    EXIT_INVALID
}

fn print(text: &str) -> i32 {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            1
        }
    }
}
