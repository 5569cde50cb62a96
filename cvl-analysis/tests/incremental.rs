//! Incrementality, proved over salsa's log of query executions: editing the
//! body of one object re-runs only the queries that object's text reaches.

use std::sync::Arc;

use cvl_analysis::{file_diagnostics, CheckOptions, RootDatabase, SourceFile};

const LIB: &str = r#"CVL = "0.8";
A extends VMAppliance {
  var port;
  port = "53";
  vm = "a.vmx";
}
B extends VMAppliance {
  var "required" domain;
  vm = "b.vmx";
}
N extends VANAppliance {
  A a;
  B b;
  b.domain = "example.org";
  vanIF = "a.ethernet0";
}
"#;

const OTHER: &str = r#"C extends VMAppliance {
  var x;
  x = "1";
  vm = "c.vmx";
}
"#;

fn check_all(db: &RootDatabase, files: &[SourceFile]) -> usize {
    files
        .iter()
        .map(|&f| file_diagnostics(db, f, &CheckOptions::default()).len())
        .sum()
}

fn count(log: &[String], query: &str) -> usize {
    log.iter()
        .filter(|l| l.starts_with(&format!("{query}(")))
        .count()
}

#[test]
fn editing_one_body_reruns_only_what_it_reaches() {
    let mut db = RootDatabase::new(true);
    let lib = db.add_file("lib.cvl".into(), LIB.into());
    let other = db.add_file("other.cvl".into(), OTHER.into());
    let files = [lib, other];
    let before = check_all(&db, &files);
    let cold = db.take_log();
    assert!(count(&cold, "object_checks_query") >= 4, "{cold:#?}");

    // The first edit of a file read from disk makes the edited object's
    // input volatile (low durability): what reads it runs once more, since
    // a durable result cannot stand for a volatile one.
    db.set_text(lib, LIB.replace("\"53\"", "\"535\""));
    assert_eq!(check_all(&db, &files), before);
    let first = db.take_log();
    assert_eq!(count(&first, "object_checks_query"), 2, "{first:#?}");
    assert_eq!(count(&first, "evaluation_facts_query"), 2, "{first:#?}");

    // A longer literal in A's body: every later byte of lib.cvl moves.
    db.set_text(lib, LIB.replace("\"53\"", "\"5353\""));
    assert_eq!(check_all(&db, &files), before);
    let warm = db.take_log();
    // The edited file is parsed and summarized again...
    assert_eq!(count(&warm, "parse"), 1, "{warm:#?}");
    assert_eq!(count(&warm, "item_tree"), 1, "{warm:#?}");
    // ...the writer compares its objects' data with what they had and sets
    // A's alone, so only A's checks run again: B's and N's data did not change
    // (ranges are relative to each object), and other.cvl is untouched.
    assert_eq!(count(&warm, "object_checks_query"), 1, "{warm:#?}");
    // A's model changed; N contains A, so N's evaluation re-runs (checks
    // keep its facts, not the evaluation); B's, C's do not.
    assert_eq!(count(&warm, "object_model_query"), 1, "{warm:#?}");
    assert_eq!(count(&warm, "evaluation_facts_query"), 2, "{warm:#?}");
    // The file's list is assembled from per-object diagnostics: only A's are
    // computed again (N's evaluation facts came out equal: a new value of
    // A's parameter changes none of N's diagnostics).
    assert_eq!(count(&warm, "object_diagnostics"), 1, "{warm:#?}");
    // The file's scope is recomputed from the new summary, found equal, and
    // so nothing that resolves names runs again.
    assert!(count(&warm, "file_scope") <= 1, "{warm:#?}");
    assert_eq!(count(&warm, "ancestry_query"), 0, "{warm:#?}");

    // Nothing changes: nothing runs.
    assert_eq!(check_all(&db, &files), before);
    assert!(db.take_log().is_empty());

    // An edit in other.cvl touches nothing of lib.cvl.
    db.set_text(other, OTHER.replace("\"1\"", "\"2\""));
    check_all(&db, &files);
    let log = db.take_log();
    assert_eq!(count(&log, "parse"), 1, "{log:#?}");
    assert_eq!(count(&log, "object_checks_query"), 1, "{log:#?}");
    assert_eq!(count(&log, "evaluation_facts_query"), 1, "{log:#?}");
}

#[test]
fn an_edit_inside_one_body_reparses_and_lowers_only_that_object() {
    use cvl_analysis::resolve::item_tree;
    use cvl_syntax::{TextEdit, TextRange, TextSize};

    let mut db = RootDatabase::default();
    let file = db.add_file("lib.cvl".into(), LIB.into());
    let before = item_tree(&db, file).clone();
    let at = LIB.find("\"53\"").unwrap() + 1;
    let edit = TextEdit {
        delete: TextRange::empty(TextSize::from(at as u32)),
        insert: "5".into(),
    };
    db.apply_edit(file, &edit);
    assert!(file.parsed(&db).is_some(), "reparsed incrementally");
    let after = item_tree(&db, file).clone();
    let data = |tree: &cvl_analysis::item_tree::ItemTree, name: &str| {
        tree.object(name).expect("object").data.clone()
    };
    assert!(!Arc::ptr_eq(&data(&before, "A"), &data(&after, "A")));
    assert!(Arc::ptr_eq(&data(&before, "B"), &data(&after, "B")));
    assert!(Arc::ptr_eq(&data(&before, "N"), &data(&after, "N")));

    // The same answers as a database that read the edited text afresh.
    let fresh = RootDatabase::default();
    let same = fresh.add_file("lib.cvl".into(), edit.apply(LIB).unwrap());
    assert_eq!(
        file_diagnostics(&db, file, &CheckOptions::default()),
        file_diagnostics(&fresh, same, &CheckOptions::default())
    );
    assert_eq!(*item_tree(&db, file), *item_tree(&fresh, same));
    // A whole new text goes back to parsing in full.
    db.set_text(file, LIB.into());
    assert!(file.parsed(&db).is_none());
    assert_eq!(item_tree(&db, file), &before);
}

mod edits {
    //! Keystrokes through `apply_edit` (incremental reparsing, lowering
    //! reused by green node) give the answers of a database that read the
    //! final text afresh: the same item tree, the same diagnostics.

    use cvl_analysis::resolve::item_tree;
    use cvl_analysis::{file_diagnostics, CheckOptions, RootDatabase};
    use cvl_syntax::{TextEdit, TextRange, TextSize};
    use proptest::prelude::*;

    const START: &str = "A extends VMAppliance {\n  var \"required\" d;\n  var p;\n  p = \"1\";\n  vm = \"a.vmx\";\n}\nB extends A {\n  d = { k => p };\n}\nN extends VANAppliance {\n  B b;\n  A a;\n  a.d = b.p;\n  vanIF = \"b.ethernet0\";\n}\n";

    fn typed() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "",
            "x",
            "1",
            "\"",
            "}",
            "{",
            ";",
            " ",
            "\n",
            "=",
            ".",
            "p",
            "d",
            "é",
            "/*",
            "*/",
            "var q;",
            "b.",
            " extends A {",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn keystrokes_answer_as_a_fresh_read(
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..3, typed()), 1..6)
        ) {
            let mut db = RootDatabase::default();
            let file = db.add_file("t.cvl".into(), START.into());
            let mut text = START.to_string();
            file_diagnostics(&db, file, &CheckOptions::default());
            for (at, len, insert) in edits {
                let mut start = at.index(text.len() + 1);
                while !text.is_char_boundary(start) {
                    start -= 1;
                }
                let mut end = (start + len).min(text.len());
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                let edit = TextEdit {
                    delete: TextRange::new(TextSize::from(start as u32), TextSize::from(end as u32)),
                    insert: insert.to_string(),
                };
                prop_assert!(db.apply_edit(file, &edit));
                text = edit.apply(&text).unwrap();
                let fresh = RootDatabase::default();
                let same = fresh.add_file("t.cvl".into(), text.clone());
                prop_assert_eq!(item_tree(&db, file), item_tree(&fresh, same), "{}", text);
                prop_assert_eq!(
                    file_diagnostics(&db, file, &CheckOptions::default()),
                    file_diagnostics(&fresh, same, &CheckOptions::default()),
                    "{}", text
                );
            }
        }
    }
}
