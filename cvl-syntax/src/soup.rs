//! Turns arbitrary bytes into CVL-like text: a "token soup" of keywords,
//! names, strings, maps, comments and garbage. Property tests, the fuzz
//! target and the analysis crate's no-panic tests all draw inputs from here,
//! so that random input reaches deep into the grammar instead of stopping at
//! the first byte.

const PIECES: &[&str] = &[
    "import",
    "extends",
    "var",
    "CVL",
    "VMAppliance",
    "VANAppliance",
    "Appliance",
    "Interface",
    "a",
    "b",
    "d",
    "domain",
    "vm",
    "vanIF",
    "ethernet0",
    "ip",
    "name",
    "requires",
    "provides",
    "datadisks",
    "\"required\"",
    "\"sensitive\"",
    "\"0.8\"",
    "\"x y\"",
    "\"f.ethernet1\"",
    "\"file://./lib\"",
    "\"unterminated",
    "\"bad \\q escape\"",
    "{",
    "}",
    "{",
    "}",
    ";",
    ";",
    ",",
    "=",
    "=>",
    ".",
    " ",
    " ",
    "\n",
    "\r\n",
    "\t",
    "/* c */",
    "// line\n",
    "/* open",
    "1",
    "@",
    "é",
    "€",
    "\u{0}",
    "url",
    "cvl",
    "version",
];

/// A token soup built from `bytes`: each byte picks a piece; a byte's high
/// bit also puts whitespace after it.
pub fn token_soup(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4);
    for &b in bytes {
        out.push_str(PIECES[usize::from(b) % PIECES.len()]);
        if b & 0x80 != 0 {
            out.push(' ');
        }
    }
    out
}
