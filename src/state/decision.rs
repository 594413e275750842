//! What happens to a task, as decided before it starts: its identity and key, the
//! action (run, up to date, done earlier, unchanged, cached) and the reason, and what was found of its
//! sources, carried to its end.

use super::identity::Identity;
use super::uptodate;

/// What the run knows of a task before it starts: its identity and key, what happens to
/// it and why.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TaskId {
    pub identity: Identity,
    pub key: u64,
    pub action: Action,
    pub reason: String,
    /// A task with `sources`: what was found of them, carried to its end.
    #[serde(skip)]
    pub inputs: Option<std::sync::Arc<Inputs>>,
}

/// Two are the same when they say the same (what was found of the sources aside).
impl PartialEq for TaskId {
    fn eq(&self, other: &TaskId) -> bool {
        (self.identity, self.key, self.action, &self.reason)
            == (other.identity, other.key, other.action, &other.reason)
    }
}

impl Eq for TaskId {}

/// What happens to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Action {
    Run,
    /// Its sources and outputs are as its last success left them.
    UpToDate,
    /// It succeeded in the run this one resumes.
    DoneEarlier,
    /// `--changed-since`: no source of it changed.
    Unchanged,
    /// `--cache`: its entry is in the results cache (restored instead of run).
    Cached,
}

impl Action {
    /// As `runner plan --json` and the reports name it.
    pub fn word(self) -> &'static str {
        match self {
            Action::Run => "run",
            Action::UpToDate => "up_to_date",
            Action::DoneEarlier => "done_earlier",
            Action::Unchanged => "unchanged",
            Action::Cached => "cached",
        }
    }
}

/// A task with `sources`, as its decision left it.
#[derive(Debug, Default)]
pub struct Inputs {
    /// The sources hashed before it ran, recorded if it succeeds (`None`: they could
    /// not be, and the task will not be up to date next time either).
    pub sources: Option<Vec<uptodate::FileRecord>>,
    /// Up to date, but with stats that changed: the stamp to write back.
    pub refreshed: Option<uptodate::Stamp>,
    /// A source or output that could not be read: said on stderr.
    pub problem: Option<String>,
}
