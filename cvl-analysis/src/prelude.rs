//! The predefined objects (paper Figure 1, plus `name`), as CVL. `Interface`
//! and `Appliance` extend the marker `Root`, which ends every inheritance
//! chain; user files cannot name it.

pub const NAME: &str = "<predefined>";

pub const ROOT_MARKER: &str = "Root";

pub const TEXT: &str = r#"/* The predefined objects of CVL 0.8 (paper, Figure 1). */
Interface extends Root {
  /* Assigned by the utility at deploy time. */
  var "required" mac, ip, subnet, netmask;
  var defaultroute;
}
Appliance extends Root {
  /* Services this appliance provides and requires: they order start and stop. */
  var requires, provides;
  /* The interface that connects this appliance to its VAN. */
  var "required" vanIF;
  /* The component's name (`l` for `OpenLDAP l;`). */
  var name;
}
VMAppliance extends Appliance {
  /* The VM description. */
  var "required" vm;
  /* Disks that hold user data: never published, kept across updates. */
  var datadisks;
  Interface ethernet0;
  vanIF = "ethernet0";
}
VANAppliance extends Appliance {
  var defaultroute;
}
"#;

/// Parameters the utility allocates at deploy time: never missing at check time.
pub const UTILITY_ALLOCATED: [&str; 4] = ["mac", "ip", "subnet", "netmask"];
