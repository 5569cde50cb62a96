//! No input the syntax fuzzer's generator makes can panic the analysis:
//! checking every object as a library and as deployed, and evaluating it.

use cvl_analysis::{file_diagnostics, CheckOptions, Def, RootDatabase};
use cvl_syntax::soup::token_soup;
use proptest::prelude::*;

fn analyse(text: &str) {
    let db = RootDatabase::default();
    let file = db.add_file("soup.cvl".into(), text.into());
    let diagnostics = file_diagnostics(&db, file, &CheckOptions::default());
    let tree = cvl_analysis::resolve::item_tree(&db, file);
    // A batch database lowers item by item as it parses, keeping no tree:
    // the same summary, the same diagnostics.
    let batch = RootDatabase::batch();
    let batch_file = batch.add_file("soup.cvl".into(), text.into());
    assert_eq!(
        **cvl_analysis::resolve::item_tree(&batch, batch_file),
        **tree,
        "{text}"
    );
    assert_eq!(
        file_diagnostics(&batch, batch_file, &CheckOptions::default()),
        diagnostics,
        "{text}"
    );
    let names: Vec<String> = tree
        .objects
        .iter()
        .map(|o| o.data.name.text.to_string())
        .collect();
    file_diagnostics(
        &db,
        file,
        &CheckOptions {
            deploy: names.clone(),
        },
    );
    for name in names {
        let def = Def {
            file,
            name: name.into(),
        };
        cvl_analysis::evaluated_params(&db, &def);
        cvl_analysis::deploy::start_order(&db, &def);
    }
}

/// Soups seeded with a valid prefix, so that they reach evaluation.
const PREFIX: &str = "A extends VMAppliance { var \"required\" d; var p; vm = \"a\"; }\n\
                      N extends VANAppliance { A a, b; a.d = d; vanIF = \"a.ethernet0\"; var d; }\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn token_soups_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        analyse(&token_soup(&bytes));
    }

    #[test]
    fn soups_after_valid_objects_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        analyse(&format!("{PREFIX}{}", token_soup(&bytes)));
    }
}

#[test]
fn pathological_but_valid_inputs() {
    // A long reference chain, a self-containing VAN, an inheritance cycle.
    let mut text = String::from("A extends VMAppliance { vm = \"a\"; var p0;\n");
    for i in 1..5000 {
        text.push_str(&format!("var p{i}; p{i} = p{};\n", i - 1));
    }
    text.push_str("}\nS extends VANAppliance { S s; }\nX extends Y {}\nY extends X {}\n");
    analyse(&text);
}
