//! The language reference's table of diagnostic codes is the list in
//! `diagnostics.rs`: every code, once, in order, with its summary. When a
//! code is added, this test prints the table to paste.

use cvl_analysis::Code;

#[test]
fn the_reference_lists_every_code_with_its_summary() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/cvl-language.md"
    ))
    .unwrap();
    let expected: String = Code::ALL
        .iter()
        .map(|c| format!("| `{}` | {} |\n", c.as_str(), c.summary()))
        .collect();
    let section = doc
        .split("## 10. Diagnostic codes")
        .nth(1)
        .expect("docs/cvl-language.md has a section 10")
        .split("\n## ")
        .next()
        .unwrap();
    let rows: String = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        rows, expected,
        "docs/cvl-language.md §10 must hold this table, one row per code:\n\n| code | meaning |\n|---|---|\n{expected}"
    );
}
