//! The suppression list: addresses hookflow must not email, with why, since when and who said
//! so. An unsubscribe suppresses an address for one list; a hard bounce or a complaint
//! suppresses it for every email (a mailbox that does not exist, or a person who marked mail
//! as spam, hurts the sender's reputation whatever the email is). Every `email` action checks
//! the list at send time; suppressed recipients are not sent to and the step says so.
//!
//! Entries are never deleted by hand, only *lifted* with a reason, so the history of a
//! consent stays readable. The rules here are pure so every store applies them the same way.

use serde::{Deserialize, Serialize};

use crate::segment::{normalize_email, valid_segment_name};
use crate::time::Ts;

/// Why an address is suppressed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The contact unsubscribed from a list.
    Unsubscribed,
    /// A permanent delivery failure: the mailbox or domain does not exist.
    Bounced,
    /// The recipient reported an email as spam.
    Complained,
    /// Added by hand (API, CLI, dashboard).
    Manual,
    /// Imported from another tool's opt-out list.
    Imported,
}

/// The words a segment action's `suppress:` takes (any case): what [`Reason::parse`] reads,
/// but `imported`, which only an import sets.
pub const REASON_WORDS: &[&str] = &[
    "unsubscribed",
    "unsubscribe",
    "bounced",
    "bounce",
    "hard_bounce",
    "hardbounce",
    "complained",
    "complaint",
    "spam",
    "spamreport",
    "manual",
];

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unsubscribed => "unsubscribed",
            Reason::Bounced => "bounced",
            Reason::Complained => "complained",
            Reason::Manual => "manual",
            Reason::Imported => "imported",
        }
    }

    /// Reads a reason as written (any case), with the other words senders use for it.
    pub fn parse(s: &str) -> Option<Reason> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "unsubscribed" | "unsubscribe" => Reason::Unsubscribed,
            "bounced" | "bounce" | "hard_bounce" | "hardbounce" => Reason::Bounced,
            "complained" | "complaint" | "spam" | "spamreport" => Reason::Complained,
            "manual" => Reason::Manual,
            "imported" | "" => Reason::Imported,
            _ => return None,
        })
    }
}

/// The list (segment) name written for "every email".
pub const EVERY_LIST: &str = "*";

/// One suppressed address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Suppression {
    /// Normalised (trimmed, lower-case).
    pub email: String,
    /// The list it applies to; `None`: every email, lists and transactional alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
    pub reason: Reason,
    pub at: Ts,
    /// Where it came from: `one-click unsubscribe`, `smtp 550 5.1.1 …`, `flow sendgrid-events`,
    /// `api`, `import`.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Set when the suppression was lifted: it no longer applies, and stays as history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifted: Option<Lifted>,
}

/// A suppression taken back, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Lifted {
    pub at: Ts,
    pub reason: String,
}

impl Suppression {
    /// A new entry; checks the address and the list name.
    pub fn new(
        email: &str,
        list: Option<&str>,
        reason: Reason,
        source: impl Into<String>,
    ) -> Result<Suppression, String> {
        let email = normalize_email(email)?;
        let list = match list.map(str::trim).filter(|l| !l.is_empty() && *l != EVERY_LIST) {
            None if reason == Reason::Unsubscribed => {
                return Err("an unsubscribe names the list it is from".into());
            }
            None => None,
            Some(l) if valid_segment_name(l) => Some(l.to_string()),
            Some(l) => {
                return Err(format!(
                    "list `{l}` is not a segment name (letters, digits, `-`, `_` and `.`)"
                ));
            }
        };
        Ok(Suppression {
            email,
            list,
            reason,
            at: Ts::now(),
            source: source.into(),
            note: None,
            lifted: None,
        })
    }

    /// The key part that tells entries of one address apart: the list, or [`EVERY_LIST`].
    pub fn scope(&self) -> &str {
        self.list.as_deref().unwrap_or(EVERY_LIST)
    }

    /// Whether this entry keeps an email of `list` (`None`: a transactional email) from
    /// being sent.
    pub fn applies_to(&self, list: Option<&str>) -> bool {
        self.lifted.is_none()
            && match &self.list {
                None => true,
                Some(l) => Some(l.as_str()) == list,
            }
    }

    /// For messages and the step's record: `bounced (smtp 550 …)`.
    pub fn describe(&self) -> String {
        let scope = match &self.list {
            Some(l) => format!(" from {l}"),
            None => String::new(),
        };
        format!("{}{scope} on {} ({})", self.reason.as_str(), self.at, self.source)
    }
}

/// Whether an SMTP server's permanent answer says the *recipient* cannot receive mail (a hard
/// bounce), as opposed to a refusal of this message or sender (spam, policy, relay, size),
/// which suppressing the address would not fix. RFC 3463's enhanced status decides when the
/// server gives one: `5.1.x` (bad mailbox or domain, not the sender's 5.1.7/5.1.8) and `5.2.1`
/// (mailbox disabled); without one, 551 and 553 do, and 550 only with words that say the
/// mailbox is unknown.
pub fn is_hard_bounce(code: u16, text: &str) -> bool {
    if !(500..600).contains(&code) {
        return false;
    }
    if let Some((class, subject, detail)) = enhanced_status(text) {
        return class == 5 && ((subject == 1 && !matches!(detail, 7 | 8)) || (subject == 2 && detail == 1));
    }
    let t = text.to_ascii_lowercase();
    match code {
        551 | 553 => true,
        550 => [
            "user unknown",
            "unknown user",
            "no such user",
            "does not exist",
            "doesn't exist",
            "mailbox not found",
            "mailbox unavailable",
            "no mailbox",
            "invalid recipient",
            "recipient address rejected",
            "address rejected",
            "unknown recipient",
            "not found",
        ]
        .iter()
        .any(|w| t.contains(w)),
        _ => false,
    }
}

/// The first `x.y.z` enhanced status code in a reply's text.
fn enhanced_status(text: &str) -> Option<(u8, u16, u16)> {
    text.split(|c: char| c.is_whitespace() || c == ':' || c == ',' || c == ';')
        .find_map(|w| {
            let mut parts = w.split('.');
            let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || a.len() != 1 {
                return None;
            }
            Some((a.parse().ok()?, b.parse().ok()?, c.parse().ok()?))
        })
        .filter(|(class, _, _)| matches!(class, 2 | 4 | 5))
}

/// Which of `recipients` a hard bounce is about: the only one, or the one the reply names.
pub fn bounced_recipients(recipients: &[String], text: &str) -> Vec<String> {
    if recipients.len() == 1 {
        return recipients.to_vec();
    }
    let t = text.to_ascii_lowercase();
    recipients
        .iter()
        .filter(|r| t.contains(&r.to_ascii_lowercase()))
        .cloned()
        .collect()
}

/// Columns of the CSV export (and what an import reads).
pub const CSV_COLUMNS: [&str; 7] = ["email", "list", "reason", "at", "source", "note", "lifted"];

/// The suppression list as CSV, one row per entry, after the header row when `header` (an
/// export is written page by page: the first page has it, the others continue it).
pub fn to_csv(entries: &[Suppression], header: bool) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    if header {
        let _ = w.write_record(CSV_COLUMNS);
    }
    for s in entries {
        let _ = w.write_record([
            s.email.as_str(),
            s.list.as_deref().unwrap_or(""),
            s.reason.as_str(),
            &s.at.to_string(),
            &s.source,
            s.note.as_deref().unwrap_or(""),
            &s.lifted
                .as_ref()
                .map(|l| format!("{} ({})", l.at, l.reason))
                .unwrap_or_default(),
        ]);
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

/// What an import read: entries to add, and each row it could not use (1-based line, why).
#[derive(Debug, Default)]
pub struct Imported {
    pub entries: Vec<Suppression>,
    pub rejected: Vec<(usize, String)>,
}

/// Reads a CSV of opt-outs: a header row naming an address column (`email`, `email address`,
/// `e-mail`, as other tools export it) and optionally `list`, `reason` and `note`. Rows
/// without a reason are `imported`; rows without a list apply to every email, unless `list`
/// is given (it fills the empty ones). Lifted rows of an export are skipped.
pub fn from_csv(text: &str, list: Option<&str>, source: &str) -> Result<Imported, String> {
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = r
        .headers()
        .map_err(|e| format!("the CSV's header row: {e}"))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    let col = |names: &[&str]| headers.iter().position(|h| names.contains(&h.as_str()));
    let email_col = col(&["email", "email address", "email_address", "e-mail", "address"])
        .ok_or("the CSV has no `email` column (its header row names the columns)")?;
    let (list_col, reason_col, note_col, lifted_col) =
        (col(&["list"]), col(&["reason"]), col(&["note"]), col(&["lifted"]));
    let mut out = Imported::default();
    for (i, row) in r.records().enumerate() {
        let line = i + 2;
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                out.rejected.push((line, e.to_string()));
                continue;
            }
        };
        let cell = |c: Option<usize>| c.and_then(|c| row.get(c)).unwrap_or("");
        if !cell(lifted_col).is_empty() {
            continue;
        }
        let reason = match Reason::parse(cell(reason_col)) {
            Some(r) => r,
            None => {
                out.rejected
                    .push((line, format!("`{}` is not a reason", cell(reason_col))));
                continue;
            }
        };
        let row_list = Some(cell(list_col)).filter(|l| !l.is_empty()).or(list);
        match Suppression::new(cell(Some(email_col)), row_list, reason, source) {
            Ok(mut s) => {
                s.note = Some(cell(note_col).to_string()).filter(|n| !n.is_empty());
                out.entries.push(s);
            }
            Err(e) => out.rejected.push((line, e)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_apply_as_documented() {
        let unsub =
            Suppression::new("Ada@Example.com ", Some("newsletter"), Reason::Unsubscribed, "t").unwrap();
        assert_eq!(unsub.email, "ada@example.com");
        assert!(unsub.applies_to(Some("newsletter")));
        assert!(!unsub.applies_to(Some("offers")));
        assert!(!unsub.applies_to(None), "transactional mail still goes");
        let bounce = Suppression::new("ada@example.com", None, Reason::Bounced, "t").unwrap();
        assert!(bounce.applies_to(None) && bounce.applies_to(Some("newsletter")));
        let mut lifted = bounce.clone();
        lifted.lifted = Some(Lifted {
            at: Ts(1),
            reason: "typo fixed".into(),
        });
        assert!(!lifted.applies_to(None));
        assert!(Suppression::new("ada@example.com", None, Reason::Unsubscribed, "t").is_err());
        assert!(Suppression::new("not an address", None, Reason::Bounced, "t").is_err());
        assert!(Suppression::new("a@b.co", Some("bad name!"), Reason::Manual, "t").is_err());
        assert_eq!(
            Suppression::new("a@b.co", Some("*"), Reason::Manual, "t")
                .unwrap()
                .list,
            None
        );
    }

    #[test]
    fn hard_bounces_are_told_from_refusals_of_the_message() {
        for (code, text) in [
            (
                550,
                "5.1.1 <bob@example.com>: Recipient address rejected: User unknown",
            ),
            (550, "5.1.10 RESOLVER.ADR.RecipientNotFound"),
            (554, "5.2.1 The email account that you tried to reach is disabled"),
            (550, "Requested action not taken: mailbox unavailable"),
            (553, "sorry, that domain isn't in my list of allowed rcpthosts"),
            (551, "User not local"),
        ] {
            assert!(is_hard_bounce(code, text), "{code} {text}");
        }
        for (code, text) in [
            (550, "5.7.1 Message rejected as spam"),
            (554, "5.7.1 <x@y>: Relay access denied"),
            (552, "5.3.4 Message size exceeds fixed limit"),
            (550, "5.1.7 Invalid sender address"),
            (550, "Message content rejected"),
            (421, "4.1.1 try again later"),
            (450, "mailbox busy"),
        ] {
            assert!(!is_hard_bounce(code, text), "{code} {text}");
        }
    }

    #[test]
    fn a_bounce_names_its_recipient() {
        let one = vec!["ada@example.com".to_string()];
        assert_eq!(bounced_recipients(&one, "550 5.1.1 unknown"), one);
        let two = vec!["ada@example.com".to_string(), "bob@example.com".to_string()];
        assert_eq!(
            bounced_recipients(&two, "5.1.1 <Bob@Example.com>: user unknown"),
            vec!["bob@example.com".to_string()]
        );
        assert!(bounced_recipients(&two, "5.1.1 user unknown").is_empty());
    }

    #[test]
    fn csv_round_trips_and_reads_other_tools_exports() {
        let mut a = Suppression::new(
            "ada@example.com",
            Some("newsletter"),
            Reason::Unsubscribed,
            "one-click",
        )
        .unwrap();
        a.note = Some("said so, on the phone".into());
        let b = Suppression::new("bob@example.com", None, Reason::Bounced, "smtp 550 5.1.1").unwrap();
        let text = to_csv(&[a.clone(), b.clone()], true);
        assert_eq!(
            text.lines().skip(1).collect::<Vec<_>>(),
            to_csv(&[a.clone(), b.clone()], false).lines().collect::<Vec<_>>()
        );
        let back = from_csv(&text, None, "import").unwrap();
        assert!(back.rejected.is_empty(), "{:?}", back.rejected);
        assert_eq!(back.entries.len(), 2);
        assert_eq!(back.entries[0].list.as_deref(), Some("newsletter"));
        assert_eq!(back.entries[0].reason, Reason::Unsubscribed);
        assert_eq!(back.entries[0].note.as_deref(), Some("said so, on the phone"));
        assert_eq!(back.entries[1].list, None);
        // Mailchimp-style export: "Email Address" and other columns, a BOM, a bad row.
        let other =
            "\u{feff}Email Address,First Name,UNSUB_TIME\nCarla@Example.com,Carla,2024\nnot-an-address,X,1\n";
        let got = from_csv(other, Some("newsletter"), "import").unwrap();
        assert_eq!(got.entries.len(), 1);
        assert_eq!(got.entries[0].email, "carla@example.com");
        assert_eq!(got.entries[0].reason, Reason::Imported);
        assert_eq!(got.entries[0].list.as_deref(), Some("newsletter"));
        assert_eq!(got.rejected.len(), 1);
        assert_eq!(got.rejected[0].0, 3);
        assert!(from_csv("name\nx\n", None, "i").is_err());
    }
}
