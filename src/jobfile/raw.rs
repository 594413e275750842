//! The job file as TOML says it, read in two steps: the TOML is parsed into a document
//! that keeps the byte range of every key and value (a syntax error stops there: it is
//! the only problem reported), then each key is read with its own typed check
//! (`typed`), which records a diagnostic for a wrong value and goes on. So one pass
//! reports every unknown key and every value of the wrong type, and the structs here
//! hold only values of the right type. Nothing is validated beyond types (and the
//! presence of `jobs` and `command`); `check` turns this into the checked model.
//!
//! Longer than 400 lines because of its tests, which tie the key lists to the checks and
//! to the schema and belong next to the lists.

use super::typed::{KeyPath, Reader, Value};
use crate::diagnostic::{suggest, Diagnostic};
use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

pub const TOP_KEYS: [&str; 11] = [
    "pool",
    "resources",
    "rates",
    "fail_fast",
    "output",
    "shell",
    "env",
    "vars",
    "queues",
    "secrets",
    "jobs",
];
pub const JOB_KEYS: [&str; 29] = [
    "command",
    "needs",
    "when",
    "items",
    "stdin",
    "to",
    "env",
    "cwd",
    "timeout",
    "retries",
    "retry_delay",
    "concurrency",
    "success_codes",
    "allow_failure",
    "local",
    "description",
    "shell",
    "sources",
    "outputs",
    "output",
    "secrets",
    "cache",
    "cache_env",
    "uses",
    "rate",
    "runs_on",
    "service",
    "ready",
    "ready_timeout",
];
pub const QUEUE_KEYS: [&str; 1] = ["capacity"];
/// The keys of a `needs` entry written as a table (`{ job = "NAME", each = true }`).
pub const NEED_KEYS: [&str; 2] = ["job", "each"];
/// The keys of a `[secrets]` entry: exactly one of them says where the value is.
pub const SECRET_KEYS: [&str; 3] = ["env", "file", "command"];

const OUTPUT: &str = "\"lines\", \"grouped\" or \"keep-order\"";

/// A name of the file (a job's, a queue's, an environment variable's) with where it is.
pub type Name = Spanned<String>;

/// `[vars]`: where the table is, and each name with its value as text.
pub type RawVars = (std::ops::Range<usize>, Vec<(Name, Name)>);

/// The top level. Each field holds a value of the right type, or nothing when the key is
/// absent or its value was wrong (and reported).
#[derive(Debug, Default)]
pub struct RawFile<'i> {
    pub pool: Option<Spanned<i64>>,
    pub fail_fast: Option<bool>,
    /// How task output is printed (`lines`, `grouped`, `keep-order`).
    pub output: Option<Name>,
    pub shell: Option<Spanned<Vec<String>>>,
    pub env: Vec<(Name, Name)>,
    /// `[vars]`: where the table is, and each name with its value as text.
    pub vars: Option<RawVars>,
    pub queues: Vec<(Name, RawQueue)>,
    /// `[secrets]`: each name with where its value comes from (`None`: the entry was
    /// wrong, and reported).
    pub secrets: Vec<(Name, Option<RawSecret>)>,
    /// `[resources]`: each name with its amount (an integer or a size), as written.
    pub resources: Vec<(Name, Spanned<Amount>)>,
    /// `[rates]`: each name with its rate as written (`"5/s"`).
    pub rates: Vec<(Name, Name)>,
    /// Every job, in file order; a job whose table is of the wrong type is here with no
    /// keys (it was reported), so that `needs` naming it is not called unknown too.
    pub jobs: Vec<(Name, RawJob<'i>)>,
}

/// One entry of `needs`: a job name, or `{ job = "NAME", each = true }` (item by item).
#[derive(Debug)]
pub struct RawNeed {
    pub job: Name,
    pub each: bool,
    /// The whole entry (the name, or the table).
    pub span: std::ops::Range<usize>,
}

/// Where a secret's value comes from, as written.
#[derive(Debug)]
pub enum RawSecret {
    /// `{ env = "VAR" }`
    Env(Name),
    /// `{ file = "PATH" }`
    File(Name),
    /// `{ command = "…" }` (run with the shell) or `{ command = ["program", …] }`.
    Command(Spanned<SecretCommand>),
}

/// A secret's command: a string for the shell, or an argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretCommand {
    Shell(String),
    Argv(Vec<String>),
}

#[derive(Debug, Default)]
pub struct RawQueue {
    pub capacity: Option<Spanned<i64>>,
}

/// One `[jobs.NAME]` table. `command`, `items` and `stdin` take several shapes, which
/// `check` tells apart with messages of its own; they stay TOML values here.
#[derive(Debug, Default)]
pub struct RawJob<'i> {
    pub command: Option<Value<'i>>,
    pub needs: Vec<RawNeed>,
    /// `when = "success" | "always" | "failure"`, as written.
    pub when: Option<Name>,
    pub items: Option<Value<'i>>,
    pub stdin: Option<Value<'i>>,
    pub to: Option<Name>,
    pub env: Vec<(Name, Name)>,
    pub cwd: Option<Name>,
    pub timeout: Option<Name>,
    pub retries: Option<Spanned<i64>>,
    pub retry_delay: Option<Name>,
    pub concurrency: Option<Spanned<i64>>,
    pub success_codes: Option<Spanned<Vec<Spanned<i64>>>>,
    pub allow_failure: Option<bool>,
    pub local: Option<bool>,
    /// Free text shown by `runner graph`.
    pub description: Option<String>,
    /// Overrides the top-level `shell` for this job.
    pub shell: Option<Spanned<Vec<String>>>,
    /// Glob patterns of the files a task reads (with where the array is).
    pub sources: Option<Spanned<Vec<Name>>>,
    /// Paths or patterns of the files a task writes.
    pub outputs: Option<Spanned<Vec<Name>>>,
    /// This job's output mode.
    pub output: Option<Name>,
    /// The names of the secrets its tasks are given (with where the array is).
    pub secrets: Option<Spanned<Vec<Name>>>,
    /// `cache = false`: never stored in nor restored from the results cache.
    pub cache: Option<bool>,
    /// Host environment variables whose values enter the cache key.
    pub cache_env: Option<Spanned<Vec<Name>>>,
    /// What one task holds while it runs: resource names with amounts.
    pub uses: Vec<(Name, Spanned<Amount>)>,
    /// A rate (`"5/s"`) or the name of one of `[rates]`.
    pub rate: Option<Name>,
    /// Worker labels its tasks need (with where the array is).
    pub runs_on: Option<Spanned<Vec<Name>>>,
    /// `service = true`: a long-running process the jobs that need it use while they run.
    pub service: Option<Spanned<bool>>,
    /// When a service is ready (`{ tcp = … }`, `{ http = … }`, `{ line = … }`,
    /// `{ command = … }`), told apart by `check::service`.
    pub ready: Option<Value<'i>>,
    /// How long a service may take to be ready.
    pub ready_timeout: Option<Name>,
}

/// An amount of a resource as written: an integer, or a size such as `"8G"` (a
/// string, parsed by `check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Amount {
    Count(i64),
    Size(String),
}

/// Reads `source`. A TOML syntax error is the one diagnostic returned as the error;
/// otherwise the file, as far as its types are right, and every problem found.
pub fn read(source: &str) -> Result<(RawFile<'_>, Vec<Diagnostic>), Diagnostic> {
    let document = DeTable::parse(source).map_err(|e| {
        let message = e.message().trim().to_string();
        Diagnostic::new(message, e.span())
    })?;
    let mut reader = Reader::default();
    let file = file(document.into_inner(), &mut reader);
    Ok((file, reader.diagnostics))
}

fn file<'i>(table: DeTable<'i>, r: &mut Reader) -> RawFile<'i> {
    let mut keys = Keys::new(table, &TOP_KEYS, None, r);
    RawFile {
        pool: keys.integer("pool", "an integer ≥ 1", r),
        fail_fast: keys.boolean("fail_fast", r),
        output: keys.string("output", OUTPUT, r),
        shell: keys.strings("shell", r),
        env: keys.string_table("env", r),
        vars: keys
            .take("vars")
            .map(|(path, v)| (v.span(), r.scalar_table(&v, &path))),
        queues: keys
            .take("queues")
            .map_or_else(Vec::new, |(path, v)| read_queues(v, &path, r)),
        secrets: keys
            .take("secrets")
            .map_or_else(Vec::new, |(path, v)| read_secrets(v, &path, r)),
        resources: keys
            .take("resources")
            .map_or_else(Vec::new, |(path, v)| amounts(&v, &path, r)),
        rates: keys.string_table("rates", r),
        jobs: read_jobs(keys.take("jobs"), r),
    }
}

const AMOUNT: &str = "an integer ≥ 1 or a size such as \"8G\"";

/// A table of amounts (`[resources]`, `uses`): each an integer or a size string.
fn amounts(value: &Value<'_>, path: &KeyPath, r: &mut Reader) -> Vec<(Name, Spanned<Amount>)> {
    let DeValue::Table(table) = value.get_ref() else {
        r.mismatch(path, "a table of NAME = integer or size", value);
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, v) in table {
        let at = path.key(name.get_ref());
        let amount = match v.get_ref() {
            DeValue::Integer(_) => r
                .integer(v, &at, AMOUNT)
                .map(|n| n.into_inner())
                .map(Amount::Count),
            DeValue::String(s) => Some(Amount::Size(s.to_string())),
            _ => {
                r.mismatch(&at, AMOUNT, v);
                None
            }
        };
        if let Some(amount) = amount {
            out.push((name_of(name), Spanned::new(v.span(), amount)));
        }
    }
    out
}

/// `[queues.NAME]` tables.
fn read_queues(value: Value<'_>, path: &KeyPath, r: &mut Reader) -> Vec<(Name, RawQueue)> {
    let Some(table) = a_table(value, path, "a table of queues ([queues.NAME])", r) else {
        return Vec::new();
    };
    let mut queues = Vec::new();
    for (name, value) in table {
        let path = path.key(name.get_ref());
        let Some(table) = a_table(value, &path, "a table (the queue's `capacity`)", r) else {
            continue;
        };
        let mut keys = Keys::new(table, &QUEUE_KEYS, Some(path), r);
        let capacity = keys.integer("capacity", "an integer ≥ 1", r);
        queues.push((name_of(&name), RawQueue { capacity }));
    }
    queues
}

const SECRET: &str =
    "a table saying where the value is: { env = \"VAR\" }, { file = \"PATH\" } or { command = … }";

/// `[secrets]`: `NAME = { env = "VAR" }`, `{ file = "PATH" }` or `{ command = … }`.
fn read_secrets(
    value: Value<'_>,
    path: &KeyPath,
    r: &mut Reader,
) -> Vec<(Name, Option<RawSecret>)> {
    let Some(table) = a_table(value, path, "a table of secrets ([secrets])", r) else {
        return Vec::new();
    };
    let mut secrets = Vec::new();
    for (name, value) in table {
        let path = path.key(name.get_ref());
        let span = value.span();
        let before = r.diagnostics.len();
        let secret = a_table(value, &path, SECRET, r).and_then(|table| {
            let mut keys = Keys::new(table, &SECRET_KEYS, Some(path.clone()), r);
            let env = keys.string("env", "an environment variable's name (a string)", r);
            let file = keys.string("file", "a file's path (a string)", r);
            let command = keys
                .take("command")
                .and_then(|(path, v)| match v.get_ref() {
                    DeValue::String(s) => {
                        Some(Spanned::new(v.span(), SecretCommand::Shell(s.to_string())))
                    }
                    DeValue::Array(_) => r.strings(&v, &path).and_then(|argv| {
                        let span = argv.span();
                        let argv = argv.into_inner();
                        if argv.is_empty() {
                            r.diagnostics.push(Diagnostic::at(
                                format!("{path}: the command is empty"),
                                span,
                            ));
                            return None;
                        }
                        Some(Spanned::new(span, SecretCommand::Argv(argv)))
                    }),
                    _ => {
                        r.mismatch(&path, "a command (a string, or an array of strings)", &v);
                        None
                    }
                });
            let given = [env.is_some(), file.is_some(), command.is_some()]
                .iter()
                .filter(|&&b| b)
                .count();
            if given > 1 {
                r.diagnostics.push(
                    Diagnostic::at(
                        format!(
                            "secret `{}` says where its value is more than once",
                            name.get_ref()
                        ),
                        span.clone(),
                    )
                    .with_note("give one of `env`, `file` or `command`"),
                );
                return None;
            }
            if given == 0 && r.diagnostics.len() == before {
                r.diagnostics.push(
                    Diagnostic::at(
                        format!(
                            "secret `{}` does not say where its value is",
                            name.get_ref()
                        ),
                        span.clone(),
                    )
                    .with_note(
                        "write { env = \"VAR\" }, { file = \"PATH\" } or { command = \"…\" }",
                    ),
                );
            }
            env.map(RawSecret::Env)
                .or(file.map(RawSecret::File))
                .or(command.map(RawSecret::Command))
        });
        secrets.push((name_of(&name), secret));
    }
    secrets
}

/// `[jobs.NAME]` tables; there must be at least one.
fn read_jobs<'i>(value: Option<(KeyPath, Value<'i>)>, r: &mut Reader) -> Vec<(Name, RawJob<'i>)> {
    let Some((path, value)) = value else {
        r.diagnostics.push(
            Diagnostic::new("the job file has no jobs", Some(0..0))
                .with_note("add one: [jobs.hello]\ncommand = [\"echo\", \"hello\"]"),
        );
        return Vec::new();
    };
    let span = value.span();
    let Some(table) = a_table(value, &path, "a table of jobs ([jobs.NAME])", r) else {
        return Vec::new();
    };
    if table.is_empty() {
        r.diagnostics.push(Diagnostic::at(
            "`jobs` is empty: a job file needs at least one job",
            span,
        ));
    }
    let mut jobs = Vec::new();
    for (name, value) in table {
        let path = path.key(name.get_ref());
        let job = match a_table(value, &path, "a table (the job's keys)", r) {
            Some(table) => read_job(table, &name, path, r),
            None => RawJob::default(),
        };
        jobs.push((name_of(&name), job));
    }
    jobs
}

fn read_job<'i>(
    table: DeTable<'i>,
    name: &Spanned<DeString<'i>>,
    path: KeyPath,
    r: &mut Reader,
) -> RawJob<'i> {
    let mut keys = Keys::new(table, &JOB_KEYS, Some(path), r);
    let command = keys.take("command").map(|(_, v)| v);
    // A misspelt `command` is already reported, with the right name.
    if command.is_none() && !keys.suggested.contains(&"command") {
        r.diagnostics.push(
            Diagnostic::at(format!("job `{}` has no `command`", name.get_ref()), name.span())
                .with_note("add one: command = \"…\" (run with `shell`) or command = [\"program\", \"argument\"]"),
        );
    }
    let needs = keys
        .take("needs")
        .and_then(|(path, v)| r.array(&v, &path, NEEDS, need));
    let mut patterns = |key: &'static str| {
        keys.take(key).and_then(|(path, v)| {
            r.array(
                &v,
                &path,
                "an array of glob patterns (strings)",
                |r, v, p| r.string(v, p, "a glob pattern (a string)"),
            )
        })
    };
    let sources = patterns("sources");
    let outputs = patterns("outputs");
    let cache_env = keys.take("cache_env").and_then(|(path, v)| {
        r.array(
            &v,
            &path,
            "an array of environment variable names (strings)",
            |r, v, p| r.string(v, p, "an environment variable name (a string)"),
        )
    });
    let success_codes = keys.take("success_codes").and_then(|(path, v)| {
        r.array(&v, &path, "an array of exit codes (integers)", |r, v, p| {
            r.integer(v, p, "an exit code (an integer)")
        })
    });
    RawJob {
        command,
        needs: needs.map(Spanned::into_inner).unwrap_or_default(),
        when: keys.string("when", WHEN, r),
        items: keys.take("items").map(|(_, v)| v),
        stdin: keys.take("stdin").map(|(_, v)| v),
        to: keys.string("to", "a queue name (a string)", r),
        env: keys.string_table("env", r),
        cwd: keys.string("cwd", "a folder (a string)", r),
        timeout: keys.string("timeout", DURATION, r),
        retries: keys.integer("retries", "an integer ≥ 0", r),
        retry_delay: keys.string("retry_delay", DURATION, r),
        concurrency: keys.integer("concurrency", "an integer ≥ 1", r),
        success_codes,
        allow_failure: keys.boolean("allow_failure", r),
        local: keys.boolean("local", r),
        description: keys
            .string("description", "a string", r)
            .map(Spanned::into_inner),
        shell: keys.strings("shell", r),
        sources,
        outputs,
        output: keys.string("output", OUTPUT, r),
        secrets: keys.take("secrets").and_then(|(path, v)| {
            r.array(&v, &path, "an array of secret names", |r, v, p| {
                r.string(v, p, "a secret's name (a string)")
            })
        }),
        cache: keys.boolean("cache", r),
        cache_env,
        uses: keys
            .take("uses")
            .map_or_else(Vec::new, |(path, v)| amounts(&v, &path, r)),
        rate: keys.string("rate", RATE, r),
        runs_on: keys.take("runs_on").and_then(|(path, v)| {
            r.array(
                &v,
                &path,
                "an array of worker labels (strings)",
                |r, v, p| r.string(v, p, "a worker label (a string)"),
            )
        }),
        service: keys.take("service").and_then(|(path, v)| {
            let span = v.span();
            r.boolean(&v, &path).map(|b| Spanned::new(span, b))
        }),
        ready: keys.take("ready").map(|(_, v)| v),
        ready_timeout: keys.string("ready_timeout", DURATION, r),
    }
}

const RATE: &str = "a rate such as \"5/s\" or a name from [rates]";
const DURATION: &str = "a duration such as \"10s\"";
const NEEDS: &str = "an array of job names";
const NEED: &str = "a job name (a string) or a table `{ job = \"NAME\", each = true }`";
const WHEN: &str = "\"success\", \"always\" or \"failure\"";

/// One `needs` entry: a job name, or a table with `job` and `each`.
fn need(r: &mut Reader, value: &Value<'_>, path: &KeyPath) -> Option<RawNeed> {
    let span = value.span();
    match value.get_ref() {
        DeValue::String(_) => {
            let job = r.string(value, path, NEED)?;
            Some(RawNeed {
                job,
                each: false,
                span,
            })
        }
        DeValue::Table(_) => {
            let table = a_table(value.clone(), path, NEED, r)?;
            let mut keys = Keys::new(table, &NEED_KEYS, Some(path.clone()), r);
            let job = keys.string("job", "a job name (a string)", r);
            let each = keys.boolean("each", r).unwrap_or(false);
            let Some(job) = job else {
                if !keys.suggested.contains(&"job") {
                    r.diagnostics.push(
                        Diagnostic::at(format!("{path}: this entry names no `job`"), span)
                            .with_note("write { job = \"NAME\", each = true }"),
                    );
                }
                return None;
            };
            Some(RawNeed { job, each, span })
        }
        _ => {
            r.mismatch(path, NEED, value);
            None
        }
    }
}

/// The table `value` holds, or nothing (and a diagnostic) when it is not one.
fn a_table<'i>(
    value: Value<'i>,
    path: &KeyPath,
    expected: &str,
    r: &mut Reader,
) -> Option<DeTable<'i>> {
    if !value.get_ref().is_table() {
        r.mismatch(path, expected, &value);
        return None;
    }
    match value.into_inner() {
        DeValue::Table(table) => Some(table),
        _ => None,
    }
}

fn name_of(name: &Spanned<DeString<'_>>) -> Name {
    Spanned::new(name.span(), name.get_ref().to_string())
}

/// The keys of one table, each taken by the check that reads it. Keys not in the list
/// the table may hold are reported as unknown when the table is first looked at; a
/// check taking a key that is not in the list is a bug, and panics.
struct Keys<'i> {
    known: &'static [&'static str],
    /// The table's own path (none at the top level).
    path: Option<KeyPath>,
    entries: Vec<(Spanned<DeString<'i>>, Value<'i>)>,
    /// The keys suggested for unknown ones ("did you mean").
    suggested: Vec<&'static str>,
}

impl<'i> Keys<'i> {
    fn new(
        table: DeTable<'i>,
        known: &'static [&'static str],
        path: Option<KeyPath>,
        r: &mut Reader,
    ) -> Keys<'i> {
        let mut entries = Vec::new();
        let mut suggested = Vec::new();
        for (key, value) in table {
            if known.contains(&&**key.get_ref()) {
                entries.push((key, value));
                continue;
            }
            let name = key.get_ref();
            let d = Diagnostic::at(format!("unknown key `{name}`"), key.span());
            let d = match suggest(name, known.iter().copied()) {
                Some(s) => {
                    suggested.push(s);
                    d.with_note(format!("did you mean `{s}`?"))
                }
                None => d.with_note(format!("the keys here are: {}", known.join(", "))),
            };
            r.diagnostics.push(d);
        }
        Keys {
            known,
            path,
            entries,
            suggested,
        }
    }

    /// The value of `key`, with its path, if the table has it.
    fn take(&mut self, key: &'static str) -> Option<(KeyPath, Value<'i>)> {
        assert!(self.known.contains(&key), "`{key}` is not in the key list");
        let at = self.entries.iter().position(|(k, _)| k.get_ref() == key)?;
        let (_, value) = self.entries.swap_remove(at);
        let path = match &self.path {
            Some(path) => path.key(key),
            None => KeyPath::root(key),
        };
        Some((path, value))
    }

    fn integer(
        &mut self,
        key: &'static str,
        expected: &str,
        r: &mut Reader,
    ) -> Option<Spanned<i64>> {
        let (path, value) = self.take(key)?;
        r.integer(&value, &path, expected)
    }

    fn boolean(&mut self, key: &'static str, r: &mut Reader) -> Option<bool> {
        let (path, value) = self.take(key)?;
        r.boolean(&value, &path)
    }

    fn string(&mut self, key: &'static str, expected: &str, r: &mut Reader) -> Option<Name> {
        let (path, value) = self.take(key)?;
        r.string(&value, &path, expected)
    }

    fn strings(&mut self, key: &'static str, r: &mut Reader) -> Option<Spanned<Vec<String>>> {
        let (path, value) = self.take(key)?;
        r.strings(&value, &path)
    }

    fn string_table(&mut self, key: &'static str, r: &mut Reader) -> Vec<(Name, Name)> {
        match self.take(key) {
            Some((path, value)) => r.string_table(&value, &path),
            None => Vec::new(),
        }
    }
}
/// The keys are written three times: the `*_KEYS` lists (which decide what is unknown
/// and which the "did you mean" picks from), the checks that take each key by name (and
/// panic on a name not listed), and `docs/runner.schema.json` (which editors check files
/// against). These tests fail when the three disagree.
#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn set(keys: &[&'static str]) -> BTreeSet<&'static str> {
        keys.iter().copied().collect()
    }

    fn schema() -> serde_json::Value {
        serde_json::from_str(&crate::schema::json_schema()).expect("the schema is JSON")
    }

    /// The names under `properties` of the schema object at `pointer`.
    fn schema_keys(pointer: &str) -> BTreeSet<String> {
        let schema = schema();
        let properties = schema
            .pointer(&format!("{pointer}/properties"))
            .and_then(serde_json::Value::as_object)
            .unwrap_or_else(|| panic!("the schema has no {pointer}/properties"));
        properties.keys().cloned().collect()
    }

    fn owned(keys: &[&str]) -> BTreeSet<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    /// Every listed key is taken by a check of its own: a value no key accepts (a date)
    /// is reported under that key's name, not as unknown and not ignored.
    #[test]
    fn every_listed_key_is_read_by_its_own_check() {
        // Where each list's keys go, and the path their messages name them by.
        let cases = [
            (
                &TOP_KEYS[..],
                "{k} = 1979-05-27\n[jobs.a]\ncommand = 'x'\n",
                "",
            ),
            (
                &JOB_KEYS,
                "[jobs.a]\ncommand = 'x'\n{k} = 1979-05-27\n",
                "jobs.a.",
            ),
            (
                &QUEUE_KEYS,
                "[queues.q]\n{k} = 1979-05-27\n[jobs.a]\ncommand = 'x'\n",
                "queues.q.",
            ),
        ];
        for (keys, source, prefix) in cases {
            for key in keys {
                // `jobs` itself is the table the other cases add a job to.
                let source = match *key {
                    "jobs" => "jobs = 1979-05-27\n".to_string(),
                    "command" => "[jobs.a]\ncommand = 1979-05-27\n".to_string(),
                    _ => source.replace("{k}", key),
                };
                let m = messages(&source);
                let named = |m: &String| {
                    m.starts_with(&format!("{prefix}{key}: expected"))
                        || m.starts_with(&format!("`{key}` must be"))
                };
                assert!(m.iter().any(named), "{key}: {m:?}");
                assert!(
                    m.iter().all(|m| !m.starts_with("unknown key")),
                    "{key}: {m:?}"
                );
            }
        }
    }

    #[test]
    fn the_key_lists_have_no_duplicates() {
        assert_eq!(set(&TOP_KEYS).len(), TOP_KEYS.len());
        assert_eq!(set(&JOB_KEYS).len(), JOB_KEYS.len());
        assert_eq!(set(&QUEUE_KEYS).len(), QUEUE_KEYS.len());
    }

    #[test]
    fn the_schema_has_the_same_keys() {
        assert_eq!(schema_keys(""), owned(&TOP_KEYS), "top level");
        assert_eq!(schema_keys("/definitions/job"), owned(&JOB_KEYS), "a job");
        assert_eq!(
            schema_keys("/properties/queues/additionalProperties"),
            owned(&QUEUE_KEYS),
            "a queue"
        );
    }

    #[test]
    fn the_schema_refuses_other_keys_where_the_loader_does() {
        let schema = schema();
        for pointer in [
            "",
            "/definitions/job",
            "/properties/queues/additionalProperties",
        ] {
            let extra = schema.pointer(&format!("{pointer}/additionalProperties"));
            assert_eq!(
                extra,
                Some(&serde_json::Value::Bool(false)),
                "{pointer:?} allows other keys"
            );
        }
    }

    /// Messages of parsing `source` as a job file.
    fn messages(source: &str) -> Vec<String> {
        match crate::jobfile::parse(std::path::Path::new("x.toml"), source.to_string()) {
            Ok(_) => Vec::new(),
            Err(e) => e.diagnostics().iter().map(|d| d.message.clone()).collect(),
        }
    }

    /// Every listed key reaches its own check (a value of the wrong type is fine, as
    /// long as the key is not called unknown), and a key not listed is refused.
    #[test]
    fn every_listed_key_is_accepted_and_others_are_refused() {
        let job = |key: &str| match key {
            "command" => "[jobs.a]\ncommand = {}\n".to_string(),
            key => format!("[jobs.a]\ncommand = 'x'\n{key} = {{}}\n"),
        };
        // `jobs` is also the table every other case adds a job to, so it stands alone.
        let top = |key: &str| match key {
            "jobs" => "jobs = 0\n".to_string(),
            key => format!("{key} = {{}}\n[jobs.a]\ncommand = 'x'\n"),
        };
        let queue = |key: &str| format!("[queues.q]\n{key} = {{}}\n[jobs.a]\ncommand = 'x'\n");
        let cases = [
            (&TOP_KEYS[..], &top as &dyn Fn(&str) -> String),
            (&JOB_KEYS[..], &job),
            (&QUEUE_KEYS[..], &queue),
        ];
        for (keys, source) in cases {
            for key in keys {
                let m = messages(&source(key));
                assert!(
                    m.iter().all(|m| !m.starts_with("unknown key")),
                    "{key}: {m:?}"
                );
            }
            let m = messages(&source("not_a_key"));
            assert_eq!(m, ["unknown key `not_a_key`"], "{m:?}");
        }
    }
}
