//! The job-file loader on arbitrary input: it must return a model or diagnostics, and
//! rendering those diagnostics must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match runner::jobfile::parse(Path::new("fuzz.toml"), text.to_string()) {
        Ok(file) => {
            let _ = runner::graph::render_text(&file);
            let _ = runner::graph::render_dot(&file);
        }
        Err(e) => {
            let _ = e.render(false);
        }
    }
});
