//! "Did you mean …?": the nearest of some known names to a name that is not one of them, for
//! the messages about flow files (keys, HTTP methods, vars, filters).

/// The candidate closest to `wanted` when it is close enough to be a slip of the keyboard
/// (a letter or two, or a different case or separator): `None` rather than a wild guess.
pub fn nearest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace(['-', ' '], "_");
    let w = norm(wanted);
    candidates
        .into_iter()
        .filter(|c| *c != wanted)
        .map(|c| (strsim::damerau_levenshtein(&w, &norm(c)), c))
        .filter(|(d, c)| *d <= (w.chars().count().max(c.chars().count()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_for_slips_not_wild_guesses() {
        assert_eq!(nearest("header", ["url", "headers", "method"]), Some("headers"));
        assert_eq!(nearest("Method", ["url", "headers", "method"]), Some("method"));
        assert_eq!(nearest("max-attempts", ["max_attempts"]), Some("max_attempts"));
        assert_eq!(nearest("colour", ["url", "headers", "method"]), None);
    }
}
