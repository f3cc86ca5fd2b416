//! A flow's inline templates compiled as one.
//!
//! minijinja reserves room for 256 instructions and 128 line and span entries for every
//! template it compiles (about 12 KiB), and never gives it back; a flow has a template per URL,
//! header, body leaf, email field and key — about 16 for a typical one — so 2,000 flows held
//! ~350 MiB of reserved, empty room. Here each flow's inline templates become the branches of
//! one template, `{% if __hookflow_t == 0 %}…{% elif __hookflow_t == 1 %}…{% endif %}`,
//! rendered with the branch's number in the context: one reservation per flow instead of one
//! per template, and the same output, the same strictness and (through [`Merged::locate`]) the
//! same error positions as each template alone.
//!
//! Each piece is checked alone first, so a branch cannot close the `if` around it: a
//! `{% elif %}`, `{% else %}` or `{% endif %}` of its own would not have compiled. Each branch
//! starts on a line of its own (a comment holding a line break ends the one before, and
//! prints nothing), so an error's line names one template.

/// The context key that selects the branch.
pub const SELECTOR: &str = "__hookflow_t";

/// Where each branch of a merged template starts.
#[derive(Debug, Default)]
pub struct Merged {
    /// Per branch: its template's name, the merged source's line it starts on (1-based) and
    /// its number of lines.
    entries: Vec<(String, usize, usize)>,
}

impl Merged {
    /// The merged source of `pieces` (name, source) and where each one starts. A single
    /// trailing newline of a piece is dropped, as minijinja drops it at the end of a template.
    pub fn build(pieces: &[(String, String)]) -> (String, Merged) {
        let mut source = String::new();
        let mut line = 1;
        let mut entries = Vec::with_capacity(pieces.len());
        for (i, (name, piece)) in pieces.iter().enumerate() {
            let tag = if i == 0 { "if" } else { "elif" };
            if i > 0 {
                source.push_str("{#\n#}");
                line += 1;
            }
            source.push_str(&format!("{{% {tag} {SELECTOR} == {i} %}}"));
            let body = piece
                .strip_suffix("\r\n")
                .or_else(|| piece.strip_suffix('\n'))
                .unwrap_or(piece);
            let breaks = body.matches('\n').count();
            entries.push((name.clone(), line, breaks + 1));
            source.push_str(body);
            line += breaks;
        }
        if !pieces.is_empty() {
            source.push_str("{% endif %}");
        }
        (source, Merged { entries })
    }

    /// The template a merged source's line belongs to, and the line within it.
    pub fn locate(&self, line: usize) -> Option<(&str, usize, bool)> {
        let i = self.entries.partition_point(|(_, start, _)| *start <= line);
        let (name, start, lines) = self.entries.get(i.checked_sub(1)?)?;
        (line < start + lines).then(|| (name.as_str(), line - start + 1, *lines > 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_and_their_lines() {
        let pieces = vec![
            ("f/url".to_string(), "http://x/{{ a }}".to_string()),
            ("f/body".to_string(), "line 1\nline 2 {{ b }}\n".to_string()),
            ("f/key".to_string(), "{{ c }}".to_string()),
        ];
        let (source, merged) = Merged::build(&pieces);
        assert_eq!(
            source,
            "{% if __hookflow_t == 0 %}http://x/{{ a }}{#\n#}{% elif __hookflow_t == 1 %}line 1\nline 2 {{ b }}{#\n#}{% elif __hookflow_t == 2 %}{{ c }}{% endif %}"
        );
        assert_eq!(merged.locate(1), Some(("f/url", 1, false)));
        assert_eq!(merged.locate(2), Some(("f/body", 1, true)));
        assert_eq!(merged.locate(3), Some(("f/body", 2, true)));
        assert_eq!(merged.locate(4), Some(("f/key", 1, false)));
        assert_eq!(merged.locate(5), None);
        let (_, one) = Merged::build(&pieces[..1]);
        assert_eq!(one.locate(1), Some(("f/url", 1, false)));
    }
}
