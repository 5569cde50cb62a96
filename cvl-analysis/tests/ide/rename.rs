//! Rename: every place that changes, or why the rename is refused.

use crate::fixture::fixture;

fn rename(text: &str, new_name: &str) -> String {
    let f = fixture(text);
    // The predefined file is never the user's: only the fixture's files.
    match f
        .analysis
        .rename(f.file, f.offset, new_name, &f.files)
        .unwrap()
    {
        Ok(rename) => rename
            .targets
            .iter()
            .map(|t| format!("{} -> {}", f.target(t), rename.new_name))
            .collect::<Vec<_>>()
            .join("\n"),
        Err(reason) => format!("refused: {reason}"),
    }
}

const TWO_FILES: &str = r#"
//- acme.cvl
import { url => "file://./lib", cvl => "Dns.cvl" } Dns;
Acme extends Dns {
  domain = "acme.org";
}
//- lib/Dns.cvl
Dns extends VMAppliance {
  var "required" do$0main;
  var motd;
  motd = domain;
  vm = "dns.vm";
}
"#;

#[test]
fn a_parameter_is_renamed_in_every_file() {
    insta::assert_snapshot!(rename(TWO_FILES, "zone"), @r#"
    lib/Dns.cvl 2:18 "domain" -> zone
    acme.cvl 3:3 "domain" -> zone
    lib/Dns.cvl 4:10 "domain" -> zone
    "#);
}

#[test]
fn a_name_that_is_not_cvl_is_refused() {
    insta::assert_snapshot!(rename(TWO_FILES, "9zone"), @"refused: `9zone` is not a CVL name (a letter, then letters, digits, _)");
}

#[test]
fn a_predefined_parameter_is_refused() {
    insta::assert_snapshot!(rename(&TWO_FILES.replace("vm = ", "v$0m = ").replace("do$0main", "domain"), "image"), @"refused: it is declared in `<predefined>`, which is not part of this workspace (a published or predefined file) and cannot be renamed");
}
