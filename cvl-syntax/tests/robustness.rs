//! Properties over random input: parsing is lossless and never panics, and
//! the formatter keeps meaning and is idempotent whenever it accepts a file.

use cvl_syntax::format::{format_text, FormatOptions};
use cvl_syntax::{parse, soup::token_soup, SyntaxKind};
use proptest::prelude::*;

fn meaning(text: &str) -> Vec<(SyntaxKind, String)> {
    parse(text)
        .syntax()
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| !t.kind().is_trivia())
        .map(|t| (t.kind(), t.text().to_string()))
        .collect()
}

fn check(text: &str) {
    let parsed = parse(text);
    assert_eq!(parsed.syntax().to_string(), text);
    // Item by item, the same items at the same offsets, the same errors.
    let mut items = Vec::new();
    let errors = cvl_syntax::parse_each_item(text, |node, offset| items.push((node, offset)));
    let expected: Vec<_> = parsed
        .syntax()
        .children()
        .map(|n| (n.green().into_owned(), n.text_range().start()))
        .collect();
    assert_eq!(items, expected, "items of:\n{text}");
    assert_eq!(errors, parsed.errors(), "errors of:\n{text}");
    for error in parsed.errors() {
        assert!(u32::from(error.range.end()) as usize <= text.len());
    }
    if let Ok(formatted) = format_text(text, FormatOptions::default()) {
        assert_eq!(
            meaning(&formatted),
            meaning(text),
            "meaning changed:\n{text}\n---\n{formatted}"
        );
        let again = format_text(&formatted, FormatOptions::default()).expect("output parses");
        assert_eq!(again, formatted, "not idempotent:\n{text}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn token_soups(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check(&token_soup(&bytes));
    }

    #[test]
    fn arbitrary_strings(text in "\\PC{0,200}") {
        check(&text);
    }

    #[test]
    fn arbitrary_bytes_through_lossy_utf8(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check(&String::from_utf8_lossy(&bytes));
    }
}

/// The parser lexes a batch of tokens at a time: its tokens and errors are
/// `lex`'s over the whole text, wherever a batch ends (inside a run of
/// invalid characters, before an unterminated string, ...).
fn check_batches(text: &str) {
    let parsed = parse(text);
    let tokens: Vec<(SyntaxKind, usize)> = parsed
        .syntax()
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .map(|t| (t.kind(), t.text().len()))
        .collect();
    let (lexed, lex_errors) = cvl_syntax::lexer::lex(text);
    let lexed: Vec<(SyntaxKind, usize)> = lexed
        .iter()
        .map(|t| (t.kind, u32::from(t.len) as usize))
        .collect();
    assert_eq!(tokens, lexed);
    for error in &lex_errors {
        assert!(parsed.errors().contains(error), "{error:?} lost");
    }
    check(text);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn files_longer_than_a_batch_of_tokens(
        soups in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 60..90),
        invalid in proptest::collection::vec((any::<proptest::sample::Index>(), "[#%€0-9]{1,6}"), 0..40),
    ) {
        let mut text: String = soups.iter().map(|bytes| token_soup(bytes)).collect();
        for (at, run) in invalid {
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            text.insert_str(i, &run);
        }
        check_batches(&text);
    }
}

/// Well-formed files built from random pieces: the formatter must accept them.
fn well_formed() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec!["a", "b", "dom", "x1", "ethernet0"]);
    let literal = prop::sample::select(vec!["\"v\"", "\"x y\"", "\"\"", "\"a\\\"b\""]);
    let leaf = prop_oneof![
        literal.prop_map(str::to_string),
        (name.clone(), name.clone()).prop_map(|(a, b)| format!("{a}.{b}")),
    ];
    let value = leaf.prop_recursive(4, 24, 4, move |inner| {
        prop::collection::vec(
            (prop::sample::select(vec!["k", "ip", "\"q k\""]), inner),
            1..4,
        )
        .prop_map(|pairs| {
            let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k} => {v}")).collect();
            format!("{{{}}}", body.join(","))
        })
    });
    let comment = prop::sample::select(vec!["", " /* c */ ", "// l\n", "\n\n"]);
    let stmt = (name, prop::collection::vec(value, 1..5), comment)
        .prop_map(|(n, vs, c)| format!("{c}{n} = {};", vs.join(", ")));
    prop::collection::vec(stmt, 0..6)
        .prop_map(|stmts| format!("A extends VMAppliance {{{}}}\n", stmts.join("")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn formatter_accepts_and_keeps_well_formed_files(text in well_formed()) {
        prop_assert!(parse(&text).errors().is_empty(), "{:?}", parse(&text).errors());
        prop_assert!(format_text(&text, FormatOptions::default()).is_ok());
        check(&text);
    }
}

#[test]
fn deep_nesting_gives_an_error_not_a_stack_overflow() {
    let depth = 100_000;
    let mut text = String::from("A extends VMAppliance { x = ");
    for _ in 0..depth {
        text.push_str("{ k => ");
    }
    text.push_str("\"v\"");
    for _ in 0..depth {
        text.push_str(" }");
    }
    text.push_str("; }\n");
    let parsed = parse(&text);
    assert_eq!(parsed.syntax().to_string(), text);
    assert!(parsed
        .errors()
        .iter()
        .any(|e| e.message.contains("nested more than")));
    // The rest of the file still parses: the object and its body are there.
    assert_eq!(parsed.tree().objects().count(), 1);
}

#[test]
fn deep_unclosed_nesting() {
    let text = "A extends B { x = ".to_string() + &"{ k => ".repeat(100_000);
    let parsed = parse(&text);
    assert_eq!(parsed.syntax().to_string(), text);
    assert!(!parsed.errors().is_empty());
}
