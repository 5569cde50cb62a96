; CVL highlighting (tree-sitter). Captures follow the names Neovim, Helix
; and Zed share.

(comment) @comment

["import" "extends" "var"] @keyword

(string) @string
(escape_sequence) @string.escape

; The language version: CVL = "0.8";
((assignment
  target: (path (identifier) @constant.builtin))
  (#eq? @constant.builtin "CVL"))

; var "required" "sensitive" ...: the attributes.
(var_declaration attribute: (string) @attribute)
(var_declaration name: (identifier) @variable.parameter)

; Declared names and the types they extend or instantiate.
(object name: (identifier) @type.definition)
(object parent: (identifier) @type)
(import name: (identifier) @type.definition)
(component_declaration type: (identifier) @type)
(component_declaration name: (identifier) @variable)

; The predefined objects.
((identifier) @type.builtin
  (#match? @type.builtin "^(VMAppliance|VANAppliance|Appliance|Interface)$"))

(assignment target: (path (identifier) @property))
(pair key: (identifier) @property)
(pair key: (string) @property)
(path (identifier) @variable)

["=" "=>"] @operator
["{" "}"] @punctuation.bracket
[";" "," "."] @punctuation.delimiter
