//! Code actions: the quick fixes offered where the cursor is.

use cvl_syntax::TextRange;

use crate::fixture::fixture;

fn fixes(text: &str) -> String {
    let f = fixture(text);
    let fixes = f
        .analysis
        .code_actions(f.file, TextRange::empty(f.offset))
        .unwrap();
    if fixes.is_empty() {
        return "no fixes".into();
    }
    let source = f.analysis.file_text(f.file);
    fixes
        .iter()
        .map(|fix| {
            let edits: Vec<String> = fix
                .edits
                .iter()
                .map(|(span, new)| {
                    let (line, column) = cvl_syntax::line_col(source, span.range.start());
                    format!("  {line}:{column} {:?} -> {new:?}", &source[span.range])
                })
                .collect();
            format!("{}\n{}", fix.title, edits.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_misspelt_name_is_corrected() {
    insta::assert_snapshot!(fixes(r#"
Dns extends VMAppliance {
  var "required" domain;
  var motd;
  motd = dom$0ian;
  vm = "dns.vm";
}
"#), @r#"
    Change to `domain`
      5:10 "domian" -> "domain"
    "#);
}

#[test]
fn nothing_where_there_is_no_problem() {
    insta::assert_snapshot!(fixes(r#"
Dns extends VMAppliance {
  v$0m = "dns.vm";
}
"#), @"no fixes");
}
