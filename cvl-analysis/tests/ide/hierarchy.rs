//! Type hierarchy: what an object extends and what extends it, across the
//! files of a fixture (imports included); and where an appliance is used
//! as a component's type.

use cvl_analysis::ide::TypeItem;

use crate::fixture::{fixture, Fixture};

const FILES: &str = r#"
//- suite.cvl
import { url => "file://./lib", cvl => "Dns.cvl" } Dns;
Suite extends VANAppliance {
  Dns d, e;
  vanIF = "d.ethernet0";
}
//- lib/Dns.cvl
Dns extends VMAppliance {
  var domain;
  vm = "dns.vm";
}
//- acme.cvl
import { url => "file://./lib", cvl => "Dns.cvl" } Dns;
AcmeDns extends Dns {
  domain = "acme.org";
}
SecondaryDns extends Dns {}
Tuned extends AcmeDns {}
"#;

fn item(f: &Fixture, item: &TypeItem) -> String {
    format!(
        "{} ({}) at {}",
        item.def.name,
        item.kind,
        f.target(&cvl_analysis::ide::NavTarget {
            file: item.def.file,
            range: item.name_range
        })
    )
}

fn hierarchy(text: &str) -> String {
    let f = fixture(text);
    let Some(at) = f.analysis.type_at(f.file, f.offset).unwrap() else {
        return "no type here".into();
    };
    let mut out = vec![format!("this: {}", item(&f, &at))];
    for s in f.analysis.supertypes(&at.def).unwrap() {
        out.push(format!("supertype: {}", item(&f, &s)));
    }
    for s in f.analysis.subtypes(&at.def, &f.files).unwrap() {
        out.push(format!("subtype: {}", item(&f, &s)));
    }
    for c in f.analysis.components_of_type(&at.def, &f.files).unwrap() {
        out.push(format!("component: {}", f.target(&c)));
    }
    out.join("\n")
}

#[test]
fn an_imported_appliance_has_its_subtypes_and_components_across_files() {
    insta::assert_snapshot!(hierarchy(&FILES.replace("Dns extends VMAppliance", "D$0ns extends VMAppliance")), @r#"
    this: Dns (VM appliance) at lib/Dns.cvl 1:1 "Dns"
    supertype: VMAppliance (VM appliance) at <predefined> 15:1 "VMAppliance"
    subtype: AcmeDns (VM appliance) at acme.cvl 2:1 "AcmeDns"
    subtype: SecondaryDns (VM appliance) at acme.cvl 5:1 "SecondaryDns"
    component: suite.cvl 3:7 "d"
    component: suite.cvl 3:10 "e"
    "#);
}

#[test]
fn from_an_extends_the_parent_and_its_own_parent() {
    insta::assert_snapshot!(hierarchy(&FILES.replace("Tuned extends AcmeDns", "Tuned extends Acme$0Dns")), @r#"
    this: AcmeDns (VM appliance) at acme.cvl 2:1 "AcmeDns"
    supertype: Dns (VM appliance) at lib/Dns.cvl 1:1 "Dns"
    subtype: Tuned (VM appliance) at acme.cvl 6:1 "Tuned"
    "#);
}

#[test]
fn a_parameter_is_no_type() {
    insta::assert_snapshot!(hierarchy(&FILES.replace("var domain;", "var dom$0ain;")), @"no type here");
}
