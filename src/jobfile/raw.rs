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

/// The keys are written three times: the serde structs above, the `*_KEYS` lists (which
/// the "did you mean" of an unknown key picks from) and `docs/runner.schema.json` (which
/// editors check files against). These tests fail when the three disagree.
#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{self, Deserializer, Visitor};
    use std::collections::BTreeSet;

    /// The field names a derived `Deserialize` struct accepts, as serde itself lists
    /// them: derived code hands them to `deserialize_struct`, which this deserializer
    /// records and then refuses.
    fn serde_fields<T: de::DeserializeOwned>() -> BTreeSet<&'static str> {
        struct Probe<'a>(&'a mut &'static [&'static str]);

        impl<'de> Deserializer<'de> for Probe<'_> {
            type Error = de::value::Error;

            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
                Err(de::Error::custom("only structs are probed"))
            }

            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _name: &'static str,
                fields: &'static [&'static str],
                _visitor: V,
            ) -> Result<V::Value, Self::Error> {
                *self.0 = fields;
                Err(de::Error::custom("probed"))
            }

            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
                bytes byte_buf option unit unit_struct newtype_struct seq tuple
                tuple_struct map enum identifier ignored_any
            }
        }

        let mut fields: &'static [&'static str] = &[];
        let _ = T::deserialize(Probe(&mut fields));
        assert!(!fields.is_empty(), "not a struct with named fields");
        fields.iter().copied().collect()
    }

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

    #[test]
    fn the_key_lists_are_the_serde_fields() {
        assert_eq!(set(&TOP_KEYS), serde_fields::<RawFile>(), "TOP_KEYS");
        assert_eq!(set(&JOB_KEYS), serde_fields::<RawJob>(), "JOB_KEYS");
        assert_eq!(set(&QUEUE_KEYS), serde_fields::<RawQueue>(), "QUEUE_KEYS");
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
    fn the_schema_refuses_other_keys_where_serde_does() {
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
