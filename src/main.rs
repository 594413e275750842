//! The `runner` binary: everything lives in the library; this turns its result into the
//! process's exit status.

fn main() {
    let code = runner::main_with_args(std::env::args_os().collect());
    std::process::exit(code);
}
