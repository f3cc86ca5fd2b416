//! Rewriting an email's links to tracked ones: `<a href>` in the HTML part and bare
//! addresses in the text part.
//!
//! A small scanner rather than an HTML parser crate: only `<a>` tags' `href` and `data-track`
//! attributes are read, comments and `<script>`/`<style>` contents are passed over, and every
//! other byte is copied as it is — so nothing of the template's markup is re-serialised.
//! (The release binary is held under 20 MiB; the streaming rewriters pull in a CSS selector
//! engine this does not need.)

use super::{MAX_LINKS, MAX_NAME, SentLink, TrackLinks};

/// Longest address tracked; a longer one is left as it is.
const MAX_URL: usize = 2048;

/// An email's parts with their links rewritten, and the links (in order of first appearance,
/// each once).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rewritten {
    pub html: Option<String>,
    pub text: Option<String>,
    pub links: Vec<SentLink>,
}

/// Rewrites the links `mode` tracks to `url_for(link)`. Addresses under `own` (this server's
/// public URL: the unsubscribe link) and anything but http(s) are never tracked.
pub fn rewrite(
    html: Option<&str>,
    text: Option<&str>,
    mode: TrackLinks,
    own: &str,
    url_for: &dyn Fn(&SentLink) -> String,
) -> Rewritten {
    let mut links = Links {
        found: Vec::new(),
        own,
    };
    let html = html.map(|h| rewrite_html(h, mode, &mut links, url_for));
    let marked: Vec<SentLink> = links.found.clone();
    let text = text.map(|t| rewrite_text(t, mode, &marked, &mut links, url_for));
    Rewritten {
        html,
        text,
        links: links.found,
    }
}

struct Links<'a> {
    found: Vec<SentLink>,
    own: &'a str,
}

impl Links<'_> {
    /// Whether `url` may be tracked at all.
    fn trackable(&self, url: &str) -> bool {
        let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
        (lower.starts_with("http://") || lower.starts_with("https://"))
            && url.len() <= MAX_URL
            && !url.chars().any(|c| c.is_whitespace() || c.is_control())
            && !url.contains("{{")
            && (self.own.is_empty() || !url.starts_with(self.own))
            && url::Url::parse(url).is_ok()
    }

    /// Takes `link` in; `false` when the message already has [`MAX_LINKS`] others.
    fn take(&mut self, link: &SentLink) -> bool {
        if self.found.contains(link) {
            return true;
        }
        if self.found.len() >= MAX_LINKS {
            return false;
        }
        self.found.push(link.clone());
        true
    }
}

/// One attribute of a tag: its name (lower case), the byte range of the whole attribute with
/// the blank before it, and that of its value with any quotes.
struct Attr {
    name: String,
    whole: (usize, usize),
    value: Option<(usize, usize)>,
}

fn rewrite_html(
    html: &str,
    mode: TrackLinks,
    links: &mut Links<'_>,
    url_for: &dyn Fn(&SentLink) -> String,
) -> String {
    let mut out = String::with_capacity(html.len() + 256);
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        let start = i + off;
        out.push_str(&html[i..start]);
        let rest = &html[start..];
        if rest.starts_with("<!--") {
            let end = rest.find("-->").map_or(html.len(), |e| start + e + 3);
            out.push_str(&html[start..end]);
            i = end;
            continue;
        }
        let name = tag_name(rest);
        if name == "script" || name == "style" {
            let close = format!("</{name}");
            let end = find_ci(&html[start + 1..], &close).map_or(html.len(), |e| start + 1 + e);
            out.push_str(&html[start..end]);
            i = end;
            continue;
        }
        if name != "a" {
            out.push('<');
            i = start + 1;
            continue;
        }
        let (attrs, end) = attributes(html, start + 2);
        out.push_str(&anchor(html, start, end, &attrs, mode, links, url_for));
        i = end;
    }
    out.push_str(&html[i..]);
    out
}

/// The tag `<a …>` from `start` to `end` (after its `>`), rewritten if it is tracked; the
/// `data-track` attribute is dropped either way.
fn anchor(
    html: &str,
    start: usize,
    end: usize,
    attrs: &[Attr],
    mode: TrackLinks,
    links: &mut Links<'_>,
    url_for: &dyn Fn(&SentLink) -> String,
) -> String {
    let value = |a: &Attr| a.value.map(|(s, e)| unquote(&html[s..e])).unwrap_or_default();
    let href = attrs.iter().find(|a| a.name == "href");
    let mark = attrs.iter().find(|a| a.name == "data-track");
    let mut edits: Vec<((usize, usize), String)> = Vec::new();
    if let Some(m) = mark {
        edits.push((m.whole, String::new()));
    }
    if let Some(h) = href
        && let Some(range) = h.value
        && (mode == TrackLinks::All || mark.is_some())
    {
        let url = value(h).trim().to_string();
        let name = mark
            .map(value)
            .map(|n| n.trim().chars().take(MAX_NAME).collect::<String>())
            .filter(|n| !n.is_empty());
        let link = SentLink { url, name };
        if links.trackable(&link.url) && links.take(&link) {
            edits.push((range, format!("\"{}\"", escape_attr(&url_for(&link)))));
        }
    }
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.0));
    let mut tag = html[start..end].to_string();
    for ((s, e), with) in edits {
        tag.replace_range(s - start..e - start, &with);
    }
    tag
}

/// The lower-case name of the tag at the start of `s` (which starts with `<`).
fn tag_name(s: &str) -> String {
    s[1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .take(10)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Where `needle` (ASCII) is in `hay`, ignoring ASCII case.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    (0..h.len().saturating_sub(n.len() - 1)).find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// The attributes of a tag whose name ends at `from`, and where the tag ends (after `>`).
fn attributes(html: &str, from: usize) -> (Vec<Attr>, usize) {
    let b = html.as_bytes();
    let mut attrs = Vec::new();
    let mut i = from;
    loop {
        let blank = i;
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        if i >= b.len() {
            return (attrs, b.len());
        }
        if b[i] == b'>' {
            return (attrs, i + 1);
        }
        let name_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let name = html[name_start..i].to_ascii_lowercase();
        let mut j = i;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        let mut value = None;
        if j < b.len() && b[j] == b'=' {
            j += 1;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let v = j;
            match b.get(j) {
                Some(&q @ (b'"' | b'\'')) => {
                    j = html[j + 1..].find(q as char).map_or(b.len(), |e| j + 1 + e + 1);
                }
                _ => {
                    while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' {
                        j += 1;
                    }
                }
            }
            value = Some((v, j.min(b.len())));
            i = j.min(b.len());
        }
        attrs.push(Attr {
            name,
            whole: (blank, i),
            value,
        });
    }
}

/// An attribute's value without its quotes, character references decoded.
fn unquote(raw: &str) -> String {
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
        .unwrap_or(raw);
    decode_entities(inner)
}

/// Decodes the character references an address may hold (`&amp;` above all).
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        rest = &rest[p..];
        let Some(semi) = rest[..rest.len().min(12)].find(';') else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "lt" => Some('<'),
            "gt" => Some('>'),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;")
}

/// Rewrites the bare addresses of a text part: every one (`all`) or those the HTML part
/// marked (`marked`, taking the mark's name).
fn rewrite_text(
    text: &str,
    mode: TrackLinks,
    marked: &[SentLink],
    links: &mut Links<'_>,
    url_for: &dyn Fn(&SentLink) -> String,
) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len() + 256);
    let mut i = 0;
    while let Some(start) = next_address(&lower, i) {
        let end = address_end(text, start);
        let url = &text[start..end];
        out.push_str(&text[i..start]);
        let link = match mode {
            TrackLinks::All => {
                Some(
                    marked
                        .iter()
                        .find(|l| l.url == url)
                        .cloned()
                        .unwrap_or_else(|| SentLink {
                            url: url.to_string(),
                            name: None,
                        }),
                )
            }
            TrackLinks::Marked => marked.iter().find(|l| l.url == url).cloned(),
        };
        match link {
            Some(l) if links.trackable(&l.url) && links.take(&l) => out.push_str(&url_for(&l)),
            _ => out.push_str(url),
        }
        i = end;
    }
    out.push_str(&text[i..]);
    out
}

/// Where the next `http://` or `https://` that starts a word is, at or after `from`.
fn next_address(lower: &str, from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(off) = lower[i..].find("http") {
        let p = i + off;
        let rest = &lower[p..];
        let starts_word = p == 0 || !lower.as_bytes()[p - 1].is_ascii_alphanumeric();
        if starts_word && (rest.starts_with("http://") || rest.starts_with("https://")) {
            return Some(p);
        }
        i = p + 4;
    }
    None
}

/// Where the address starting at `start` ends: at a blank or a delimiter, less the
/// punctuation that ends a sentence (and a closing bracket the address did not open).
fn address_end(text: &str, start: usize) -> usize {
    let rest = &text[start..];
    let mut end = rest
        .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '`'))
        .unwrap_or(rest.len());
    while let Some(last) = rest[..end].chars().last() {
        let unbalanced = |open: char| rest[..end].matches(open).count() < rest[..end].matches(last).count();
        let trim = matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '\'')
            || (last == ')' && unbalanced('('))
            || (last == ']' && unbalanced('['));
        if !trim {
            break;
        }
        end -= last.len_utf8();
    }
    start + end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(l: &SentLink) -> String {
        format!(
            "https://hooks.example/c/{}",
            l.name.clone().unwrap_or_else(|| "x".into())
        )
    }

    fn run(html: Option<&str>, text: Option<&str>, mode: TrackLinks) -> Rewritten {
        rewrite(html, text, mode, "https://hooks.example", &tracked)
    }

    #[test]
    fn every_http_link_of_the_html_is_rewritten_and_the_rest_kept_byte_for_byte() {
        let html = r##"<p>Hi <b>Ada</b>,</p><A class=btn HREF="https://shop.example/cart?id=7&amp;src=mail" data-track=cart>Your cart</A>
<a href='http://shop.example/'>shop</a> <a href="mailto:help@shop.example">mail</a> <a href="#top">top</a>
<!-- <a href="https://hidden.example/">x</a> --><a href="https://hooks.example/u/tok">unsubscribe</a><area href="https://x.example/">"##;
        let r = run(Some(html), None, TrackLinks::All);
        assert_eq!(
            r.links,
            vec![
                SentLink {
                    url: "https://shop.example/cart?id=7&src=mail".into(),
                    name: Some("cart".into())
                },
                SentLink {
                    url: "http://shop.example/".into(),
                    name: None
                },
            ]
        );
        let out = r.html.unwrap();
        assert!(
            out.contains(r#"<A class=btn HREF="https://hooks.example/c/cart">Your cart</A>"#),
            "{out}"
        );
        assert!(
            out.contains(r#"<a href="https://hooks.example/c/x">shop</a>"#),
            "{out}"
        );
        for kept in [
            "mailto:help@shop.example",
            "#top",
            "https://hidden.example/",
            "https://hooks.example/u/tok",
            "<area href=\"https://x.example/\">",
            "<p>Hi <b>Ada</b>,</p>",
        ] {
            assert!(out.contains(kept), "{kept} in {out}");
        }
        assert!(!out.contains("data-track"));
    }

    #[test]
    fn marked_mode_tracks_only_marked_links_and_their_twins_in_the_text() {
        let html = r#"<a href="https://shop.example/pricing" data-track="pricing">Pricing</a> <a href="https://shop.example/blog">Blog</a>"#;
        let text = "Pricing: https://shop.example/pricing.\nBlog: https://shop.example/blog\n(see https://shop.example/pricing)";
        let r = run(Some(html), Some(text), TrackLinks::Marked);
        assert_eq!(r.links.len(), 1);
        assert_eq!(r.links[0].name.as_deref(), Some("pricing"));
        assert!(r.html.as_ref().unwrap().contains("https://shop.example/blog"));
        let t = r.text.unwrap();
        assert_eq!(
            t,
            "Pricing: https://hooks.example/c/pricing.\nBlog: https://shop.example/blog\n(see https://hooks.example/c/pricing)"
        );
    }

    #[test]
    fn text_addresses_end_where_sentences_do() {
        let text = "Go to https://a.example/x?y=1, or <https://b.example/(c)> or \"https://c.example\"; xhttps://no.example";
        let r = run(None, Some(text), TrackLinks::All);
        let urls: Vec<&str> = r.links.iter().map(|l| l.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://a.example/x?y=1",
                "https://b.example/(c)",
                "https://c.example"
            ]
        );
        assert!(r.text.unwrap().contains("xhttps://no.example"));
    }

    #[test]
    fn scripts_styles_odd_markup_and_too_many_links_are_handled() {
        let html = "<style>a[href=\"https://s.example/\"]{}</style><script>var a='<a href=\"https://j.example/\">'</script><a\nhref=https://u.example/a>u</a><a href>empty</a><a href=\"https://t.example/{{ x }}\">t</a><a";
        let r = run(Some(html), None, TrackLinks::All);
        let urls: Vec<&str> = r.links.iter().map(|l| l.url.as_str()).collect();
        assert_eq!(urls, ["https://u.example/a"]);
        let out = r.html.unwrap();
        assert!(out.starts_with("<style>a[href=\"https://s.example/\"]{}</style><script>"));
        assert!(out.ends_with("<a"), "{out}");
        let many: String = (0..MAX_LINKS + 5)
            .map(|i| format!("<a href=\"https://m.example/{i}\">{i}</a>"))
            .collect();
        let r = run(Some(&many), None, TrackLinks::All);
        assert_eq!(r.links.len(), MAX_LINKS);
        assert!(
            r.html
                .unwrap()
                .contains(&format!("https://m.example/{}", MAX_LINKS + 1))
        );
    }

    #[test]
    fn the_same_link_twice_is_one_link() {
        let html = r#"<a href="https://a.example/">1</a><a href="https://a.example/">2</a>"#;
        let r = run(Some(html), Some("https://a.example/"), TrackLinks::All);
        assert_eq!(r.links.len(), 1);
        assert_eq!(r.text.unwrap(), "https://hooks.example/c/x");
    }
}
