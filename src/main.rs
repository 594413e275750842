//! The `runner` binary: everything lives in the library; this prints its error, if any,
//! and turns its result into the process's exit status.

use std::process::ExitCode;

fn main() -> ExitCode {
    let result = runner::main(std::env::args_os());
    if let Err(e) = &result {
        eprint!("{}", e.render(runner::stderr_color()));
    }
    ExitCode::from(runner::exit_status(&result))
}
