//! Incremental reparsing is a full parse, faster: on random files and random
//! edits inside object bodies, `Parse::reparse` either declines or gives the
//! very tree and errors that parsing the edited text in full gives.

use cvl_syntax::soup::token_soup;
use cvl_syntax::{parse, SyntaxKind, TextEdit, TextRange, TextSize};
use proptest::prelude::*;

/// Files of several objects, bodies with declarations, components, maps
/// and comments, sometimes broken by a piece of token soup.
fn files() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec!["a", "b", "dom", "x1", "ethernet0"]);
    let literal = prop::sample::select(vec!["\"v\"", "\"x y\"", "\"\"", "\"a\\\"b\""]);
    let leaf = prop_oneof![
        literal.prop_map(str::to_string),
        (name.clone(), name.clone()).prop_map(|(a, b)| format!("{a}.{b}")),
    ];
    let value = leaf.prop_recursive(3, 16, 3, move |inner| {
        prop::collection::vec((prop::sample::select(vec!["k", "ip"]), inner), 1..3).prop_map(
            |pairs| {
                let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k} => {v}")).collect();
                format!("{{ {} }}", body.join(", "))
            },
        )
    });
    let statement = prop_oneof![
        (name.clone(), prop::collection::vec(value, 1..3))
            .prop_map(|(n, vs)| format!("  {n} = {};\n", vs.join(", "))),
        name.clone()
            .prop_map(|n| format!("  var \"required\" {n}, other;\n")),
        name.clone().prop_map(|n| format!("  Interface {n};\n")),
        Just("  // a comment\n".to_string()),
        Just("  /* a block */ ".to_string()),
        prop::collection::vec(any::<u8>(), 0..6).prop_map(|b| token_soup(&b)),
    ];
    let object = (
        prop::sample::select(vec!["A", "B", "C"]),
        prop::collection::vec(statement, 0..5),
    )
        .prop_map(|(n, body)| format!("{n} extends VMAppliance {{\n{}}}\n", body.concat()));
    prop::collection::vec(object, 1..4).prop_map(|objects| objects.concat())
}

/// What may be typed: characters, pieces of CVL, braces, quotes, comments.
fn insertion() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..4).prop_map(|b| token_soup(&b)),
        prop::sample::select(vec![
            "",
            "x",
            "1",
            "\"",
            "{",
            "}",
            ";",
            "/*",
            "*/",
            "//",
            "\n",
            "é",
            "=> ",
            " extends ",
        ])
        .prop_map(str::to_string),
    ]
}

/// Byte offsets strictly inside object bodies, on character boundaries.
fn inside_bodies(text: &str) -> Vec<usize> {
    parse(text)
        .syntax()
        .descendants()
        .filter(|n| n.kind() == SyntaxKind::BODY)
        .flat_map(|b| {
            let r = b.text_range();
            (usize::from(r.start()) + 1..usize::from(r.end())).collect::<Vec<_>>()
        })
        .filter(|&i| text.is_char_boundary(i))
        .collect()
}

fn check(text: &str, at: usize, len: usize, insert: &str) -> bool {
    let mut end = (at + len).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let edit = TextEdit {
        delete: TextRange::new(TextSize::from(at as u32), TextSize::from(end as u32)),
        insert: insert.to_string(),
    };
    let new_text = edit.apply(text).expect("the edit fits");
    let full = parse(&new_text);
    match parse(text).reparse(&edit) {
        Some(incremental) => {
            assert_eq!(
                incremental.debug_dump(),
                full.debug_dump(),
                "edit {edit:?} of:\n{text}"
            );
            assert_eq!(incremental.green(), full.green());
            assert_eq!(incremental.errors(), full.errors());
            true
        }
        None => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    #[test]
    fn reparsing_equals_parsing_in_full(
        text in files(),
        pick in any::<prop::sample::Index>(),
        len in 0usize..6,
        insert in insertion(),
    ) {
        let offsets = inside_bodies(&text);
        prop_assume!(!offsets.is_empty());
        check(&text, *pick.get(&offsets), len, &insert);
    }
}

/// The property above is only worth something if reparsing answers often:
/// typing inside a body must take the fast path.
#[test]
fn typing_inside_a_body_is_reparsed_incrementally() {
    let text = "A extends VMAppliance {\n  var d;\n  d = \"x\";\n}\nB extends A {\n  d = { k => \"v\" };\n}\n";
    let mut answered = 0;
    let offsets = inside_bodies(text);
    for &at in &offsets {
        for insert in ["x", " ", "\"", "/*"] {
            answered += usize::from(check(text, at, 0, insert));
        }
        answered += usize::from(check(text, at, 1, ""));
    }
    let tries = offsets.len() * 5;
    assert!(
        answered * 10 >= tries * 7,
        "only {answered} of {tries} edits were reparsed incrementally"
    );
    // An edit that leaves the body, or breaks its braces, is declined.
    let open = text.find('{').unwrap();
    assert!(!check(text, open, 1, ""));
    assert!(!check(text, open + 3, 0, "}"));
}

/// An edit meant for another text (past its end, inside a character) is
/// refused, not a panic.
#[test]
fn an_edit_that_does_not_fit_the_text_is_refused() {
    let text = "A extends VMAppliance {\n  d = \"é\";\n}\n";
    let inside_e = text.find('é').unwrap() + 1;
    for (start, end) in [(inside_e, inside_e), (10, 200)] {
        let edit = TextEdit {
            delete: TextRange::new(TextSize::from(start as u32), TextSize::from(end as u32)),
            insert: "x".into(),
        };
        assert_eq!(edit.apply(text), None);
        assert!(parse(text).reparse(&edit).is_none());
    }
}
