//! Inlay hints: the final value after an assignment that does not show it.

use crate::fixture::fixture;

fn hints(text: &str) -> String {
    let f = fixture(text);
    let source = f.analysis.file_text(f.file);
    f.analysis
        .inlay_hints(f.file)
        .unwrap()
        .iter()
        .map(|(offset, label)| {
            let line = cvl_syntax::line_col(source, *offset).0;
            let line_text = source.lines().nth(line - 1).unwrap_or_default();
            format!("{line}: {}{label}", line_text.trim())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn references_and_maps_show_their_values() {
    insta::assert_snapshot!(hints(r#"
Dns extends VMAppliance {
  var "required" domain;
  var motd, zone;
  domain = "acme.org";
  zone = domain;
  motd = { dom => domain, port => "53" };
  vm = "dns.vm";
}
"#), @r#"
    6: zone = domain; ⇒ "acme.org"
    7: motd = { dom => domain, port => "53" }; ⇒ "dom=acme%2Eorg&port=53"
    "#);
}
