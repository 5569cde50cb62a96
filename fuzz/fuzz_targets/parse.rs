//! Longer runs of the parser and formatter properties than the test suite
//! affords: `cargo +nightly fuzz run parse` (or `cargo fuzz run parse`).
//! Half the inputs are raw bytes, half are token soups built from them.
#![no_main]

use cvl_syntax::format::{format_text, FormatOptions};
use libfuzzer_sys::fuzz_target;

fn check(text: &str) {
    let parsed = cvl_syntax::parse(text);
    assert_eq!(parsed.syntax().to_string(), text, "lossless");
    if let Ok(formatted) = format_text(text, FormatOptions::default()) {
        let again = format_text(&formatted, FormatOptions::default()).expect("output parses");
        assert_eq!(again, formatted, "idempotent");
    }
}

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0, rest)) => check(&cvl_syntax::soup::token_soup(rest)),
        _ => {
            if let Ok(text) = std::str::from_utf8(data) {
                check(text);
            }
        }
    }
});
