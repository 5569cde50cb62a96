//! The productions of the CVL grammar (language reference §2), one function
//! each, with error recovery: a missing `;`, `}`, `=>` or `,` is reported and
//! parsing goes on so that the rest of the file still gets its right nodes.
//!
//! Recursion happens only through nested maps, and `MAX_MAP_DEPTH` bounds it.

use crate::parser::Parser;
use crate::SyntaxKind::*;

/// Deeper maps are reported and skipped without recursion.
pub(crate) const MAX_MAP_DEPTH: u32 = 64;

pub(crate) fn source_file(p: &mut Parser) {
    p.start_root();
    while !p.at(EOF) {
        top_level_statement(p);
    }
    p.eat_trivia();
    p.finish_node();
}

/// Can the tokens ahead start an object declaration (`Name extends`)?
fn at_object_start(p: &Parser) -> bool {
    p.at(IDENT) && p.nth(1) == EXTENDS_KW
}

fn top_level_statement(p: &mut Parser) {
    match p.current() {
        IMPORT_KW => import(p),
        IDENT if matches!(p.nth(1), EXTENDS_KW | L_CURLY) => object(p),
        IDENT if matches!(p.nth(1), EQ | DOT) => assignment(p),
        VAR_KW | R_CURLY | IDENT => {
            let message = match p.current() {
                VAR_KW => "`var` declarations belong inside an object's body".to_string(),
                R_CURLY => "unmatched `}`".to_string(),
                _ => format!(
                    "expected `extends` or `=` after `{}`: a file holds imports, objects \
                     (`Name extends Parent {{ ... }}`) and `CVL = \"0.8\";`",
                    p.current_text()
                ),
            };
            p.error_here(message);
            recover_top_level(p);
        }
        _ => {
            let found = p.found();
            p.error_here(format!(
                "expected `import`, an object or an assignment, found {found}"
            ));
            recover_top_level(p);
        }
    }
}

/// Skips tokens into an ERROR node up to the end of the broken statement: past
/// a `;` or `}`, or before something that starts a statement.
fn recover_top_level(p: &mut Parser) {
    p.start_node(ERROR);
    loop {
        match p.current() {
            EOF => break,
            SEMICOLON | R_CURLY => {
                p.bump();
                break;
            }
            _ => p.bump(),
        }
        if p.at(IMPORT_KW) || at_object_start(p) {
            break;
        }
    }
    p.finish_node();
}

/// `import { url => "...", cvl => "..." } Name;`
fn import(p: &mut Parser) {
    p.start_node(IMPORT);
    p.bump(); // import
    if p.at(L_CURLY) {
        map(p);
    } else {
        p.error_expected("a map `{ url => \"...\", cvl => \"...\" }` after `import`");
    }
    if p.at(IDENT) {
        name(p);
    } else {
        p.error_expected("the name to import the object as");
    }
    p.expect(SEMICOLON, "after an import");
    p.finish_node();
}

/// `Name extends Parent { ... }`
fn object(p: &mut Parser) {
    p.start_node(OBJECT);
    name(p);
    if p.at(EXTENDS_KW) {
        p.start_node(EXTENDS_CLAUSE);
        p.bump();
        if p.at(IDENT) {
            name(p);
        } else {
            p.error_expected("the name of the parent object after `extends`");
        }
        p.finish_node();
    } else {
        p.error_expected(
            "`extends` and a parent object (every object extends exactly one, \
             e.g. `extends VMAppliance`)",
        );
    }
    if p.at(L_CURLY) {
        body(p);
    } else {
        p.error_expected("`{` to open the object's body");
    }
    p.finish_node();
}

pub(crate) fn body(p: &mut Parser) {
    p.start_node(BODY);
    p.bump(); // {
    loop {
        match p.current() {
            R_CURLY => {
                p.bump();
                break;
            }
            EOF | IMPORT_KW => {
                p.error_expected("`}` to close the object's body");
                break;
            }
            IDENT if p.nth(1) == EXTENDS_KW => {
                p.error_expected("`}` to close the object's body");
                break;
            }
            VAR_KW => var_decl(p),
            IDENT if p.nth(1) == IDENT => component_decl(p),
            IDENT if matches!(p.nth(1), EQ | DOT) => assignment(p),
            IDENT if p.nth(1) == ERROR_TOKEN => {
                // `OpenLDAP 1;`: a component named with something not a name.
                p.start_node(ERROR);
                p.bump();
                let found = p.found();
                p.error_here(format!("expected a component name, found {found}"));
                p.finish_node();
                recover_statement(p);
            }
            _ => {
                let found = p.found();
                p.error_here(format!(
                    "expected `var`, a component (`Type name;`) or an assignment, found {found}"
                ));
                recover_statement(p);
            }
        }
    }
    p.finish_node();
}

/// Skips a broken statement inside a body: past its `;`, or up to a `}` or a
/// `var` that can be parsed again.
fn recover_statement(p: &mut Parser) {
    p.start_node(ERROR);
    loop {
        match p.current() {
            EOF | R_CURLY | IMPORT_KW => break,
            SEMICOLON => {
                p.bump();
                break;
            }
            _ => p.bump(),
        }
        if p.at(VAR_KW) || at_object_start(p) {
            break;
        }
    }
    p.finish_node();
}

/// `var "required" a, b;`
fn var_decl(p: &mut Parser) {
    p.start_node(VAR_DECL);
    p.bump(); // var
    p.start_node(ATTR_LIST);
    while p.at(STRING) {
        p.bump();
    }
    p.finish_node();
    name_list(p);
    p.expect(SEMICOLON, "after a `var` declaration");
    p.finish_node();
}

/// `Type a, b;`
fn component_decl(p: &mut Parser) {
    p.start_node(COMPONENT_DECL);
    name(p);
    name_list(p);
    p.expect(SEMICOLON, "after a component declaration");
    p.finish_node();
}

fn name_list(p: &mut Parser) {
    p.start_node(NAME_LIST);
    loop {
        if p.at(IDENT) {
            name(p);
        } else {
            p.error_expected("a name");
            break;
        }
        if !p.eat(COMMA) {
            break;
        }
    }
    p.finish_node();
}

/// A name being declared, or naming an object (a parent, a component's
/// type): a bare `IDENT` token. Its place in its parent says which it is; a
/// node around every single token would double the nodes of a file.
fn name(p: &mut Parser) {
    p.bump();
}

/// `a.b.c = value, value;`
fn assignment(p: &mut Parser) {
    p.start_node(ASSIGN);
    path(p);
    if p.eat(EQ) {
        value_list(p);
    } else {
        p.error_expected("`=` in an assignment");
        if at_value_start(p) {
            value_list(p);
        }
    }
    p.expect(SEMICOLON, "after an assignment");
    p.finish_node();
}

/// `a.b.c` as a PATH node; a single name is a bare `IDENT` token.
fn path(p: &mut Parser) {
    if p.nth(1) != DOT {
        p.bump();
        return;
    }
    p.start_node(PATH);
    p.bump(); // the first name
    while p.at(DOT) {
        p.bump();
        if p.at(IDENT) {
            p.bump();
        } else {
            p.error_expected("a name after `.`");
            break;
        }
    }
    p.finish_node();
}

fn at_value_start(p: &Parser) -> bool {
    matches!(p.current(), STRING | IDENT | L_CURLY)
}

fn value_list(p: &mut Parser) {
    p.start_node(VALUE_LIST);
    loop {
        value(p);
        if !p.eat(COMMA) {
            break;
        }
    }
    p.finish_node();
}

/// A string, a reference or a map (a `STRING` token, an `IDENT` token or a
/// PATH node, a MAP node). Reports, without consuming, anything else.
fn value(p: &mut Parser) {
    match p.current() {
        STRING => p.bump(),
        IDENT => path(p),
        L_CURLY => map(p),
        _ => p.error_expected("a value (a string, a name or a map)"),
    }
}

/// `{ key => value, ... }`
fn map(p: &mut Parser) {
    if p.map_depth >= MAX_MAP_DEPTH {
        p.error_here(format!(
            "maps nested more than {MAX_MAP_DEPTH} deep: flatten the value"
        ));
        skip_balanced(p);
        return;
    }
    p.map_depth += 1;
    p.start_node(MAP);
    p.bump(); // {
    if p.at(R_CURLY) {
        p.error_here("a map needs at least one `key => value` pair".to_string());
        p.bump();
    } else {
        loop {
            pair(p);
            if p.eat(COMMA) {
                if p.eat(R_CURLY) {
                    break; // a trailing comma
                }
                continue;
            }
            if p.eat(R_CURLY) {
                break;
            }
            p.error_expected("`,` or `}` in a map");
            // A missing comma between pairs: go on with the next pair.
            if matches!(p.current(), IDENT | STRING) && p.nth(1) == FAT_ARROW {
                continue;
            }
            break;
        }
    }
    p.finish_node();
    p.map_depth -= 1;
}

/// `key => value`, the key a bare `IDENT` or `STRING` token.
fn pair(p: &mut Parser) {
    p.start_node(PAIR);
    if matches!(p.current(), IDENT | STRING) {
        p.bump();
    } else {
        p.error_expected("a map key (a name or a string)");
    }
    if p.eat(FAT_ARROW) {
        value(p);
    } else {
        p.error_expected("`=>` after the map key");
        if at_value_start(p) && p.nth(1) != FAT_ARROW {
            value(p);
        }
    }
    p.finish_node();
}

/// Puts a too-deep map, braces balanced, into one flat ERROR node.
fn skip_balanced(p: &mut Parser) {
    p.start_node(ERROR);
    let mut depth: u64 = 0;
    loop {
        match p.current() {
            EOF => break,
            L_CURLY => depth += 1,
            R_CURLY => depth -= 1,
            _ => {}
        }
        p.bump();
        if depth == 0 {
            break;
        }
    }
    p.finish_node();
}
