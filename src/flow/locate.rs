//! Maps a key path inside a YAML document (`actions[1].http.url`) to the line it is on, so that
//! errors found after deserializing (a bad JSONPath, a template syntax error) still point at
//! the line a user must edit. serde cannot carry positions through, so this re-reads the file's
//! event stream once with `yaml-rust2`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line numbers (1-based) of every key and sequence item in a document.
#[derive(Debug, Default)]
pub struct Lines(HashMap<String, usize>);

impl Lines {
    pub fn of(source: &str) -> Lines {
        let mut rec = Recorder::default();
        let mut parser = Parser::new_from_str(source);
        // A syntax error is reported by serde with its own position; a partial map is fine.
        let _ = parser.load(&mut rec, false);
        Lines(rec.lines)
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(l) = self.0.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Recorder {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

impl Recorder {
    /// Path of the node starting now, recording its line; `None` if it is a map key.
    fn node_path(&mut self, line: usize) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                self.lines.insert(p.clone(), line);
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for Recorder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(value, ..) => {
                // A scalar that is not a value is the next key of the enclosing map.
                if self.node_path(line).is_none()
                    && let Some(Frame::Map { path, key }) = self.stack.last_mut()
                {
                    self.lines.insert(join(path, &value), line);
                    *key = Some(value);
                }
            }
            Event::Alias(_) => {
                self.node_path(line);
            }
            Event::MappingStart(..) => {
                let path = self.node_path(line).unwrap_or_default();
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.node_path(line).unwrap_or_default();
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_items() {
        let src = "name: x\nvars:\n  id: $.id\n  email:\n    path: $.e\nactions:\n  - name: a\n    http:\n      url: u\n  - http: {url: v}\n";
        let l = Lines::of(src);
        assert_eq!(l.line("name"), Some(1));
        assert_eq!(l.line("vars.id"), Some(3));
        assert_eq!(l.line("vars.email.path"), Some(5));
        assert_eq!(l.line("actions[0].http.url"), Some(9));
        assert_eq!(l.line("actions[1].http.url"), Some(10));
        assert_eq!(l.line("actions[1].http.method"), Some(10));
        assert_eq!(l.line("nothing.here"), None);
    }
}
