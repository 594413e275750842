//! `runner schema`: a JSON Schema of the job file, for TOML editors (Taplo, Even Better
//! TOML). Written by hand from the contract, because the loader's raw types take several
//! shapes per key (`items`, `stdin`, `command`) that derived schemas describe badly.
//!
//! `runner schema --report`: a JSON Schema of the JSON report (`run --report FILE`),
//! written by hand from `report::json` and docs/reports.md, every object closed
//! (`additionalProperties: false`). The integration tests validate every report they
//! write against it, and one run gives each of its keys a value (tests/it/report_schema.rs):
//! a key added to the report is added to docs/runner-report.schema.json in the same change.

pub fn json_schema() -> String {
    include_str!("../docs/runner.schema.json").to_string()
}

pub fn report_schema() -> String {
    include_str!("../docs/runner-report.schema.json").to_string()
}
