//! `include/gemma.h` is written by hand; these tests fail when it and
//! `src/capi.rs` drift apart: the functions (names, parameter and return
//! types), the callback type, the options struct and the error codes must
//! match, and the header must compile as C and as C++.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn platform_file(rel: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
    (path, text)
}

/// The header without comments, preprocessor lines or the C++ guard.
fn header_code() -> String {
    let (_, text) = platform_file("include/gemma.h");
    let mut code = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("/*") {
        code.push_str(&rest[..start]);
        let end = rest[start..].find("*/").expect("unterminated comment") + start + 2;
        rest = &rest[end..];
    }
    code.push_str(rest);
    code.lines()
        .map(|l| l.split("//").next().unwrap().trim())
        .filter(|l| !l.starts_with('#') && *l != "extern \"C\" {" && *l != "}")
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Rust source of the C API, test module left out.
fn rust_code() -> String {
    let (_, text) = platform_file("src/capi.rs");
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    text[..end].to_string()
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A C declaration `type name` or a lone type: the type, spaces normalized
/// (`const char *` and `const char*` alike).
fn c_type(decl: &str, has_name: bool) -> String {
    let decl = squash(&decl.replace('*', " * "));
    let ty = if has_name {
        let cut = decl
            .rfind(' ')
            .unwrap_or_else(|| panic!("no name in {decl:?}"));
        &decl[..cut]
    } else {
        &decl
    };
    ty.replace(" *", "*")
}

/// `(ret, [param types])` of a C parameter list and return type.
fn c_signature(ret: &str, params: &str) -> (String, Vec<String>) {
    let params = params.trim();
    let params = if params == "void" || params.is_empty() {
        vec![]
    } else {
        params.split(',').map(|p| c_type(p, true)).collect()
    };
    (c_type(ret, false), params)
}

/// The C spelling of a Rust FFI type used by the API.
fn rust_to_c(ty: &str) -> String {
    let ty = squash(ty);
    let c = match ty.as_str() {
        "()" => "void",
        "c_int" => "int",
        "f32" => "float",
        "u64" => "uint64_t",
        "*const c_char" => "const char*",
        "*mut c_void" => "void*",
        "*mut GemmaContext" => "GemmaContext*",
        "*const GemmaOptions" => "const GemmaOptions*",
        "Option<GemmaTokenCallback>" => "GemmaTokenCallback",
        other => panic!("no C spelling known for the Rust type {other:?}; add it here"),
    };
    c.to_string()
}

/// `(ret, [param types])` of a Rust parameter list (`name: Type, ...`).
fn rust_signature(ret: Option<&str>, params: &str) -> (String, Vec<String>) {
    let params = params
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| rust_to_c(p.split_once(':').expect("name: Type").1))
        .collect();
    (rust_to_c(ret.unwrap_or("()")), params)
}

type Signatures = BTreeMap<String, (String, Vec<String>)>;

fn header_functions() -> Signatures {
    let code = header_code();
    let mut out = Signatures::new();
    for decl in code.split(';').map(squash) {
        if decl.starts_with("typedef") || !decl.contains("gemma_") {
            continue;
        }
        let open = decl
            .find('(')
            .unwrap_or_else(|| panic!("not a function: {decl:?}"));
        let close = decl.rfind(')').unwrap();
        let head = &decl[..open];
        let name_at = head.rfind([' ', '*']).map_or(0, |i| i + 1);
        let name = head[name_at..].trim().to_string();
        let sig = c_signature(&head[..name_at], &decl[open + 1..close]);
        assert!(
            out.insert(name.clone(), sig).is_none(),
            "{name} declared twice"
        );
    }
    out
}

fn rust_functions() -> Signatures {
    let code = rust_code();
    let mut out = Signatures::new();
    for (i, _) in code.match_indices("extern \"C\" fn gemma_") {
        let before = &code[..i];
        let attr = before.rfind("#[no_mangle]").expect("#[no_mangle]");
        let between = squash(&before[attr + "#[no_mangle]".len()..]);
        assert!(
            between == "pub" || between == "pub unsafe",
            "an exported function without #[no_mangle] right before it: {between:?}"
        );
        let rest = &code[i + "extern \"C\" fn ".len()..];
        let open = rest.find('(').unwrap();
        let name = rest[..open].to_string();
        let close = rest.find(')').unwrap();
        let body = rest.find('{').unwrap();
        let ret = rest[close + 1..body]
            .trim()
            .strip_prefix("->")
            .map(str::trim);
        let sig = rust_signature(ret, &rest[open + 1..close]);
        assert!(
            out.insert(name.clone(), sig).is_none(),
            "{name} defined twice"
        );
    }
    out
}

#[test]
fn header_declares_exactly_the_exported_functions_with_their_types() {
    let header = header_functions();
    let rust = rust_functions();
    assert!(header.len() >= 16, "parsed too few: {header:?}");
    let only_header: Vec<_> = header.keys().filter(|k| !rust.contains_key(*k)).collect();
    let only_rust: Vec<_> = rust.keys().filter(|k| !header.contains_key(*k)).collect();
    assert!(
        only_header.is_empty() && only_rust.is_empty(),
        "declared in gemma.h only: {only_header:?}; exported by capi.rs only: {only_rust:?}"
    );
    for (name, sig) in &header {
        assert_eq!(sig, &rust[name], "signature of {name}: header vs capi.rs");
    }
}

#[test]
fn header_callback_options_and_error_codes_match_the_code() {
    let header = header_code();
    let rust = rust_code();

    // The callback type.
    let decl = squash(
        header
            .split(';')
            .find(|d| d.contains("(*GemmaTokenCallback)"))
            .expect("GemmaTokenCallback typedef"),
    );
    let (ret, params) = decl
        .strip_prefix("typedef ")
        .unwrap()
        .split_once("(*GemmaTokenCallback)")
        .unwrap();
    let c_cb = c_signature(
        ret,
        params.trim().trim_start_matches('(').trim_end_matches(')'),
    );
    let at = rust
        .find("pub type GemmaTokenCallback")
        .expect("GemmaTokenCallback");
    let decl = &rust[at..at + rust[at..].find(';').unwrap()];
    let open = decl.find("fn(").unwrap() + 3;
    let close = decl.rfind(')').unwrap();
    let ret = decl[close + 1..].trim().strip_prefix("->").map(str::trim);
    assert_eq!(
        c_cb,
        rust_signature(ret, &decl[open..close]),
        "GemmaTokenCallback"
    );

    // The options struct: the same fields in the same order.
    let start = header
        .find("typedef struct GemmaOptions {")
        .expect("GemmaOptions");
    let body = &header[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find("} GemmaOptions").unwrap()];
    let c_fields: Vec<String> = body
        .split(';')
        .map(squash)
        .filter(|f| !f.is_empty())
        .collect();
    let start = rust
        .find("pub struct GemmaOptions {")
        .expect("GemmaOptions");
    let attrs = &rust[..start];
    let repr = attrs
        .rfind("#[repr(C)]")
        .expect("GemmaOptions is #[repr(C)]");
    assert!(
        attrs[repr..]
            .lines()
            .all(|l| l.trim().is_empty() || l.starts_with("#[")),
        "#[repr(C)] belongs to GemmaOptions"
    );
    let body = &rust[start..];
    let body = &body[body.find('{').unwrap() + 1..body.find('}').unwrap()];
    let rust_fields: Vec<String> = body
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("pub "))
        .map(|l| {
            let (name, ty) = l
                .trim_start_matches("pub ")
                .trim_end_matches(',')
                .split_once(':')
                .unwrap();
            format!("{} {}", rust_to_c(ty), name.trim())
        })
        .collect();
    assert_eq!(c_fields, rust_fields, "GemmaOptions fields");

    // Error codes.
    let c_codes: BTreeMap<String, i32> = platform_file("include/gemma.h")
        .1
        .lines()
        .filter_map(|l| l.trim().strip_prefix("#define "))
        .filter_map(|l| l.split_once(' '))
        .filter(|(name, _)| name.starts_with("GEMMA_"))
        .map(|(name, value)| {
            let value = value.trim().trim_start_matches('(').trim_end_matches(')');
            (name.to_string(), value.parse().unwrap())
        })
        .collect();
    let rust_codes: BTreeMap<String, i32> = rust
        .lines()
        .filter_map(|l| l.strip_prefix("pub const GEMMA_"))
        .map(|l| {
            let (name, value) = l.split_once(": c_int = ").unwrap();
            (
                format!("GEMMA_{name}"),
                value.trim_end_matches(';').parse().unwrap(),
            )
        })
        .collect();
    assert!(c_codes.len() >= 8, "{c_codes:?}");
    assert_eq!(c_codes, rust_codes, "error codes: header vs capi.rs");
}

fn compiles(compiler: &str, args: &[&str]) {
    let (header, _) = platform_file("include/gemma.h");
    let out = Command::new(compiler)
        .args(args)
        .arg("-fsyntax-only")
        .arg(&header)
        .output()
        .unwrap_or_else(|e| panic!("{compiler}: {e} (gcc and g++ are needed for this test)"));
    assert!(
        out.status.success(),
        "{compiler} {args:?} rejects gemma.h:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn header_compiles_cleanly_as_c_and_cpp() {
    compiles(
        "gcc",
        &[
            "-x",
            "c",
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-pedantic",
            "-Werror",
        ],
    );
    compiles(
        "g++",
        &[
            "-x",
            "c++",
            "-std=c++11",
            "-Wall",
            "-Wextra",
            "-pedantic",
            "-Werror",
        ],
    );
}
