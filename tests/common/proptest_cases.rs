//! The case count of the proptest fuzz binaries (issue 13): a default that keeps each binary to
//! seconds in a debug build, unless `PROPTEST_CASES` asks for more. Included with `#[path]`
//! rather than through `mod common`, which carries the server harnesses.

use proptest::prelude::ProptestConfig;

/// `default_cases` unless `PROPTEST_CASES` says otherwise.
pub fn cases(default_cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default_cases;
    }
    c
}
