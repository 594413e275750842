//! The house's own rules, read from its sources: errors are types (src/error.rs, or a
//! module's own enum converted into `Error`), never strings (issue 10; issue 23, point
//! 19). This lives outside src/ so that what it looks for is named nowhere in src/.

use std::path::{Path, PathBuf};

/// The last type argument of each `Result<…>` in `text` that is `String`, and each
/// `map_err(|e| e.to_string())`: their byte offsets.
fn stringly(text: &str) -> Vec<usize> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("Result<") {
        let args = &text[at + "Result<".len()..];
        // The start of the argument being read, and the one before it.
        let (mut depth, mut last, mut before, mut prev) = (0usize, 0, 0, ' ');
        for (i, c) in args.char_indices() {
            match c {
                '<' | '(' | '[' => depth += 1,
                '>' if prev == '-' => {}
                '>' | ')' | ']' if depth > 0 => depth -= 1,
                '>' => {
                    let mut arg: String = args[last..i].split_whitespace().collect();
                    if arg.is_empty() {
                        // A trailing comma.
                        arg = args[before..last - 1].split_whitespace().collect();
                    }
                    // `io::Result<String>` has one argument: its value.
                    let error = last > 0;
                    if error && (arg == "String" || arg == "std::string::String") {
                        found.push(at);
                    }
                    break;
                }
                ',' if depth == 0 => (before, last) = (last, i + 1),
                _ => {}
            }
            prev = c;
        }
    }
    let squeezed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    found.extend(
        squeezed
            .match_indices("map_err(|e| e.to_string())")
            .map(|(i, _)| i),
    );
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_guard_finds_what_it_looks_for() {
    assert_eq!(stringly("fn f() -> Result<u8, String> {").len(), 1);
    assert_eq!(
        stringly("-> Result<\n    (Arc<JobFile>, Vec<String>),\n    String,\n>").len(),
        1
    );
    assert_eq!(stringly("Result<Option<Stat>, String>").len(), 1);
    assert_eq!(stringly("Result<impl Fn() -> u8, String>").len(), 1);
    assert_eq!(stringly("x.map_err(|e|\n e.to_string())").len(), 1);
    assert!(stringly("Result<String, Error> Result<Vec<String>, E> io::Result<String>").is_empty());
}

#[test]
fn no_error_is_a_string() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let found = stringly(&text).len();
        if found > 0 {
            let name = path.strip_prefix(&src).unwrap().display().to_string();
            wrong.push(format!("{name}: {found}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "errors as strings (`Result<_, String>`, `map_err(|e| e.to_string())`); make them \
         types (src/error.rs, or a module's own enum converted into `Error`):\n{}",
        wrong.join("\n")
    );
}
