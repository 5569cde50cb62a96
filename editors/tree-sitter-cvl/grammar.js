/**
 * Tree-sitter grammar for CVL 0.8, the Collective Virtual appliance Language
 * (docs/cvl-language.md §1-2). It is for editors' highlighting, folding and
 * navigation; the language's own parser (cvl-syntax, lossless, with its error
 * recovery) stays the reference, and every .cvl file of the repository must
 * parse the same way here (see README.md).
 */

/// One or more `rule`s separated by commas.
function commaSep1(rule) {
  return seq(rule, repeat(seq(',', rule)));
}

module.exports = grammar({
  name: 'cvl',

  extras: $ => [/\s/, $.comment],

  word: $ => $.identifier,

  rules: {
    source_file: $ => repeat(choice($.import, $.assignment, $.object)),

    // import { url => "...", cvl => "DNS.cvl", version => "3" } DNS;
    import: $ => seq(
      'import',
      field('source', $.map),
      field('name', $.identifier),
      ';',
    ),

    // Groupware extends VANAppliance { ... }
    object: $ => seq(
      field('name', $.identifier),
      'extends',
      field('parent', $.identifier),
      field('body', $.body),
    ),

    body: $ => seq(
      '{',
      repeat(choice($.var_declaration, $.component_declaration, $.assignment)),
      '}',
    ),

    // var "required" "sensitive" rootpw, proxypw;
    var_declaration: $ => seq(
      'var',
      repeat(field('attribute', $.string)),
      commaSep1(field('name', $.identifier)),
      ';',
    ),

    // DNS d; Interface ethernet1;
    component_declaration: $ => seq(
      field('type', $.identifier),
      commaSep1(field('name', $.identifier)),
      ';',
    ),

    // d.domain = domain; f.services = { port => l.port, ip => l.ethernet0.ip }, ...;
    assignment: $ => seq(
      field('target', $.path),
      '=',
      commaSep1(field('value', $._value)),
      ';',
    ),

    path: $ => seq($.identifier, repeat(seq('.', $.identifier))),

    _value: $ => choice($.string, $.path, $.map),

    map: $ => seq('{', commaSep1($.pair), optional(','), '}'),

    pair: $ => seq(
      field('key', choice($.identifier, $.string)),
      '=>',
      field('value', $._value),
    ),

    string: $ => seq(
      '"',
      repeat(choice($.string_content, $.escape_sequence)),
      token.immediate('"'),
    ),

    string_content: _ => token.immediate(prec(1, /[^"\\\n]+/)),

    escape_sequence: _ => token.immediate(seq('\\', /["\\ntr]/)),

    identifier: _ => /[A-Za-z][A-Za-z0-9_]*/,

    comment: _ => token(choice(
      seq('//', /[^\n]*/),
      seq('/*', /[^*]*\*+([^/*][^*]*\*+)*/, '/'),
    )),
  },
});
