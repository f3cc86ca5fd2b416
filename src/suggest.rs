//! "Did you mean …?": the nearest of some known names to a name that is not one of them, for
//! the messages about flow files (keys, HTTP methods, vars, filters).

/// The candidate closest to `wanted` when it is close enough to be a slip of the keyboard
/// (a letter or two, a different case or separator, or the start of a longer name such as
/// `order` for `order_id`): `None` rather than a wild guess.
pub fn nearest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace(['-', ' '], "_");
    let w = norm(wanted);
    let wl = w.chars().count();
    candidates
        .into_iter()
        .filter(|c| *c != wanted)
        .filter_map(|c| {
            let n = norm(c);
            let whole = strsim::damerau_levenshtein(&w, &n);
            if whole <= (wl.max(n.chars().count()) / 3).max(1) {
                return Some((whole, c));
            }
            // A name cut short, or misspelt in its first part: `ordr` for `order_id`.
            let head = |k: usize| n.chars().take(k).collect::<String>();
            let cut = strsim::damerau_levenshtein(&w, &head(wl + 1))
                .min(strsim::damerau_levenshtein(&w, &head(wl)));
            // A true prefix from four letters on; one slip in it from five.
            let close = cut == 0 && wl >= 4 || cut == 1 && wl >= 5;
            (close && n.chars().count() > wl).then_some((cut + 2, c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Keys people write for hookflow's (from other tools' vocabularies), for "did you mean".
pub const SYNONYMS: &[(&str, &str)] = &[
    ("trigger", "on"),
    ("triggers", "on"),
    ("steps", "actions"),
    ("variables", "vars"),
    ("params", "vars"),
    ("condition", "when"),
    ("conditions", "when"),
    ("filter", "when"),
    ("if", "when"),
    ("payload", "body"),
    ("data", "body"),
    ("retries", "retry"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_for_slips_not_wild_guesses() {
        assert_eq!(nearest("header", ["url", "headers", "method"]), Some("headers"));
        assert_eq!(nearest("Method", ["url", "headers", "method"]), Some("method"));
        assert_eq!(nearest("max-attempts", ["max_attempts"]), Some("max_attempts"));
        assert_eq!(nearest("colour", ["url", "headers", "method"]), None);
        assert_eq!(nearest("order", ["email", "order_id", "items"]), Some("order_id"));
        assert_eq!(
            nearest("ordr_id", ["email", "order_id", "items"]),
            Some("order_id")
        );
        assert_eq!(nearest("ordre", ["email", "order_id", "items"]), Some("order_id"));
        assert_eq!(nearest("item", ["idempotency_key"]), None);
        assert_eq!(nearest("url", ["email", "order_id", "items"]), None);
        assert_eq!(nearest("day", ["email", "order_id", "items"]), None);
        assert_eq!(nearest("ördér", ["order_id"]), None, "any text, no panic");
    }
}
