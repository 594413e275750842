//! `runner graph`: the job graph drawn as text or as Graphviz. Pure: takes the checked
//! model, returns text. The rules that span jobs live with the loader
//! (`jobfile::wiring`).

use crate::jobfile::wiring::{edges, Edge};
use crate::jobfile::{Items, JobFile, StdinSpec, When};
use std::fmt::Write;

fn items_label(file: &JobFile, items: &Items) -> String {
    match items {
        Items::Single => String::new(),
        Items::List(list) => format!(" × {} items", list.len()),
        Items::File { count, .. } => format!(" × {count} items"),
        Items::Range(a, b) => format!(" × range {a}..{b}"),
        Items::Fields(items) => format!(" × {} items ({})", items.len(), items.keys.join(", ")),
        Items::Queue(q) => format!(" × items from queue `{}`", file.queues[*q].name),
    }
}

/// `runner graph`: one paragraph per job, in file order.
pub fn render_text(file: &JobFile) -> String {
    let mut out = String::new();
    for job in &file.jobs {
        let _ = write!(out, "{}{}", job.name, items_label(file, &job.items));
        if let StdinSpec::Queue(q) = job.stdin {
            let _ = write!(out, " (stdin from queue `{}`)", file.queues[q].name);
        }
        if job.when != When::Success {
            let _ = write!(out, " (when {})", job.when.name());
        }
        out.push('\n');
        if let Some(d) = &job.description {
            let _ = writeln!(out, "  {}", crate::task::printable(d, 200));
        }
        for &dep in &job.needs {
            let each = if job.each.contains(&dep) {
                " (item by item)"
            } else {
                ""
            };
            let _ = writeln!(out, "  needs {}{each}", file.jobs[dep].name);
        }
        if let Some(q) = job.to {
            let queue = &file.queues[q];
            let to = queue
                .consumer
                .map(|c| file.jobs[c].name.as_str())
                .unwrap_or("?");
            let _ = writeln!(
                out,
                "  feeds {to} through queue `{}` (capacity {})",
                queue.name, queue.capacity
            );
        }
    }
    out
}

/// `runner graph --dot`: Graphviz. Edges point the way work flows: from a job to the
/// jobs that need it (solid, "needed by"; dashed, "each", item by item) and from a producer to its queue's consumer
/// (dashed, "queue NAME"), so that every edge reads left to right as a sentence. Boxes
/// carry the job's description; edges use the boxes' font.
pub fn render_dot(file: &JobFile) -> String {
    let mut out = String::from(
        "digraph runner {\n  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n",
    );
    for job in &file.jobs {
        let mut label = format!("{}{}", job.name, items_label(file, &job.items));
        if job.when != When::Success {
            let _ = write!(label, "\nwhen {}", job.when.name());
        }
        if let Some(d) = &job.description {
            label.push('\n');
            label.push_str(d);
        }
        let _ = writeln!(
            out,
            "  {} [label={}];",
            dot_id(&job.name),
            dot_string(&label)
        );
    }
    for edge in edges(file) {
        match edge {
            Edge::Needs { from, to, each } => {
                let style = if each {
                    "style=dashed, label=\"each\""
                } else {
                    "label=\"needed by\""
                };
                let _ = writeln!(
                    out,
                    "  {} -> {} [{style}];",
                    dot_id(&file.jobs[from].name),
                    dot_id(&file.jobs[to].name)
                );
            }
            Edge::Queue { from, to, queue } => {
                let _ = writeln!(
                    out,
                    "  {} -> {} [style=dashed, label={}];",
                    dot_id(&file.jobs[from].name),
                    dot_id(&file.jobs[to].name),
                    dot_string(&format!("queue {}", file.queues[queue].name))
                );
            }
        }
    }
    out.push_str("}\n");
    out
}

fn dot_id(name: &str) -> String {
    dot_string(name)
}

/// A quoted Graphviz string; a newline becomes Graphviz's `\n` (a line break in a label).
fn dot_string(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use crate::jobfile::parse;
    use std::path::Path;

    #[test]
    fn dot_has_needs_and_queue_edges() {
        let file = parse(
            Path::new("t.toml"),
            "[jobs.p]\ncommand = 'seq 3'\nto = 'q'\n[jobs.c]\ncommand = 'cat'\nstdin = { queue = 'q' }\n[jobs.d]\ncommand = 'true'\nneeds = ['c']\n".into(),
        )
        .unwrap();
        let dot = super::render_dot(&file);
        assert!(
            dot.contains("\"p\" -> \"c\" [style=dashed, label=\"queue q\"];"),
            "{dot}"
        );
        assert!(
            dot.contains("\"c\" -> \"d\" [label=\"needed by\"];"),
            "{dot}"
        );
    }

    #[test]
    fn item_by_item_needs_are_dashed_each_edges_and_when_is_shown() {
        let file = parse(
            Path::new("t.toml"),
            "[jobs.a]\ncommand = 'true'\nitems = [1, 2]\n[jobs.b]\ncommand = 'true'\nitems = [2, 1]\nneeds = [{ job = 'a', each = true }]\n[jobs.r]\ncommand = 'true'\nneeds = ['b']\nwhen = 'always'\n".into(),
        )
        .unwrap();
        let dot = super::render_dot(&file);
        assert!(
            dot.contains("\"a\" -> \"b\" [style=dashed, label=\"each\"];"),
            "{dot}"
        );
        assert!(
            dot.contains("\"b\" -> \"r\" [label=\"needed by\"];"),
            "{dot}"
        );
        assert!(dot.contains("r\\nwhen always"), "{dot}");
        let text = super::render_text(&file);
        assert!(
            text.contains("b × 2 items\n  needs a (item by item)\n"),
            "{text}"
        );
        assert!(text.contains("r (when always)\n  needs b\n"), "{text}");
    }
}
