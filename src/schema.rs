//! `runner schema`: a JSON Schema of the job file, for TOML editors (Taplo, Even Better
//! TOML). Written by hand from the contract, because the loader's raw types take several
//! shapes per key (`items`, `stdin`, `command`) that derived schemas describe badly.

pub fn json_schema() -> String {
    include_str!("../docs/runner.schema.json").to_string()
}
