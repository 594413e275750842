//! Items with fields, as the file writes them: an array of tables (`items = [ { name =
//! "api", port = 8080 }, … ]`) or a matrix (`items = { matrix = { os = [...], py =
//! [...] }, exclude = [ { os = "mac", py = "3.11" } ] }`). Every table must have the same
//! keys and scalar values; a matrix list may not be empty; an exclude must name keys
//! and values of the matrix, and remove something.

use super::{article, Checker};
use crate::diagnostic::Diagnostic;
use crate::jobfile::fields::{self, FieldItems, MAX_COMBINATIONS};
use crate::jobfile::typed::{self, Value};
use crate::jobfile::Items;
use std::collections::HashMap;
use std::ops::Range;
use toml::de::{DeTable, DeValue};

impl Checker<'_> {
    /// `items = [ { … }, … ]`: every element a table with the same keys.
    pub(super) fn item_tables(&mut self, values: &[Value<'_>], span: Range<usize>) -> Items {
        let mut keys: Option<Vec<String>> = None;
        let mut rows = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let DeValue::Table(table) = value.get_ref() else {
                self.error(
                    format!(
                        "`items` mixes tables and {}: either every item is a table (items with fields) or none is",
                        article(value.get_ref().type_str())
                    ),
                    span,
                );
                return Items::List(Vec::new());
            };
            let these: Vec<String> = table.keys().map(|k| k.get_ref().to_string()).collect();
            match &keys {
                None => {
                    if these.is_empty() {
                        self.error(
                            "an item table is empty: give it fields, e.g. { name = \"api\" }",
                            value.span(),
                        );
                        return Items::List(Vec::new());
                    }
                    if !self.field_names(&these, value.span()) {
                        return Items::List(Vec::new());
                    }
                    keys = Some(these);
                }
                Some(first) if !same_keys(first, &these) => {
                    self.error(
                        format!(
                            "item {i} has the fields {} but item 0 has {}: every table in `items` has the same keys",
                            these.join(", "),
                            first.join(", ")
                        ),
                        value.span(),
                    );
                    return Items::List(Vec::new());
                }
                Some(_) => {}
            }
            let keys = keys.as_ref().expect("set above");
            let mut row = Vec::new();
            for key in keys {
                let (_, v) = table
                    .iter()
                    .find(|(k, _)| k.get_ref() == key)
                    .expect("same keys");
                match self.field_value(key, v) {
                    Some(text) => row.push(text),
                    None => return Items::List(Vec::new()),
                }
            }
            rows.push(row);
        }
        let items = FieldItems::tables(keys.unwrap_or_default(), rows);
        self.unique_labels(items, span)
    }

    /// The items, if no two have the same label (values joined by `,`): a label names a
    /// task in output, reports and the journal. Only a value holding `,` (or two equal
    /// tables) can make two alike.
    fn unique_labels(&mut self, items: FieldItems, span: Range<usize>) -> Items {
        let commas = (0..items.len()).any(|i| items.values(i).iter().any(|v| v.contains(',')));
        let may_repeat = commas || items.is_tables();
        if may_repeat {
            let mut seen = std::collections::HashMap::new();
            for i in 0..items.len() {
                if let Some(first) = seen.insert(items.label(i), i) {
                    self.error(
                        format!(
                            "items {first} and {i} have the same label `{}` (their values joined by `,`): each task needs its own",
                            crate::diagnostic::printable(&items.label(i), 80)
                        ),
                        span,
                    );
                    return Items::List(Vec::new());
                }
            }
        }
        Items::Fields(items)
    }

    /// `items = { matrix = { KEY = [values], … }, exclude = [ { KEY = value, … }, … ] }`.
    pub(super) fn item_matrix(&mut self, table: &DeTable<'_>, span: Range<usize>) -> Items {
        for (key, value) in table.iter() {
            if !matches!(&**key.get_ref(), "matrix" | "exclude") {
                self.diagnostics.push(
                    Diagnostic::at(format!("unknown key `{}` in a matrix", key.get_ref()), value.span())
                        .with_note("a matrix is `items = { matrix = { KEY = [values], … }, exclude = [ { KEY = value }, … ] }`"),
                );
                return Items::List(Vec::new());
            }
        }
        let matrix = table
            .iter()
            .find(|(k, _)| k.get_ref() == "matrix")
            .map(|(_, v)| v);
        let Some(matrix) = matrix else {
            self.error(
                "`exclude` without `matrix`: write `items = { matrix = { … }, exclude = [...] }`",
                span,
            );
            return Items::List(Vec::new());
        };
        let DeValue::Table(lists_table) = matrix.get_ref() else {
            self.error(
                format!(
                    "`matrix` must be a table of lists (`{{ os = [\"linux\", \"mac\"] }}`), not {}",
                    article(matrix.get_ref().type_str())
                ),
                matrix.span(),
            );
            return Items::List(Vec::new());
        };
        if lists_table.is_empty() {
            self.error(
                "`matrix` is empty: give it at least one key with a list of values",
                matrix.span(),
            );
            return Items::List(Vec::new());
        }
        // The size first: a matrix far too large is refused before its values are read.
        let combinations = lists_table
            .iter()
            .try_fold(1u64, |n, (_, v)| match v.get_ref() {
                DeValue::Array(values) => n.checked_mul(values.len() as u64),
                _ => Some(n),
            });
        if combinations.is_none_or(|n| n > MAX_COMBINATIONS) {
            self.diagnostics.push(
                Diagnostic::at(format!("the matrix has more than {MAX_COMBINATIONS} combinations"), matrix.span())
                    .with_note("a fan-out that large belongs in `items = { file = \"PATH\" }` (read as tasks start) or `range`"),
            );
            return Items::List(Vec::new());
        }
        let Some((keys, lists)) = self.matrix_lists(lists_table, matrix.span()) else {
            return Items::List(Vec::new());
        };
        let excludes = match table.iter().find(|(k, _)| k.get_ref() == "exclude") {
            None => Vec::new(),
            Some((_, exclude)) => match self.excludes(exclude, &keys, &lists) {
                Some(excludes) => excludes,
                None => return Items::List(Vec::new()),
            },
        };
        let excluded = |values: &[&str]| {
            excludes
                .iter()
                .position(|ex| ex.pairs.iter().all(|(k, v)| values[*k] == v.as_str()))
        };
        let (items, used) = FieldItems::matrix(keys, lists, excluded, excludes.len());
        // An entry that was never the first to match a combination removes nothing.
        if let Some(unused) = used.iter().position(|u| !u) {
            self.error(
                "this `exclude` entry matches nothing that an earlier entry has not already removed",
                excludes[unused].span.clone(),
            );
            return Items::List(Vec::new());
        }
        if items.is_empty() {
            self.error("the excludes remove every combination of the matrix", span);
            return Items::List(Vec::new());
        }
        self.unique_labels(items, span)
    }

    /// The keys of a matrix and each one's list of values.
    fn matrix_lists(
        &mut self,
        lists_table: &DeTable<'_>,
        span: Range<usize>,
    ) -> Option<(Vec<String>, Vec<Vec<String>>)> {
        let keys: Vec<String> = lists_table
            .keys()
            .map(|k| k.get_ref().to_string())
            .collect();
        if !self.field_names(&keys, span.clone()) {
            return None;
        }
        let mut lists = Vec::new();
        for (key, value) in lists_table.iter() {
            let key = key.get_ref();
            let DeValue::Array(values) = value.get_ref() else {
                self.error(
                    format!(
                        "matrix key `{key}` must be a list of values, not {}",
                        article(value.get_ref().type_str())
                    ),
                    value.span(),
                );
                return None;
            };
            if values.is_empty() {
                self.error(
                    format!("matrix key `{key}` has an empty list: the matrix would have no items"),
                    value.span(),
                );
                return None;
            }
            let mut list: Vec<String> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for v in values {
                let text = self.field_value(key, v)?;
                if !seen.insert(text.clone()) {
                    self.error(format!("matrix key `{key}` lists {text:?} twice"), v.span());
                    return None;
                }
                list.push(text);
            }
            lists.push(list);
        }
        Some((keys, lists))
    }

    /// `exclude = [ { KEY = value, … }, … ]`: for each entry, (key index, value) pairs.
    /// An entry naming an unknown key or value, or an empty one, is reported.
    fn excludes(
        &mut self,
        exclude: &Value<'_>,
        keys: &[String],
        lists: &[Vec<String>],
    ) -> Option<Vec<Exclude>> {
        let DeValue::Array(entries) = exclude.get_ref() else {
            self.error(
                "`exclude` is a list of tables: `exclude = [ { os = \"mac\", py = \"3.11\" } ]`",
                exclude.span(),
            );
            return None;
        };
        if entries.len() > MAX_EXCLUDES {
            self.error(
                format!("`exclude` has {} entries, more than {MAX_EXCLUDES}: list the items you want as tables instead", entries.len()),
                exclude.span(),
            );
            return None;
        }
        let mut out: Vec<Exclude> = Vec::new();
        for entry in entries {
            let DeValue::Table(table) = entry.get_ref() else {
                self.error(
                    format!(
                        "an `exclude` entry must be a table of matrix values, not {}",
                        article(entry.get_ref().type_str())
                    ),
                    entry.span(),
                );
                return None;
            };
            if table.is_empty() {
                self.error(
                    "an empty `exclude` entry would remove every combination",
                    entry.span(),
                );
                return None;
            }
            let mut pairs = Vec::new();
            for (key, value) in table.iter() {
                let name = key.get_ref();
                let Some(k) = keys.iter().position(|known| known == name) else {
                    let mut d = Diagnostic::at(
                        format!("`exclude` names `{name}`, which is not a key of the matrix"),
                        key.span(),
                    );
                    d = d.with_note(
                        match crate::diagnostic::suggest(name, keys.iter().map(String::as_str)) {
                            Some(s) => {
                                format!("did you mean `{s}`? the keys are {}", keys.join(", "))
                            }
                            None => format!("the keys are {}", keys.join(", ")),
                        },
                    );
                    self.diagnostics.push(d);
                    return None;
                };
                let text = self.field_value(name, value)?;
                if !lists[k].contains(&text) {
                    self.diagnostics.push(
                        Diagnostic::at(format!("`exclude` has {name} = {text:?}, which is not in the matrix's list for `{name}`"), value.span())
                            .with_note(format!("the values of `{name}` are {}", quoted_list(&lists[k]))),
                    );
                    return None;
                }
                pairs.push((k, text));
            }
            out.push(Exclude {
                pairs,
                span: entry.span(),
            });
        }
        Some(out)
    }

    /// Field names, checked: any key but the empty one (`node-version`, the common
    /// GitHub matrix key, is `{item.node-version}` and `RUNNER_ITEM_NODE_VERSION`), as
    /// long as each makes an environment variable (`RUNNER_ITEM_KEY`) of its own.
    fn field_names(&mut self, keys: &[String], span: Range<usize>) -> bool {
        let mut env: HashMap<String, &str> = HashMap::new();
        for key in keys {
            if key.is_empty() {
                self.error(
                    "a field name is empty: name it (it is written {item.NAME} and given as RUNNER_ITEM_NAME)",
                    span,
                );
                return false;
            }
            if let Some(other) = env.insert(fields::env_name(key), key) {
                self.error(
                    format!(
                        "fields `{other}` and `{key}` would both be {}",
                        fields::env_name(key)
                    ),
                    span,
                );
                return false;
            }
        }
        true
    }

    /// A field's value: a scalar, as text, without NUL.
    fn field_value(&mut self, key: &str, value: &Value<'_>) -> Option<String> {
        match typed::scalar(value.get_ref()) {
            Some(text) if text.contains('\0') => {
                self.error(
                    format!("field `{key}` holds a NUL byte, which no process can be given"),
                    value.span(),
                );
                None
            }
            Some(text) => Some(text),
            None => {
                self.error(
                    format!(
                        "field `{key}` holds {}; a field's value is a string, a number or a boolean",
                        article(value.get_ref().type_str())
                    ),
                    value.span(),
                );
                None
            }
        }
    }
}

/// One `exclude` entry: (key index, value) pairs, all of which a combination must
/// match, and where the entry is.
struct Exclude {
    pairs: Vec<(usize, String)>,
    span: Range<usize>,
}

/// The most `exclude` entries a matrix may have: each combination is checked against
/// them all.
const MAX_EXCLUDES: usize = 256;

fn same_keys(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|k| b.contains(k))
}

fn quoted_list(values: &[String]) -> String {
    values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
