//! Property: any item — quotes, `$( )`, backticks, newlines, leading dashes, globs,
//! unicode — reaches a shell-string command byte for byte, and never runs as code.

use crate::util::Test;
use proptest::prelude::*;

fn hostile_item() -> impl Strategy<Value = String> {
    prop_oneof![
        "[-a-zA-Z0-9 '\"$`()\\\\;&|<>*?~#!{}\\[\\]\n\t=%^,.:@+]{0,24}",
        Just("$(touch pwned)".to_string()),
        Just("`touch pwned`".to_string()),
        Just("'; touch pwned; '".to_string()),
        Just("\"; touch pwned; \"".to_string()),
        Just("-rf".to_string()),
        Just("a\nb; touch pwned".to_string()),
        Just("é✓😀 ${HOME} {item}".to_string()),
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn items_reach_a_shell_command_byte_for_byte(items in prop::collection::vec(hostile_item(), 1..40)) {
        let list = toml::Value::Array(items.iter().map(|i| toml::Value::String(i.clone())).collect());
        let t = Test::new(&format!(
            "pool = 4\n[jobs.echo]\ncommand = \"printf '%s' {{item}} > out/{{index}}\"\nitems = {list}\n"
        ));
        std::fs::create_dir(t.path("out")).unwrap();
        let out = t.run();
        prop_assert_eq!(out.code, Some(0), "{}", out.stderr);
        for (index, item) in items.iter().enumerate() {
            let got = std::fs::read(t.path(&format!("out/{index}"))).unwrap();
            prop_assert_eq!(got, item.as_bytes().to_vec(), "item {}", index);
        }
        prop_assert!(!t.path("pwned").exists(), "an item ran as code");
    }
}
