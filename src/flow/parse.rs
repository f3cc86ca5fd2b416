//! Reading a flow file into its [`FlowSpec`] the way a compiler reads source: one mistake does
//! not hide the next. serde stops at the first error, so a file that does not deserialise is
//! read once more as a plain YAML tree, and the spec is deserialised from the tree again and
//! again, each time with the key that failed taken out, until the rest deserialises — one
//! problem per key, each with its key path and line. The spec that remains is still compiled,
//! so a mistake the compiler finds (`method: PSOT`) is reported beside a misspelt key.
//!
//! A key taken out because its *value* was wrong can make its parent look incomplete; those
//! consequences (a missing field, "a condition needs a source") are not reported as mistakes
//! of their own ([`Parsed::is_consequence`]); so are those of an unknown key that looks like a
//! slip for a known one (`eqals:` leaves its condition without an operator). Any other unknown
//! key changes nothing when taken out (it was never read), so nothing it touches is suppressed.

use std::collections::BTreeMap;

use serde_path_to_error::Segment;
use serde_yaml::Value;

use super::locate::Lines;
use super::spec::FlowSpec;

/// Most problems reported for one file; a file with more is usually not a flow file at all.
const MAX_PROBLEMS: usize = 50;

/// One problem found while reading a file.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecProblem {
    /// Key path (`actions[0].http.method`); empty for the file as a whole.
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

/// What reading a flow file gave: the spec with every readable part (`None` when the file is
/// not even YAML, or lacks what no flow can do without), and every problem found on the way.
#[derive(Debug)]
pub struct Parsed {
    pub spec: Option<FlowSpec>,
    pub problems: Vec<SpecProblem>,
    /// Key paths taken out because their value could not be read.
    dropped: Vec<String>,
}

impl Parsed {
    /// Whether a problem the compiler found at `path` may be only the result of a key taken
    /// out of the spec: `path` is a dropped key or one of its ancestors.
    pub fn is_consequence(&self, path: &str) -> bool {
        self.dropped.iter().any(|d| {
            d == path || (d.starts_with(path) && (path.is_empty() || d[path.len()..].starts_with(['.', '['])))
        })
    }
}

/// Reads `source` (a BOM already stripped) into a [`FlowSpec`], collecting every problem.
pub fn parse(source: &str) -> Parsed {
    let first = match serde_yaml::from_str::<FlowSpec>(source) {
        Ok(spec) => {
            return Parsed {
                spec: Some(spec),
                problems: Vec::new(),
                dropped: Vec::new(),
            };
        }
        Err(e) => e,
    };
    let whole_file = |errors: &[&serde_yaml::Error]| {
        let mut problems: Vec<SpecProblem> = Vec::new();
        for e in errors {
            let p = file_problem(e, source);
            // Two readers' words for one mistake: said once.
            if !problems
                .iter()
                .any(|q| q.message == p.message || q.line == p.line)
            {
                problems.push(p);
            }
        }
        Parsed {
            spec: None,
            problems,
            dropped: Vec::new(),
        }
    };
    // Not YAML at all (a tab, an unclosed quote, an alias bomb): one problem, where the parser
    // stopped — and the first one serde met before it, if that was another.
    let tree = match serde_yaml::from_str::<Value>(source) {
        Ok(tree) => tree,
        Err(e) => return whole_file(&[&first, &e]),
    };
    let recovered = recover(tree, source);
    if recovered.problems.is_empty() {
        // The tree reads where the text did not (a difference between the two readers): the
        // text's own error is the one to show.
        return whole_file(&[&first]);
    }
    recovered
}

/// A problem with the file as a whole, at the line a person has to look at: where an
/// unclosed quote opens rather than where the parser ran out of file, and the first alias
/// for an alias bomb (the parser gives no line for it).
fn file_problem(e: &serde_yaml::Error, source: &str) -> SpecProblem {
    let raw = e.to_string();
    static OPENED: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"while scanning a quoted scalar at line (\d+)").expect("a valid regex")
    });
    static ALIAS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?:^|[\s\[,{:])\*[A-Za-z0-9_-]+").expect("a valid regex")
    });
    let at = e.location().map(|l| l.line());
    let said = plain_words(&yaml_message(e), source, at);
    let (line, message) = if let Some(c) = OPENED.captures(&raw) {
        (c[1].parse().ok(), said)
    } else if raw.contains("repetition limit exceeded") || raw.contains("recursion limit exceeded") {
        let first_alias = source
            .lines()
            .position(|l| ALIAS.is_match(l.split(" #").next().unwrap_or(l)))
            .map(|i| i + 1);
        (first_alias, said)
    } else if let Some(key) =
        between(&raw, "duplicate field `", "`").or_else(|| between(&raw, "duplicate entry with key \"", "\""))
    {
        let again = at.and_then(|l| second_key(source, l, &key)).or(at);
        (
            again,
            format!("`{key}` is given twice in one mapping: keep one (a YAML reader takes only one of them)"),
        )
    } else if raw.contains("expected struct FlowSpec") {
        (first_line(source), said)
    } else if let Some(open) = at.and_then(|l| unclosed_quote_before(source, l)) {
        (
            Some(open),
            format!(
                "a quoted value opens on this line and is not closed on it: the parser read on to the next quote and stopped at line {} (the YAML parser said: {})",
                at.unwrap_or(open),
                yaml_message(e)
            ),
        )
    } else {
        (at, said)
    };
    SpecProblem {
        path: String::new(),
        line,
        message,
    }
}

/// The first line with something on it (not a comment): where a problem with the whole file
/// is shown.
fn first_line(source: &str) -> Option<usize> {
    source
        .lines()
        .position(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|i| i + 1)
}

/// The line of the second `key:` of the mapping that starts at `from` (1-based): where a
/// duplicate key is, rather than where its mapping starts.
fn second_key(source: &str, from: usize, key: &str) -> Option<usize> {
    let lines: Vec<&str> = source.lines().collect();
    let first = lines.get(from.checked_sub(1)?)?;
    let item = first.trim_start().strip_prefix("- ").map(str::len);
    let indent = match item {
        Some(rest) => first.len() - rest,
        None => first.len() - first.trim_start().len(),
    };
    let mut seen = 0;
    for (i, l) in lines.iter().enumerate().skip(from - 1) {
        let body = if i == from - 1 {
            &first[indent..]
        } else {
            l.get(indent..).unwrap_or("")
        };
        let this_indent = l.len() - l.trim_start().len();
        if i > from - 1 && this_indent < indent && !l.trim().is_empty() {
            break;
        }
        if body.starts_with(&format!("{key}:")) || body.starts_with(&format!("\"{key}\":")) {
            seen += 1;
            if seen == 2 {
                return Some(i + 1);
            }
        }
    }
    None
}

/// The first line before `stop` (1-based) with a double quote that is not closed on it — the
/// usual cause of a YAML error further down: a quoted value runs on to the next quote.
fn unclosed_quote_before(source: &str, stop: usize) -> Option<usize> {
    source
        .lines()
        .take(stop.saturating_sub(1))
        .position(|l| {
            let t = l.trim_start();
            if t.starts_with('#') {
                return false;
            }
            let mut quotes = 0;
            let mut escaped = false;
            for ch in l.chars() {
                match ch {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => quotes += 1,
                    // A comment outside quotes ends what counts.
                    '#' if quotes % 2 == 0 => break,
                    _ => escaped = false,
                }
                if ch != '\\' {
                    escaped = false;
                }
            }
            quotes % 2 == 1
        })
        .map(|i| i + 1)
}

/// Deserialises `tree` again and again, taking out the key each error is about.
fn recover(mut tree: Value, source: &str) -> Parsed {
    let lines = Lines::of(source);
    let mut problems = Vec::new();
    let mut dropped: Vec<String> = Vec::new();
    // Items taken out of each list (its path → original indices), so the paths of later errors
    // are translated back to the file's own numbering.
    let mut removed_items: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    // Keys an unknown key was taken for (`typ` → `type`): that key then missing is the same
    // mistake, said once.
    let mut suggested: Vec<String> = Vec::new();
    loop {
        let err = match serde_path_to_error::deserialize::<_, FlowSpec>(&tree) {
            Ok(spec) => {
                return Parsed {
                    spec: Some(spec),
                    problems,
                    dropped,
                };
            }
            Err(e) => e,
        };
        let message = err.inner().to_string();
        let mut segments: Vec<Segment> = err
            .path()
            .iter()
            .take_while(|s| !matches!(s, Segment::Unknown))
            .cloned()
            .collect();
        let unknown_key = between(&message, "unknown field `", "`");
        if let Some(key) = &unknown_key
            && !matches!(segments.last(), Some(Segment::Map { key: k }) if k == key)
        {
            segments.push(Segment::Map { key: key.clone() });
        }
        let missing = between(&message, "missing field `", "`");
        let path = original_path(&segments, &removed_items);
        let consequence = missing.as_ref().is_some_and(|k| {
            let key = join(&path, k);
            dropped.contains(&key) || suggested.contains(&key)
        });
        let explained = did_you_mean(&message);
        if let (Some(near), Some(Segment::Map { .. })) =
            (between(&explained, "(did you mean `", "`"), segments.last())
            && unknown_key.is_some()
        {
            let parent = original_path(&segments[..segments.len() - 1], &removed_items);
            suggested.push(join(&parent, &near));
        }
        if !consequence {
            let shown = match &missing {
                Some(k) => join(&path, k),
                None => path.clone(),
            };
            problems.push(SpecProblem {
                line: lines
                    .line(&shown)
                    .or_else(|| lines.line(&path))
                    .or_else(|| shown.is_empty().then(|| first_line(source)).flatten()),
                message: format!(
                    "{}{}",
                    if shown.is_empty() {
                        String::new()
                    } else {
                        format!("{shown}: ")
                    },
                    plain_words(&explained, "", None)
                ),
                path: shown,
            });
        }
        if problems.len() >= MAX_PROBLEMS {
            break;
        }
        if segments.is_empty() {
            // The file as a whole: a required top-level key is missing, or it is not a mapping.
            match missing.as_deref() {
                Some("on") => {
                    // Stand in for the trigger, so the rest of the file is still checked.
                    if let Value::Mapping(m) = &mut tree {
                        m.insert(
                            "on".into(),
                            serde_yaml::from_str("{webhook: {}}").unwrap_or_default(),
                        );
                        dropped.push("on".into());
                        continue;
                    }
                    break;
                }
                _ => break,
            }
        }
        if !remove(&mut tree, &segments) {
            break;
        }
        // A key taken out for its value, or an unknown key that looks like a slip for a known
        // one: what its parent then lacks is the same mistake.
        if unknown_key.is_none() || explained.contains("(did you mean `") {
            dropped.push(path.clone());
        }
        if let Some(Segment::Seq { .. }) = segments.last() {
            let list = original_path(&segments[..segments.len() - 1], &removed_items);
            if let Some(index) = path
                .rsplit('[')
                .next()
                .and_then(|i| i.trim_end_matches(']').parse().ok())
            {
                removed_items.entry(list).or_default().push(index);
            }
        }
    }
    Parsed {
        spec: None,
        problems,
        dropped,
    }
}

/// The text between `start` and the next `end` in `s`.
fn between(s: &str, start: &str, end: &str) -> Option<String> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(s[from..from + len].to_string())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The path of `segments` as the file numbers it (`actions[2].http`), given the items already
/// taken out of lists.
fn original_path(segments: &[Segment], removed_items: &BTreeMap<String, Vec<usize>>) -> String {
    let mut path = String::new();
    for s in segments {
        match s {
            Segment::Seq { index } => {
                let gone = removed_items.get(&path).map(Vec::as_slice).unwrap_or(&[]);
                // The index-th of the original indices that are still there.
                let mut i = *index;
                let mut original = 0;
                loop {
                    if !gone.contains(&original) {
                        if i == 0 {
                            break;
                        }
                        i -= 1;
                    }
                    original += 1;
                }
                path.push_str(&format!("[{original}]"));
            }
            Segment::Map { key } | Segment::Enum { variant: key } => path = join(&path, key),
            Segment::Unknown => break,
        }
    }
    path
}

/// Takes the node at `segments` out of `tree`; false if there is none.
fn remove(tree: &mut Value, segments: &[Segment]) -> bool {
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node = tree;
    for s in parents {
        let next = match (s, untag(node)) {
            (Segment::Seq { index }, Value::Sequence(items)) => items.get_mut(*index),
            (Segment::Map { key } | Segment::Enum { variant: key }, Value::Mapping(m)) => {
                m.get_mut(key.as_str())
            }
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    match (last, untag(node)) {
        (Segment::Seq { index }, Value::Sequence(items)) if *index < items.len() => {
            items.remove(*index);
            true
        }
        (Segment::Map { key } | Segment::Enum { variant: key }, Value::Mapping(m)) => {
            m.remove(key.as_str()).is_some()
        }
        _ => false,
    }
}

fn untag(v: &mut Value) -> &mut Value {
    match v {
        Value::Tagged(t) => untag(&mut t.value),
        other => other,
    }
}

/// serde's "unknown field `header`, expected one of `url`, `headers`, …" with the nearest
/// allowed name pointed out: `(did you mean `headers`?)`.
pub fn did_you_mean(message: &str) -> String {
    let Some(unknown) =
        between(message, "unknown field `", "`").or_else(|| between(message, "unknown variant `", "`"))
    else {
        return message.to_string();
    };
    let Some(expected) = message.find(", expected").map(|i| &message[i..]) else {
        return message.to_string();
    };
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    let synonym = crate::suggest::SYNONYMS
        .iter()
        .find(|(said, meant)| *said == unknown.to_ascii_lowercase() && candidates.contains(meant))
        .map(|(_, meant)| *meant);
    match synonym.or_else(|| crate::suggest::nearest(&unknown, candidates.iter().copied())) {
        Some(near) => message.replacen(
            &format!("`{unknown}`,"),
            &format!("`{unknown}` (did you mean `{near}`?),"),
            1,
        ),
        None => message.to_string(),
    }
}

/// serde_yaml's message without its "at line X column Y"s (the line is shown first).
fn yaml_message(e: &serde_yaml::Error) -> String {
    static AT: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r" at line \d+ column \d+").expect("a valid regex"));
    AT.replace_all(&e.to_string(), "").into_owned()
}

/// The YAML parser's jargon in words a person editing a flow file can act on, with the
/// parser's own words kept after them (to search for). `line` is 1-based.
pub(super) fn plain_words(msg: &str, source: &str, line: Option<usize>) -> String {
    let text_of = |l: usize| source.lines().nth(l.saturating_sub(1)).unwrap_or("");
    let indent_has_tab = |l: usize| {
        let t = text_of(l);
        t[..t.len() - t.trim_start().len()].contains('\t')
    };
    let said = |words: &str| format!("{words} (the YAML parser said: {msg})");
    if msg.contains("found character that cannot start any token") {
        if line.is_some_and(indent_has_tab) {
            return said(
                "a tab in the indentation: YAML indents with spaces only — replace the tab with spaces",
            );
        }
        return said(
            "a value starts with a character YAML reserves (`@`, `` ` `` or a tab): put the value in quotes",
        );
    }
    if msg.contains("did not find expected '-' indicator") || msg.contains("did not find expected key") {
        return said(
            "the indentation does not line up: this line is indented differently from the list items or keys above it",
        );
    }
    if msg.contains("repetition limit exceeded") || msg.contains("recursion limit exceeded") {
        return said(
            "the file expands aliases (`*name`) into more than a flow file may hold: write the values out instead",
        );
    }
    if msg.contains("while scanning a quoted scalar") && msg.contains("found unexpected end of stream") {
        return said("the quoted value that opens on this line is never closed: add the closing quote");
    }
    if msg.contains("found unexpected end of stream") || msg.contains("found unknown escape") {
        return said(
            "a quoted value is not closed, or holds a backslash YAML does not know (write `\\\\` for one backslash)",
        );
    }
    if msg.contains("invalid type: sequence, expected struct FlowSpec") {
        return said(
            "a flow file is a mapping at the top (`on:`, `actions:`, …), not a list: remove the `- ` before `on:`",
        );
    }
    if msg.contains("expected struct FlowSpec") {
        return said("a flow file is a mapping at the top: `on:`, `actions:`, …");
    }
    let mut out = msg.to_string();
    for (jargon, words) in [
        ("expected u16", "expected a whole number (0 or more)"),
        ("expected u32", "expected a whole number (0 or more)"),
        ("expected u64", "expected a whole number (0 or more)"),
        ("expected usize", "expected a whole number (0 or more)"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a mapping of keys to values"),
        ("expected a string", "expected text"),
        (
            "expected parsable string",
            "expected a size such as `1MiB` or `500KB`",
        ),
    ] {
        out = out.replace(jargon, words);
    }
    static STRUCT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"expected (?:struct|enum) (\w+?)(?:Spec|Table)?\b").expect("a valid regex")
    });
    STRUCT
        .replace_all(&out, |c: &regex::Captures| {
            format!("expected a `{}` table", snake(&c[1]))
        })
        .into_owned()
}

/// `RetrySpec` → `retry`, `CircuitBreaker` → `circuit_breaker`.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(source: &str) -> Vec<SpecProblem> {
        parse(source).problems
    }

    #[test]
    fn every_key_mistake_in_a_file_is_reported_at_its_own_line() {
        let src = "on:\n  webhook:\n    when:\n      - path: $.status\n        eqals: paid\ndescripton: x\nactions:\n  - http:\n      url: https://example.com/\n      header: { X-A: b }\n      timeout: soon\n";
        let p = problems(src);
        let got: Vec<(&str, Option<usize>)> = p.iter().map(|p| (p.path.as_str(), p.line)).collect();
        assert_eq!(
            got,
            vec![
                ("on.webhook.when[0].eqals", Some(5)),
                ("descripton", Some(6)),
                ("actions[0].http.header", Some(10)),
                ("actions[0].http.timeout", Some(11)),
            ],
            "{p:#?}"
        );
        assert!(
            p[0].message.contains("did you mean `equals`?"),
            "{}",
            p[0].message
        );
        assert!(
            p[1].message.contains("did you mean `description`?"),
            "{}",
            p[1].message
        );
        assert!(
            p[2].message.contains("did you mean `headers`?"),
            "{}",
            p[2].message
        );
    }

    #[test]
    fn a_spec_remains_for_the_compiler_once_the_bad_keys_are_out() {
        let parsed = parse("on: { webhook: {} }\nbogus: 1\nactions:\n  - emit: { type: x }\n");
        assert!(parsed.spec.is_some());
        assert_eq!(parsed.problems.len(), 1);
        // An unknown key changes nothing when taken out: nothing is a consequence of it.
        assert!(!parsed.is_consequence(""));
        // One that looks like a slip for a known key does leave its parent lacking that key.
        let slip =
            parse("on: { webhook: { when: [{ path: $.a, eqals: 1 }] } }\nactions:\n  - emit: { type: x }\n");
        assert!(slip.is_consequence("on.webhook.when[0]"));
        assert!(!slip.is_consequence("actions[0]"));
    }

    #[test]
    fn a_wrong_value_makes_its_parents_problems_consequences() {
        let parsed = parse("on: { webhook: {} }\nactions:\n  - emit: { type: [1] }\n    name: a\n");
        assert_eq!(parsed.problems.len(), 1, "{:#?}", parsed.problems);
        assert_eq!(parsed.problems[0].path, "actions[0].emit.type");
        assert!(parsed.is_consequence("actions[0].emit"));
        assert!(parsed.is_consequence("actions[0]"));
        assert!(!parsed.is_consequence("actions[0].name"));
        assert!(!parsed.is_consequence("actions[1]"));
    }

    #[test]
    fn items_taken_out_of_a_list_keep_later_items_at_their_own_lines() {
        let src = "on:\n  webhook:\n    when:\n      - just a string\n      - path: $.a\n        equal: 1\nactions:\n  - emit: { type: x }\n";
        let p = problems(src);
        let got: Vec<(&str, Option<usize>)> = p.iter().map(|p| (p.path.as_str(), p.line)).collect();
        assert_eq!(
            got,
            vec![
                ("on.webhook.when[0]", Some(4)),
                ("on.webhook.when[1].equal", Some(6))
            ],
            "{p:#?}"
        );
    }

    #[test]
    fn a_missing_trigger_does_not_hide_the_rest() {
        let p = problems("trigger: { webhook: {} }\nactions:\n  - emit: { typ: x }\n");
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        // `trigger` is taken for `on`: its absence is the same mistake, said once.
        assert_eq!(paths, vec!["trigger", "actions[0].emit.typ"], "{p:#?}");
        assert!(p[0].message.contains("did you mean `on`?"), "{}", p[0].message);
        let p = problems("actions:\n  - emit: { typ: x }\n");
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, vec!["actions[0].emit.typ", "on"], "{p:#?}");
        assert!(p[1].message.contains("missing field `on`"), "{}", p[1].message);
    }

    #[test]
    fn not_yaml_is_one_problem_where_the_parser_stopped() {
        let p = problems("on: { webhook: {} }\nactions:\n\t- emit: { type: x }\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].line, Some(3));
        assert!(
            p[0].message.starts_with("a tab in the indentation"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn type_names_become_words() {
        assert_eq!(
            plain_words("invalid type: string \"abc\", expected u32", "", None),
            "invalid type: string \"abc\", expected a whole number (0 or more)"
        );
        assert_eq!(
            plain_words("invalid type: integer `5`, expected struct RetrySpec", "", None),
            "invalid type: integer `5`, expected a `retry` table"
        );
    }
}

#[cfg(test)]
mod words {
    use super::*;

    #[test]
    fn an_unclosed_quote_is_reported_where_it_opens() {
        let p =
            parse("on: { webhook: {} }\ndescription: \"unclosed\nactions:\n  - emit: { type: x }\n").problems;
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].line, Some(2));
        assert!(
            p[0].message
                .starts_with("the quoted value that opens on this line is never closed"),
            "{}",
            p[0].message
        );
    }

    #[test]
    fn an_alias_bomb_is_reported_at_its_first_alias_in_words() {
        let mut src = String::from(
            "on: { webhook: {} }\nvars:\n  a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n",
        );
        let mut prev = "a".to_string();
        for i in 0..8 {
            src += &format!(
                "  l{i}: &l{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
            );
            prev = format!("l{i}");
        }
        src += "actions:\n  - emit: { type: x }\n";
        let p = parse(&src).problems;
        let bomb = p
            .iter()
            .find(|p| p.message.contains("expands aliases"))
            .unwrap_or_else(|| panic!("{p:#?}"));
        assert_eq!(bomb.line, Some(4));
    }
}
