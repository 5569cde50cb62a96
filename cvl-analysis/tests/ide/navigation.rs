//! Go to definition and find references, across the files of a fixture.

use crate::fixture::fixture;

fn definition(text: &str) -> String {
    let f = fixture(text);
    match f.analysis.goto_definition(f.file, f.offset).unwrap() {
        Some(target) => f.target(&target),
        None => "no definition".into(),
    }
}

fn references(text: &str) -> String {
    let f = fixture(text);
    let found = f.analysis.references(f.file, f.offset, &f.files).unwrap();
    found
        .iter()
        .map(|t| f.target(t))
        .collect::<Vec<_>>()
        .join("\n")
}

const NET: &str = r#"
//- net.cvl
import { url => "file://./lib", cvl => "Dns.cvl" } Dns;
Net extends VANAppliance {
  var "required" domain;
  Dns d;
  d.domain = domain;
  vanIF = "d.ethernet0";
}
//- lib/Dns.cvl
Dns extends VMAppliance {
  var "required" domain;
  vm = "dns.vm";
}
"#;

#[test]
fn a_component_parameter_leads_to_the_imported_declaration() {
    insta::assert_snapshot!(definition(&NET.replace("d.domain =", "d.dom$0ain =")), @r#"lib/Dns.cvl 2:18 "domain""#);
}

#[test]
fn a_name_in_a_value_leads_to_the_object_own_parameter() {
    insta::assert_snapshot!(definition(&NET.replace("= domain;", "= dom$0ain;")), @r#"net.cvl 3:18 "domain""#);
}

#[test]
fn a_predefined_parameter_leads_to_the_prelude() {
    insta::assert_snapshot!(definition(&NET.replace("vanIF", "van$0IF")), @r#"<predefined> 11:18 "vanIF""#);
}

#[test]
fn references_of_an_imported_object_span_the_files() {
    insta::assert_snapshot!(references(&NET.replace("Dns d;", "Dns$0 d;")), @r#"
    lib/Dns.cvl 1:1 "Dns"
    net.cvl 1:52 "Dns"
    net.cvl 4:3 "Dns"
    "#);
}

#[test]
fn references_of_a_parameter_include_its_declaration() {
    insta::assert_snapshot!(references(&NET.replace("var \"required\" domain;\n  Dns", "var \"required\" dom$0ain;\n  Dns")), @r#"
    net.cvl 3:18 "domain"
    net.cvl 5:14 "domain"
    "#);
}
