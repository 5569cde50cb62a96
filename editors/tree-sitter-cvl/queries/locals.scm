; Scopes and definitions, for editors' local navigation.
(body) @local.scope
(var_declaration name: (identifier) @local.definition)
(component_declaration name: (identifier) @local.definition)
(path . (identifier) @local.reference)
