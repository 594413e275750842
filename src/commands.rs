//! The commands of the command line, each a function from its arguments to an
//! [`Outcome`]: `run`, `check`, `plan`, `graph`, `report`, `cache`, `worker`, `schema`,
//! `completions`.

use crate::cli::{self, Cli, Command, PlanArgs, ReportArgs, RunArgs};
use crate::error::{Error, Outcome};
use crate::jobfile::{select::select, JobFile};
use crate::task::plural;
use crate::{completions, graph, jobfile, plan, run, schema};
use clap::Parser;
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

pub fn dispatch(args: Vec<OsString>) -> Result<Outcome, Error> {
    if args.get(1).is_some_and(|a| a == crate::watchdog::ARG) {
        return crate::watchdog::serve(&args[2..]);
    }
    if args.get(1).is_some_and(|a| a == completions::COMMAND) {
        return complete_jobs(&args[2..]);
    }
    if args.get(1).is_some_and(|a| a == crate::man::COMMAND) {
        return crate::man::write(&args[2..]);
    }
    let cli = match Cli::try_parse_from(cli::normalize(args)) {
        Ok(cli) => cli,
        // --help and --version are "errors" to clap; they are answers to the user.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return Ok(Outcome::Success);
        }
        Err(e) => return Err(Error::CommandLine(e)),
    };
    if let Some(warning) = crate::scrub::hide() {
        eprintln!("{warning}");
    }
    // Settings read from the environment are checked like options, before anything runs.
    if matches!(cli.command, Command::Run(_))
        || cfg!(feature = "distributed") && is_worker(&cli.command)
    {
        cli::heartbeat()?;
    }
    match cli.command {
        Command::Run(args) if args.dry_run => {
            if args.report.is_some()
                || args.junit.is_some()
                || args.html.is_some()
                || args.trace.is_some()
                || args.logs.is_some()
            {
                eprintln!(
                    "note: --dry-run runs nothing, so --report, --junit, --html, --trace and --logs write nothing"
                );
            }
            plan(PlanArgs {
                select: args.select,
                json: false,
                state: args.state,
                cache: args.cache,
            })
        }
        Command::Run(args) => run(args),
        Command::Plan(args) => plan(args),
        Command::Check { file, set } => check(&file, &set),
        Command::Graph {
            dot,
            file,
            jobs,
            set,
        } => {
            let file = load_selected(&file, &jobs, &set)?;
            print(&if dot {
                graph::render_dot(&file)
            } else {
                graph::render_text(&file)
            })
        }
        Command::Report(args) => report(&args),
        Command::Cache { command } => cache(&command),
        #[cfg(feature = "distributed")]
        Command::Worker(args) => {
            let cache = open_cache(&args.cache)?;
            crate::broker::command::worker(args, cache)
        }
        Command::Schema { report } => print(&if report {
            schema::report_schema()
        } else {
            schema::json_schema()
        }),
        Command::Completions { shell } => print(&completions::script(shell)),
    }
}

/// `runner __complete-jobs WORDS…` (called by the completion scripts): the job names of
/// the file the words name, one a line, when a job name comes next; else exit 1.
fn complete_jobs(words: &[OsString]) -> Result<Outcome, Error> {
    let words: Vec<String> = words
        .iter()
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    // Only the [jobs] keys are read: quick, and it works on a file being edited.
    let names = completions::job_file(&words).and_then(|path| jobfile::job_names_in(&path));
    match names {
        Some(names) => print(&(names.join("\n") + "\n")),
        None => Ok(Outcome::Failed),
    }
}

fn is_worker(command: &Command) -> bool {
    #[cfg(feature = "distributed")]
    if let Command::Worker(_) = command {
        return true;
    }
    let _ = command;
    false
}

/// Loads the file of `select` with its vars, and keeps the jobs it names.
fn load(select: &cli::SelectArgs) -> Result<JobFile, Error> {
    load_selected(&select.file, &select.jobs, &select.set)
}

/// Loads `path` with the vars `set`, and keeps only the jobs named (and what they need).
fn load_selected(path: &Path, jobs: &[String], set: &[(String, String)]) -> Result<JobFile, Error> {
    cli::check_sets(set)?;
    let file = jobfile::load(path, set)?;
    if !file.warnings.is_empty() {
        eprint!("{}", file.render_warnings(crate::stderr_color()));
    }
    Ok(select(file, jobs)?)
}

/// `--changed-since REF`: git asked which files changed (before the state is touched);
/// `auto` without a pull or merge request says why everything is judged as usual.
fn changed_since(
    file: &JobFile,
    args: &cli::StateArgs,
) -> Result<Option<std::sync::Arc<crate::changed::Filter>>, Error> {
    let Some(reference) = &args.changed_since else {
        return Ok(None);
    };
    let reference = if reference == "auto" {
        match crate::changed::auto_base(|name| std::env::var(name).ok()) {
            Ok(base) => base,
            Err(why) => {
                eprintln!("{why}");
                return Ok(None);
            }
        }
    } else {
        reference.clone()
    };
    let filter = crate::changed::Filter::new(file, &reference)?;
    eprintln!(
        "note: --changed-since {reference}: {}",
        plural(filter.count() as u64, "changed file")
    );
    Ok(Some(std::sync::Arc::new(filter)))
}

fn plan(args: PlanArgs) -> Result<Outcome, Error> {
    let file = load(&args.select)?;
    // Resolved like a run's, so that a plan shows what the run would: redacted.
    crate::secrets::activate(&file, |_| true)?;
    let mut options = args.state.options();
    options.changed = changed_since(&file, &args.state)?;
    let (index, warning) = crate::state::read_latest(&file, &options)?;
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
    // A plan only reads the state: it writes no stamp.
    let memory = crate::state::Memory::new(&file, &options, index, false);
    let cache = open_cache(&args.cache)?;
    let mut out = crate::secrets::Writer::new(std::io::BufWriter::new(std::io::stdout().lock()));
    match plan::write(&file, args.json, &memory, cache.as_ref(), &mut out) {
        Err(plan::PlanError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(Outcome::Success)
        }
        Err(plan::PlanError::Write(e)) => Err(Error::system("write to stdout")(e)),
        Err(plan::PlanError::Items { job, source }) => Err(Error::ItemsFile { job, source }),
        Ok(()) => Ok(Outcome::Success),
    }
}

/// `--cache URL`: the store it names (the URL checked, nothing asked of it yet) and how
/// the run uses it.
fn open_cache(args: &cli::CacheArgs) -> Result<Option<crate::cache::run::Opened>, Error> {
    let Some(url) = args.cache.as_deref().filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let token = crate::scrub::cache_token();
    let store = crate::cache::open(url, token.as_deref())?;
    let settings = crate::cache::run::Settings {
        mode: args.cache_mode,
        max_entry: args.cache_max_entry,
        secret: crate::scrub::cache_key(),
    };
    Ok(Some(crate::cache::run::Opened { store, settings }))
}

fn run(args: RunArgs) -> Result<Outcome, Error> {
    let mut file = load(&args.select)?;
    // Before anything runs or is written: a secret that cannot be resolved is exit 2.
    let secrets = crate::secrets::activate(&file, |job| runs_here(&args, job))?;
    // Before anything is written: a mistake here is the user's to fix first.
    let changed = changed_since(&file, &args.state)?;
    match args
        .output
        .as_deref()
        .and_then(crate::jobfile::OutputMode::parse)
    {
        Some(mode) => file.set_output(mode),
        None => file.default_output(crate::display::Ci::detect() != crate::display::Ci::None),
    }
    #[cfg(feature = "distributed")]
    let broker = match args.broker.broker.as_deref() {
        None => None,
        Some(url) => Some(crate::broker::coordinator::Options {
            url: url.to_string(),
            no_local: args.no_local,
            lease: args.lease,
            max_deliveries: args.max_deliveries,
            key: crate::broker::authkey(args.broker.authkey_file.as_deref())?,
        }),
    };
    // A report that cannot be written would be lost after the run: say so first.
    for path in [&args.report, &args.junit, &args.html]
        .into_iter()
        .flatten()
    {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(Error::path("write", path))?;
    }
    #[cfg(feature = "distributed")]
    let here = args.broker.broker.is_none();
    #[cfg(not(feature = "distributed"))]
    let here = true;
    if here {
        say_runs_on_here(&file);
    }
    let pool = args.pool.map(|p| p as usize).or(file.pool);
    let resume_hint = resume_hint(&args);
    let mut state = args.state.options();
    state.changed = changed;
    let cache = open_cache(&args.cache)?;
    let options = run::Options {
        cache,
        state,
        resume_hint,
        pool: Some(crate::fds::fit_pool(
            pool.unwrap_or_else(crate::sys::cpus).max(1),
        )),
        fail_fast: args.fail_fast,
        quiet: args.quiet,
        label: !args.no_label,
        trace: args.trace,
        logs: args.logs,
        report: args.report,
        junit: args.junit,
        html: args.html,
        grace: args.grace,
        gates: run::gate::Gates {
            memfree: args.memfree,
            load: args.load,
        },
        #[cfg(feature = "distributed")]
        broker,
        #[cfg(feature = "distributed")]
        slurm: args.slurm.map(|workers| run::slurm::Options {
            workers,
            args: args.slurm_arg.clone(),
        }),
    };
    // GitHub Actions masks the values in its log too, told before any task starts.
    if let Some(secrets) = &secrets {
        crate::secrets::mask_in_github(secrets).map_err(Error::system("write to stdout"))?;
    }
    run::run(file, options)
}

/// `runs_on` routes tasks to workers only with `--broker`: without, they run here, said
/// once before the run (a file written for a cluster still runs on one machine).
fn say_runs_on_here(file: &crate::jobfile::JobFile) {
    let jobs: Vec<String> = file
        .jobs
        .iter()
        .filter(|j| !j.runs_on.is_empty())
        .map(|j| format!("`{}`", j.name))
        .collect();
    let (who, has, whose) = match jobs.len() {
        1 => ("job", "has", "its"),
        _ => ("jobs", "have", "their"),
    };
    if !jobs.is_empty() {
        eprintln!(
            "note: {who} {} {has} `runs_on`, which routes tasks to workers only with --broker: {whose} tasks run here",
            jobs.join(", ")
        );
    }
}

/// Whether tasks of `job` may run in this process: with `--broker --no-local`, the jobs
/// that may run remotely run only on workers, which resolve their own secrets.
#[cfg(feature = "distributed")]
fn runs_here(args: &RunArgs, job: &crate::jobfile::Job) -> bool {
    !(args.broker.broker.is_some() && args.no_local && crate::broker::worker::may_run_remotely(job))
}

#[cfg(not(feature = "distributed"))]
fn runs_here(_: &RunArgs, _: &crate::jobfile::Job) -> bool {
    true
}

/// The command that resumes a run started with `args`, to paste as it is printed: the
/// same file, jobs, vars, state folder, pool and run options, the broker's options, and
/// `--resume`. Not the reports, trace and logs (the resumed run writes its own) nor the
/// display options. Each word is quoted for a shell, a control character escaped
/// (`$'…'`) so that the hint stays one line; an option's value is joined to it with `=`
/// so that a value starting with `-` stays a value. A broker URL with userinfo (a
/// password) is not printed: `"$RUNNER_BROKER_URL"` stands for it.
fn resume_hint(args: &RunArgs) -> String {
    let quote = |s: &str| crate::plan::pasteable(s);
    let option = |name: &str, value: &str| format!("--{name}={}", quote(value));
    let file = args.select.file.to_string_lossy();
    let file = if file.starts_with('-') {
        format!("./{file}")
    } else {
        file.into_owned()
    };
    let mut words = vec!["runner".to_string(), "run".to_string(), quote(&file)];
    words.extend(args.select.jobs.iter().map(|j| quote(j)));
    for (name, value) in &args.select.set {
        words.push(option("set", &format!("{name}={value}")));
    }
    if let Some(dir) = &args.state.state {
        words.push(option("state", &dir.to_string_lossy()));
    }
    if let Some(pool) = args.pool {
        words.push(format!("--pool={pool}"));
    }
    if args.fail_fast {
        words.push("--fail-fast".into());
    }
    if let Some(mode) = &args.output {
        words.push(option("output", mode));
    }
    if let Some(reference) = &args.state.changed_since {
        words.push(option("changed-since", reference));
    }
    words.extend(broker_words(args));
    words.push("--resume".to_string());
    words.join(" ")
}

/// The broker's options of a run, for its `to resume:` hint.
#[cfg(feature = "distributed")]
fn broker_words(args: &RunArgs) -> Vec<String> {
    let quote = |s: &str| crate::plan::pasteable(s);
    let Some(url) = &args.broker.broker else {
        return Vec::new();
    };
    // Userinfo (a password) is not for the logs the hint lands in.
    let secret = crate::broker::redact(url) != *url;
    let mut words = vec![if secret {
        "--broker=\"$RUNNER_BROKER_URL\"".to_string()
    } else {
        format!("--broker={}", quote(url))
    }];
    if let Some(key) = &args.broker.authkey_file {
        words.push(format!("--authkey-file={}", quote(&key.to_string_lossy())));
    }
    if args.no_local {
        words.push("--no-local".into());
    }
    // Said only when not the defaults.
    if args.lease != std::time::Duration::from_secs(30) {
        words.push(format!("--lease={}ms", args.lease.as_millis()));
    }
    if args.max_deliveries != 3 {
        words.push(format!("--max-deliveries={}", args.max_deliveries));
    }
    // The resumed run's workers: a new array, asked for the same way.
    if let Some(n) = args.slurm {
        words.push(format!("--slurm={n}"));
        for arg in &args.slurm_arg {
            words.push(format!("--slurm-arg={}", quote(arg)));
        }
    }
    words
}

#[cfg(not(feature = "distributed"))]
fn broker_words(_: &RunArgs) -> Vec<String> {
    Vec::new()
}

/// `runner report REPORT --html FILE`: the page of a run, from its JSON report.
fn report(args: &ReportArgs) -> Result<Outcome, Error> {
    let report = crate::report::read_json(&args.report)?;
    crate::report::write_html(&args.html, &report.jobs, &report.records, &report.info)
        .map_err(Error::path("write", &args.html))?;
    Ok(Outcome::Success)
}

/// `runner cache stats|prune DIR`: the folder store's upkeep.
fn cache(command: &cli::CacheCommand) -> Result<Outcome, Error> {
    use crate::cache::prune;
    match command {
        cli::CacheCommand::Stats { dir, json } => {
            let stats = prune::stats(dir)?;
            if *json {
                print(&format!("{:#}\n", prune::stats_json(&stats)))
            } else {
                print(&prune::render_stats(dir, &stats))
            }
        }
        cli::CacheCommand::Prune {
            dir,
            max_size,
            json,
        } => {
            let pruned = prune::prune(dir, *max_size)?;
            if let Some(warning) = prune::over_size(dir, *max_size, &pruned) {
                eprint!("{warning}");
            }
            if *json {
                print(&format!("{:#}\n", prune::pruned_json(*max_size, &pruned)))
            } else {
                print(&prune::render_pruned(dir, *max_size, &pruned))
            }
        }
    }
}

fn check(path: &Path, set: &[(String, String)]) -> Result<Outcome, Error> {
    let file = load_selected(path, &[], set)?;
    let tasks: Option<u64> = file.jobs.iter().map(|j| j.items.count()).sum();
    let tasks = tasks.map_or("tasks fed by queues".to_string(), |n| plural(n, "task"));
    print(&format!(
        "{}: ok ({}, {}, {tasks})\n",
        path.display(),
        plural(file.jobs.len() as u64, "job"),
        plural(file.queues.len() as u64, "queue")
    ))
}

/// Prints a command's answer on stdout; a reader that went away (`| head`) is fine.
fn print(text: &str) -> Result<Outcome, Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::system("write to stdout")(e))
        }
        _ => Ok(Outcome::Success),
    }
}

#[cfg(all(test, feature = "distributed"))]
mod tests {
    use super::*;

    fn hint(args: &[&str]) -> String {
        let argv = ["runner", "run"].iter().chain(args).map(OsString::from);
        let cli = Cli::try_parse_from(cli::normalize(argv.collect())).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("a run")
        };
        resume_hint(&args)
    }

    #[test]
    fn the_resume_hint_keeps_the_broker_options_and_hides_a_password() {
        assert_eq!(
            hint(&[
                "jobs.toml",
                "--broker",
                "redis://127.0.0.1:6379",
                "--authkey-file",
                "key file",
                "--no-local",
                "--lease",
                "2s",
            ]),
            "runner run jobs.toml --broker=redis://127.0.0.1:6379 --authkey-file='key file' --no-local --lease=2000ms --resume"
        );
        assert_eq!(
            hint(&["jobs.toml", "--broker", "redis://:secret@host:6379"]),
            "runner run jobs.toml --broker=\"$RUNNER_BROKER_URL\" --resume"
        );
    }

    #[test]
    fn the_resume_hint_asks_for_the_same_slurm_workers() {
        assert_eq!(
            hint(&[
                "jobs.toml",
                "--broker",
                "redis://h:6379",
                "--slurm",
                "4",
                "--slurm-arg=--partition=short",
                "--slurm-arg",
                "--comment=a b",
            ]),
            "runner run jobs.toml --broker=redis://h:6379 --slurm=4 --slurm-arg='--partition=short' --slurm-arg='--comment=a b' --resume"
        );
    }
}
