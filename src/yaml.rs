//! Small shapes shared by the parts of a flow file.

use serde::Deserialize;

/// One name or a list of them.
#[derive(Debug, Deserialize, Clone, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// Reads a value written as a string or as a table (`wait: 3d` or `wait: { for: 3d }`).
/// Rather than `#[serde(untagged)]`, so that a mistake inside the table reports its key and
/// line ("unknown field `fr`") instead of "did not match any variant".
pub fn string_or_table<'de, D, T, S>(
    d: D,
    expecting: &'static str,
    from_str: fn(String) -> T,
    from_table: fn(S) -> T,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    S: Deserialize<'de>,
{
    struct V<T, S> {
        expecting: &'static str,
        from_str: fn(String) -> T,
        from_table: fn(S) -> T,
    }
    impl<'de, T, S: Deserialize<'de>> serde::de::Visitor<'de> for V<T, S> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            Ok((self.from_str)(v.to_string()))
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            S::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(self.from_table)
        }
    }
    d.deserialize_any(V {
        expecting,
        from_str,
        from_table,
    })
}
