//! Rendering Tera templates the same way at planning time and at build time: no autoescaping
//! (the outputs are config files, not HTML), errors reduced to one line.

/// Renders `text` with `vars`. The error is one line: an undefined variable reads
/// "undefined variable `os.nme`", a syntax error gives Tera's position and expectation.
pub fn render(text: &str, vars: &tera::Context) -> Result<String, String> {
    tera::Tera::one_off(text, vars, false).map_err(|e| one_line(&e))
}

/// Checks that `text` parses as a Tera template, without rendering it.
pub fn check_syntax(text: &str) -> Result<(), String> {
    tera::Tera::default()
        .add_raw_template("template", text)
        .map_err(|e| one_line(&e))
}

/// The innermost useful message of a Tera error chain, on one line.
fn one_line(e: &tera::Error) -> String {
    let mut innermost: &dyn std::error::Error = e;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    let message = innermost.to_string();
    if let Some(rest) = message.strip_prefix("Variable `") {
        if let Some((name, _)) = rest.split_once("` not found in context") {
            return format!("undefined variable `{name}`");
        }
    }
    // Parse errors are multi-line pest reports: " --> 1:5 | ... = expected ...". Keep the
    // position and the expectation.
    let lines: Vec<&str> = message.lines().map(str::trim).collect();
    let position = lines.iter().find_map(|l| l.strip_prefix("--> "));
    let expected = lines.iter().find_map(|l| l.strip_prefix("= "));
    match (position, expected) {
        (Some(p), Some(x)) if x.contains("comment end") => format!(
            "template syntax error at {p}: {x}; `{{#` opens a Tera comment (shell `${{#x}}`?): \
             wrap such text in {{% raw %}}...{{% endraw %}}"
        ),
        (Some(p), Some(x)) => format!("template syntax error at {p}: {x}"),
        _ => lines
            .iter()
            .filter(|l| !l.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
            .replace(" while rendering '__tera_one_off'", "")
            .replace("'__tera_one_off'", "the template"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> tera::Context {
        let mut c = tera::Context::new();
        c.insert("os", &serde_json::json!({"name": "ubuntu-noble"}));
        c
    }

    #[test]
    fn renders_without_escaping() {
        assert_eq!(
            render("<{{ os.name }}>&", &vars()).unwrap(),
            "<ubuntu-noble>&"
        );
    }

    #[test]
    fn undefined_variable_is_named() {
        assert_eq!(
            render("x {{ os.nme }}", &vars()).unwrap_err(),
            "undefined variable `os.nme`"
        );
    }

    #[test]
    fn syntax_error_is_one_line() {
        let e = check_syntax("{{ os.name ").unwrap_err();
        assert!(e.starts_with("template syntax error at 1:"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn shell_length_syntax_gets_a_hint() {
        assert_eq!(
            check_syntax("echo ${#arr[@]}").unwrap_err(),
            "template syntax error at 1:16: expected a comment end (`#}`); `{#` opens a Tera \
             comment (shell `${#x}`?): wrap such text in {% raw %}...{% endraw %}"
        );
        assert!(check_syntax("echo {% raw %}${#arr[@]}{% endraw %}").is_ok());
    }
}
