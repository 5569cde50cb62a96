//! Completion: the labels offered at the cursor, with their kind.

use crate::fixture::fixture;

fn complete(text: &str) -> String {
    let f = fixture(text);
    f.analysis
        .completions(f.file, f.offset)
        .unwrap()
        .iter()
        .map(|c| format!("{:?} {} ({})", c.kind, c.label, c.detail))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn after_extends_the_types() {
    insta::assert_snapshot!(complete(r#"
Dns extends VMAppliance {
  vm = "dns.vm";
}
Net extends $0
"#), @"
    Type Dns (object)
    Type Interface (object)
    Type VANAppliance (object)
    Type VMAppliance (object)
    ");
}

#[test]
fn after_a_component_its_parameters() {
    insta::assert_snapshot!(complete(r#"
Dns extends VMAppliance {
  var "required" domain;
  vm = "dns.vm";
}
Net extends VANAppliance {
  Dns d;
  d.$0
}
"#), @r#"
    Parameter requires (var requires (Appliance))
    Parameter provides (var provides (Appliance))
    Parameter vanIF (var "required" vanIF (Appliance))
    Parameter name (var name (Appliance))
    Parameter vm (var "required" vm (VMAppliance))
    Parameter datadisks (var datadisks (VMAppliance))
    Parameter domain (var "required" domain (Dns))
    Component ethernet0 (Interface ethernet0)
    "#);
}

#[test]
fn in_a_var_the_attributes() {
    insta::assert_snapshot!(complete(r#"
Dns extends VMAppliance {
  var "$0
}
"#), @r#"
    Attribute "required" (attribute)
    Attribute "sensitive" (attribute)
    "#);
}

#[test]
fn in_an_import_its_keys() {
    insta::assert_snapshot!(complete(r#"
import { url => "file://./lib", $0
"#), @"
    ImportKey url (import key)
    ImportKey cvl (import key)
    ImportKey version (import key)
    ");
}
