" Syntax highlighting for CVL, the Collective Virtual appliance Language.
if exists("b:current_syntax")
  finish
endif

syntax keyword cvlKeyword import extends var
syntax keyword cvlPredefined Interface Appliance VMAppliance VANAppliance
syntax match cvlOperator "=>\|="
syntax region cvlString start=+"+ skip=+\\\\\|\\"+ end=+"\|$+ contains=cvlEscape
syntax match cvlEscape +\\[\\"ntr]+ contained
syntax region cvlComment start="/\*" end="\*/"
syntax match cvlComment "//.*$"
syntax match cvlType "\<[A-Z][A-Za-z0-9_]*\>\ze\s\+\(extends\|[a-z]\)"
syntax match cvlType "\(extends\s\+\)\@<=[A-Za-z][A-Za-z0-9_]*"

highlight default link cvlKeyword Keyword
highlight default link cvlPredefined Type
highlight default link cvlType Type
highlight default link cvlOperator Operator
highlight default link cvlString String
highlight default link cvlEscape SpecialChar
highlight default link cvlComment Comment

let b:current_syntax = "cvl"
