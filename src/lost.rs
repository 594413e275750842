//! Writes the user asked for that did not happen: task output to stdout, log files
//! (`--logs`), reports (`--report`, `--junit`). A lost write is never silent: the first
//! of each kind is said on stderr when it happens, the summary says how many, and a run
//! that lost any of them exits 1 even if every task succeeded.
//!
//! A reader of stdout that went away (`runner … | head`) is not a loss: the user chose
//! to stop reading.

use crate::task::plural;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stdout,
    Logs,
    Report,
}

impl Kind {
    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Stdout => "task output on stdout",
            Kind::Logs => "log files",
            Kind::Report => "reports",
        }
    }
}

/// The first loss of each kind (its message) and how many there were.
#[derive(Default)]
pub struct LostWrites {
    kinds: Mutex<[Option<(String, u64)>; 3]>,
}

impl LostWrites {
    /// Records a lost write; returns the line to say on stderr when it is the first of
    /// its kind (`None` afterwards, so that a full disk is said once, not per line).
    pub fn record(&self, kind: Kind, message: impl FnOnce() -> String) -> Option<String> {
        let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        match &mut kinds[kind.index()] {
            Some((_, count)) => {
                *count += 1;
                None
            }
            slot @ None => {
                let message = message();
                *slot = Some((message.clone(), 1));
                Some(format!("{message}; {} will be incomplete", kind.name()))
            }
        }
    }

    pub fn any(&self) -> bool {
        let kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        kinds.iter().any(Option::is_some)
    }

    /// One line per kind that lost writes, for the end of the summary (the error
    /// itself was said when it happened).
    pub fn summary(&self) -> String {
        let kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for kind in [Kind::Stdout, Kind::Logs, Kind::Report] {
            if let Some((_, count)) = &kinds[kind.index()] {
                out.push_str(&format!(
                    "[runner] {} incomplete: {} (said above)\n",
                    kind.name(),
                    plural(*count, "failed write")
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_loss_of_a_kind_is_said_the_rest_counted() {
        let lost = LostWrites::default();
        assert!(!lost.any());
        let first = lost.record(Kind::Logs, || "cannot write a.log: disk full".into());
        assert_eq!(
            first.as_deref(),
            Some("cannot write a.log: disk full; log files will be incomplete")
        );
        assert_eq!(lost.record(Kind::Logs, || unreachable!()), None);
        assert!(lost
            .record(Kind::Stdout, || "stdout: disk full".into())
            .is_some());
        assert!(lost.any());
        assert_eq!(
            lost.summary(),
            "[runner] task output on stdout incomplete: 1 failed write (said above)\n\
             [runner] log files incomplete: 2 failed writes (said above)\n"
        );
    }
}
