//! Shell completions: clap's scripts for every shell, plus, for bash, zsh and fish, the
//! names of the jobs of the file typed so far (`runner run FILE <TAB>`,
//! `runner plan FILE <TAB>`, `runner FILE <TAB>`). Those come from the hidden command
//! `runner __complete-jobs WORDS…`, given the words before the cursor: it decides here,
//! in Rust, whether the cursor is where a job name goes (knowing which options take a
//! value), and prints the file's job names, or exits 1 so that the script falls back to
//! clap's completion.

use crate::cli::Cli;
use clap::CommandFactory;
use clap_complete::Shell;

/// The hidden command the scripts call.
pub const COMMAND: &str = "__complete-jobs";

/// The completion script for `shell`.
pub fn script(shell: Shell) -> String {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "runner", &mut out);
    let mut script = String::from_utf8_lossy(&out).into_owned();
    script.push_str(match shell {
        Shell::Bash => BASH,
        Shell::Zsh => ZSH,
        Shell::Fish => FISH,
        _ => "",
    });
    script
}

const BASH: &str = r#"
# Job names after `runner [run|plan|graph] FILE`.
_runner_jobs() {
    local jobs
    if [[ ${COMP_WORDS[COMP_CWORD]} != -* ]] \
        && jobs=$(runner __complete-jobs "${COMP_WORDS[@]:1:COMP_CWORD-1}" 2>/dev/null); then
        COMPREPLY=($(compgen -W "$jobs" -- "${COMP_WORDS[COMP_CWORD]}"))
        return 0
    fi
    _runner "$@"
}
complete -F _runner_jobs -o nosort -o bashdefault -o default runner
"#;

const ZSH: &str = r#"
# Job names after `runner [run|plan|graph] FILE`.
_runner_jobs() {
    local -a jobs
    if [[ ${words[CURRENT]} != -* ]] \
        && jobs=(${(f)"$(runner __complete-jobs ${words[2,CURRENT-1]} 2>/dev/null)"}) \
        && (( ${#jobs} )); then
        compadd -a jobs
        return 0
    fi
    _runner "$@"
}
compdef _runner_jobs runner
"#;

const FISH: &str = r#"
# Job names after `runner [run|plan|graph] FILE`.
function __runner_jobs
    set -l words (commandline -opc)
    runner __complete-jobs $words[2..-1] 2>/dev/null
end
complete -c runner -n '__runner_jobs >/dev/null' -f -a '(__runner_jobs)'
"#;

/// The job file named by `words` (the command line after `runner`, up to the word being
/// completed) when the next word is a job name: after `run FILE`, `plan FILE`,
/// `graph FILE` or `FILE`, and not right after an option that takes a value.
pub fn job_file(words: &[String]) -> Option<std::path::PathBuf> {
    let root = Cli::command();
    let first = words.first()?;
    let (sub, rest) = match first.as_str() {
        "run" | "plan" | "graph" => (first.as_str(), &words[1..]),
        w if w.starts_with('-') || crate::cli::COMMANDS.contains(&w) => return None,
        _ => ("run", words),
    };
    let command = root.find_subcommand(sub)?;
    let takes_value = |word: &str| {
        command.get_arguments().any(|a| {
            let long = a.get_long().is_some_and(|l| word == format!("--{l}"));
            let short = a.get_short().is_some_and(|s| word == format!("-{s}"));
            (long || short) && a.get_action().takes_values()
        })
    };
    let mut file = None;
    let mut skip = false;
    let mut last_option_takes_value = false;
    for word in rest {
        // bash splits `--report=x` into `--report`, `=`, `x`: the value follows.
        if word == "=" {
            skip = last_option_takes_value;
            continue;
        }
        if std::mem::take(&mut skip) {
            continue;
        }
        if word.starts_with('-') {
            last_option_takes_value = !word.contains('=') && takes_value(word);
            skip = last_option_takes_value;
            continue;
        }
        last_option_takes_value = false;
        file.get_or_insert_with(|| word.clone());
    }
    // The word being completed is a value of the option before it.
    (!skip).then_some(file).flatten().map(|w| as_path(&w))
}

/// A word as the shell typed it, as the path it means: quotes and backslashes removed,
/// a leading `~/` made the home folder.
fn as_path(word: &str) -> std::path::PathBuf {
    let mut text = String::new();
    let mut quote = None;
    let mut chars = word.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\'', None) | ('"', None) => quote = Some(c),
            (c, Some(q)) if c == q => quote = None,
            ('\\', q) if q != Some('\'') => text.extend(chars.next()),
            (c, _) => text.push(c),
        }
    }
    match (text.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => std::path::Path::new(&home).join(rest),
        _ => std::path::PathBuf::from(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(line: &str) -> Option<String> {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        job_file(&words).map(|p| p.display().to_string())
    }

    #[test]
    fn job_names_go_after_the_file() {
        assert_eq!(file("run jobs/ci.toml"), Some("jobs/ci.toml".into()));
        assert_eq!(file("jobs/ci.toml"), Some("jobs/ci.toml".into()));
        assert_eq!(file("plan jobs/ci.toml fmt"), Some("jobs/ci.toml".into()));
        assert_eq!(
            file("graph --dot jobs/ci.toml"),
            Some("jobs/ci.toml".into())
        );
        assert_eq!(
            file("run --pool 4 jobs/ci.toml"),
            Some("jobs/ci.toml".into())
        );
        assert_eq!(
            file("run jobs/ci.toml --set a=b"),
            Some("jobs/ci.toml".into())
        );
    }

    #[test]
    fn elsewhere_the_shell_completes_as_usual() {
        assert_eq!(file("run"), None);
        assert_eq!(file(""), None);
        assert_eq!(file("check jobs/ci.toml"), None);
        assert_eq!(file("worker jobs/ci.toml"), None);
        // The value of an option comes next.
        assert_eq!(file("run jobs/ci.toml --pool"), None);
        assert_eq!(file("run jobs/ci.toml --report"), None);
        // bash's words for `--report=<TAB>` and `--set region=<TAB>`.
        assert_eq!(file("run jobs/ci.toml --report ="), None);
        assert_eq!(
            file("run jobs/ci.toml --report = r.json"),
            Some("jobs/ci.toml".into())
        );
        assert_eq!(file("run jobs/ci.toml --set region ="), None);
    }

    #[test]
    fn the_file_word_is_dequoted() {
        let words = |w: &[&str]| {
            let w: Vec<String> = w.iter().map(|s| s.to_string()).collect();
            job_file(&w).map(|p| p.display().to_string())
        };
        assert_eq!(
            words(&["run", "'my jobs.toml'"]),
            Some("my jobs.toml".into())
        );
        assert_eq!(
            words(&["run", "my\\ jobs.toml"]),
            Some("my jobs.toml".into())
        );
        assert_eq!(words(&["run", "\"a b.toml\""]), Some("a b.toml".into()));
    }
}
