//! Hover: the markdown shown for the name under the cursor.

use crate::fixture::fixture;

fn check(text: &str) -> String {
    let f = fixture(text);
    match f.analysis.hover(f.file, f.offset).unwrap() {
        Some((range, markdown)) => format!("{}\n---\n{markdown}", f.place(f.file, range)),
        None => "no hover".into(),
    }
}

#[test]
fn a_parameter_shows_its_declaration_and_final_values() {
    insta::assert_snapshot!(check(r#"
Dns extends VMAppliance {
  var "required" domain;
  var port;
  port = "53";
  vm = "dns.vm";
}
Acme extends Dns {
  domain$0 = "acme.org";
}
"#), @r#"
    main.cvl 9:3 "domain"
    ---
    ```cvl
    var "required" domain;
    ```
    parameter of `Dns`

    ---
    final values:
    - in `Dns`: `domain` = (unset)
    - in `Acme`: `domain` = "acme.org" (assigned in `main.cvl`, line 9)
    "#);
}

#[test]
fn an_object_from_another_file_says_where_it_is_declared() {
    insta::assert_snapshot!(check(r#"
//- net.cvl
import { url => "file://./lib", cvl => "Dns.cvl" } Dns;
Net extends VANAppliance {
  Dns$0 d;
  vanIF = "d.ethernet0";
}
//- lib/Dns.cvl
Dns extends VMAppliance {
  var "required" domain;
  vm = "dns.vm";
}
"#), @r#"
    net.cvl 3:3 "Dns"
    ---
    ```cvl
    Dns extends VMAppliance extends Appliance
    ```
    a VM appliance, declared in `lib/Dns.cvl`
    "#);
}

#[test]
fn an_import_name_says_where_the_import_led() {
    insta::assert_snapshot!(check(r#"
//- net.cvl
import { url => "file://./lib", cvl => "Dns.cvl" } Dn$0s;
//- lib/Dns.cvl
Dns extends VMAppliance {
  vm = "dns.vm";
}
"#), @r#"
    net.cvl 1:52 "Dns"
    ---
    ```cvl
    Dns extends VMAppliance extends Appliance
    ```
    a VM appliance, declared in `lib/Dns.cvl`

    imported: the fixture's Dns.cvl
    "#);
}

#[test]
fn a_component_shows_its_kind() {
    insta::assert_snapshot!(check(r#"
Dns extends VMAppliance {
  vm = "dns.vm";
}
Net extends VANAppliance {
  Dns d$0;
  vanIF = "d.ethernet0";
}
"#), @r#"
    main.cvl 6:7 "d"
    ---
    ```cvl
    Dns d;
    ```
    component of `Net`

    ---
    ```cvl
    Dns extends VMAppliance extends Appliance
    ```
    a VM appliance, declared in `main.cvl`
    "#);
}

#[test]
fn nothing_on_a_keyword() {
    insta::assert_snapshot!(check(r#"
Dns ext$0ends VMAppliance {
  vm = "dns.vm";
}
"#), @"no hover");
}
