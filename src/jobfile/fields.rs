//! Items with fields: an array of tables, or a matrix (the product of lists, less its
//! excludes). Each item is a row of values, one per key; its label is the values joined
//! by `,` in key order. A matrix is kept as its lists and never expanded: the item at an
//! index is computed from the index (when excludes removed some combinations, through
//! the list of positions kept, four bytes a combination).
//!
//! Reading them from TOML (and every load-time error) is `check::fields`'s; this module
//! only holds the checked items.

/// The most combinations a matrix may have before its excludes: a million, far past
/// any test matrix; a larger fan-out belongs in `items = { file }` or `range`.
pub const MAX_COMBINATIONS: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldItems {
    /// The keys, in file order.
    pub keys: Vec<String>,
    rows: Rows,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rows {
    /// `items = [ { … }, … ]`: the values of each table, in key order.
    Tables(Vec<Vec<String>>),
    /// `items = { matrix = { … } }`: one list per key; `kept`, when excludes removed
    /// combinations, holds the position in the full product of each item.
    Matrix {
        lists: Vec<Vec<String>>,
        kept: Option<Vec<u32>>,
    },
}

impl FieldItems {
    /// Items from tables, each holding a value for every key (in key order).
    pub fn tables(keys: Vec<String>, rows: Vec<Vec<String>>) -> FieldItems {
        FieldItems {
            keys,
            rows: Rows::Tables(rows),
        }
    }

    /// The items of a matrix of `lists` (one per key, none empty, their product at most
    /// [`MAX_COMBINATIONS`]) without the combinations `excluded` says: it names the first
    /// of `excludes` entries that matches, if one does. Also says which entries were
    /// ever the first to match (an entry that never was removes nothing).
    pub fn matrix(
        keys: Vec<String>,
        lists: Vec<Vec<String>>,
        excluded: impl Fn(&[&str]) -> Option<usize>,
        excludes: usize,
    ) -> (FieldItems, Vec<bool>) {
        let mut items = FieldItems {
            keys,
            rows: Rows::Matrix { lists, kept: None },
        };
        let total = items.len();
        let mut used = vec![false; excludes];
        let kept: Vec<u32> = (0..total)
            .filter(|&p| match excluded(&items.values(p)) {
                Some(entry) => {
                    used[entry] = true;
                    false
                }
                None => true,
            })
            .map(|p| p as u32)
            .collect();
        if kept.len() as u64 != total {
            if let Rows::Matrix { kept: k, .. } = &mut items.rows {
                *k = Some(kept);
            }
        }
        (items, used)
    }

    /// Items from tables (not a matrix).
    pub fn is_tables(&self) -> bool {
        matches!(self.rows, Rows::Tables(_))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many items.
    pub fn len(&self) -> u64 {
        match &self.rows {
            Rows::Tables(rows) => rows.len() as u64,
            Rows::Matrix {
                kept: Some(kept), ..
            } => kept.len() as u64,
            Rows::Matrix { lists, kept: None } => lists.iter().map(|l| l.len() as u64).product(),
        }
    }

    /// The values of the item at `index`, in key order.
    pub fn values(&self, index: u64) -> Vec<&str> {
        match &self.rows {
            Rows::Tables(rows) => rows[index as usize].iter().map(String::as_str).collect(),
            Rows::Matrix { lists, kept } => {
                let mut position = match kept {
                    Some(kept) => u64::from(kept[index as usize]),
                    None => index,
                };
                // Mixed radix, the last key varying fastest.
                let mut values = vec![""; lists.len()];
                for (k, list) in lists.iter().enumerate().rev() {
                    let n = list.len() as u64;
                    values[k] = &list[(position % n) as usize];
                    position /= n;
                }
                values
            }
        }
    }

    /// The item's label: its values joined by `,`.
    pub fn label(&self, index: u64) -> String {
        self.values(index).join(",")
    }

    /// The item's fields, (key, value) in key order.
    pub fn fields(&self, index: u64) -> Vec<(String, String)> {
        self.keys
            .iter()
            .cloned()
            .zip(self.values(index).into_iter().map(str::to_string))
            .collect()
    }
}

/// `RUNNER_ITEM_<KEY>`: the key upper-cased, every character other than A–Z, 0–9 and `_`
/// made `_`.
pub fn env_name(key: &str) -> String {
    format!("RUNNER_ITEM_{}", env_word(key))
}

/// `RUNNER_VAR_<NAME>`: a var as every task gets it, its name made as a field's key is.
pub fn var_env_name(name: &str) -> String {
    format!("RUNNER_VAR_{}", env_word(name))
}

/// A name as part of an environment variable's: upper-cased, every character other
/// than A–Z, 0–9 and `_` made `_`.
fn env_word(name: &str) -> String {
    name.chars()
        .map(|c| match c.to_ascii_uppercase() {
            c @ ('A'..='Z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_matrix_is_the_product_with_the_last_key_fastest_less_its_excludes() {
        let keys = strings(&["os", "py"]);
        let lists = vec![strings(&["linux", "mac"]), strings(&["3.11", "3.12"])];
        let (all, _) = FieldItems::matrix(keys.clone(), lists.clone(), |_| None, 0);
        let labels: Vec<String> = (0..all.len()).map(|i| all.label(i)).collect();
        assert_eq!(labels, ["linux,3.11", "linux,3.12", "mac,3.11", "mac,3.12"]);
        let (some, used) =
            FieldItems::matrix(keys, lists, |v| (v == ["mac", "3.11"]).then_some(0), 1);
        assert_eq!(used, [true]);
        let labels: Vec<String> = (0..some.len()).map(|i| some.label(i)).collect();
        assert_eq!(labels, ["linux,3.11", "linux,3.12", "mac,3.12"]);
        assert_eq!(
            some.fields(2),
            [
                ("os".to_string(), "mac".to_string()),
                ("py".to_string(), "3.12".to_string())
            ]
        );
    }

    #[test]
    fn env_names_are_upper_case_words() {
        assert_eq!(env_name("py-version"), "RUNNER_ITEM_PY_VERSION");
        assert_eq!(env_name("os"), "RUNNER_ITEM_OS");
        assert_eq!(env_name("é"), "RUNNER_ITEM__");
        assert_eq!(var_env_name("profile"), "RUNNER_VAR_PROFILE");
        assert_eq!(var_env_name("Build_2"), "RUNNER_VAR_BUILD_2");
    }
}
