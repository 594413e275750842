//! The job file as TOML says it: serde structs that mirror the file, with the byte range
//! of every value a later check may point at. Nothing here is validated beyond types;
//! `jobfile::load` turns this into the checked model.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

pub const TOP_KEYS: [&str; 6] = ["pool", "fail_fast", "shell", "env", "queues", "jobs"];
pub const JOB_KEYS: [&str; 16] = [
    "command",
    "needs",
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
];
pub const QUEUE_KEYS: [&str; 1] = ["capacity"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub pool: Option<Spanned<i64>>,
    pub fail_fast: Option<bool>,
    pub shell: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub env: IndexMap<String, Spanned<String>>,
    #[serde(default)]
    pub queues: IndexMap<Spanned<String>, RawQueue>,
    #[serde(default)]
    pub jobs: Option<Spanned<IndexMap<Spanned<String>, Spanned<RawJob>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub capacity: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    pub command: Spanned<toml::Value>,
    #[serde(default)]
    pub needs: Vec<Spanned<String>>,
    pub items: Option<Spanned<toml::Value>>,
    pub stdin: Option<Spanned<toml::Value>>,
    pub to: Option<Spanned<String>>,
    #[serde(default)]
    pub env: IndexMap<String, Spanned<String>>,
    pub cwd: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub retries: Option<Spanned<i64>>,
    pub retry_delay: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<i64>>,
    pub success_codes: Option<Spanned<Vec<Spanned<i64>>>>,
    pub allow_failure: Option<bool>,
    pub local: Option<bool>,
    /// Free text shown by `runner graph`.
    pub description: Option<String>,
    /// Overrides the top-level `shell` for this job.
    pub shell: Option<Spanned<Vec<String>>>,
}
