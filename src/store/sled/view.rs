//! A write overlay over the sled tree for one commit group. Operations of the group read
//! through it (seeing earlier operations' writes) and write into it; the writer then applies
//! the whole group as **one** `apply_batch` — atomic on disk, and about four times cheaper in
//! CPU than a batch per operation (measured: ~100 µs vs ~25 µs per stored run).
//!
//! A failed operation's writes are rolled back from the overlay via a journal, so the group
//! commits only what succeeded.

use std::collections::BTreeMap;
use std::iter::Peekable;

use super::super::Result;

type Key = Vec<u8>;

pub struct View<'a> {
    tree: &'a sled::Tree,
    pending: BTreeMap<Key, Option<Vec<u8>>>,
    /// Previous pending state of each key written since the last `mark`.
    journal: Vec<(Key, Option<Option<Vec<u8>>>)>,
    /// What the group changes in the parking files ([`super::parking`]), written before the
    /// batch is applied.
    pub parking: super::staged::Changes,
    /// Lengths of `parking`'s lists at the last `mark`.
    parking_mark: (usize, usize, usize),
}

impl<'a> View<'a> {
    pub fn new(tree: &'a sled::Tree) -> Self {
        View {
            tree,
            pending: BTreeMap::new(),
            journal: Vec::new(),
            parking: Default::default(),
            parking_mark: (0, 0, 0),
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.pending.get(key) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.tree.get(key)?.map(|v| v.to_vec())),
        }
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool> {
        match self.pending.get(key) {
            Some(v) => Ok(v.is_some()),
            None => Ok(self.tree.contains_key(key)?),
        }
    }

    pub fn insert(&mut self, key: impl Into<Key>, value: impl Into<Vec<u8>>) {
        self.set(key.into(), Some(value.into()));
    }

    pub fn remove(&mut self, key: impl Into<Key>) {
        self.set(key.into(), None);
    }

    fn set(&mut self, key: Key, value: Option<Vec<u8>>) {
        let prev = self.pending.insert(key.clone(), value);
        self.journal.push((key, prev));
    }

    /// Starts a new operation: its writes can be undone by `rollback`.
    pub fn mark(&mut self) {
        self.journal.clear();
        let p = &self.parking;
        self.parking_mark = (p.parks.len(), p.done.len(), p.segs.len());
    }

    /// Undoes the writes of the current operation.
    pub fn rollback(&mut self) {
        let (parks, done, segs) = self.parking_mark;
        self.parking.parks.truncate(parks);
        self.parking.done.truncate(done);
        self.parking.segs.truncate(segs);
        while let Some((key, prev)) = self.journal.pop() {
            match prev {
                Some(v) => self.pending.insert(key, v),
                None => self.pending.remove(&key),
            };
        }
    }

    /// Entries with `start <= key < end`, in key order, overlay applied.
    pub fn range(
        &self,
        start: &[u8],
        end: &[u8],
    ) -> impl Iterator<Item = Result<(Key, Vec<u8>)>> + use<'_, 'a> {
        Merge {
            tree: self.tree.range(start..end).peekable(),
            pending: self.pending.range(start.to_vec()..end.to_vec()).peekable(),
        }
    }

    /// Entries whose key starts with `prefix`.
    pub fn scan_prefix(&self, prefix: &[u8]) -> impl Iterator<Item = Result<(Key, Vec<u8>)>> + use<'_, 'a> {
        let end = prefix_end(prefix);
        self.range(prefix, &end)
    }

    /// Everything written, as one batch (`None` if nothing was), and the parking changes to
    /// apply once it is committed.
    pub fn into_batch(self) -> (Option<sled::Batch>, super::staged::Changes) {
        if self.pending.is_empty() {
            return (None, self.parking);
        }
        let mut b = sled::Batch::default();
        for (k, v) in self.pending {
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        (Some(b), self.parking)
    }
}

/// The smallest key greater than every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

struct Merge<'p, T: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> {
    tree: Peekable<T>,
    pending: Peekable<std::collections::btree_map::Range<'p, Key, Option<Vec<u8>>>>,
}

impl<T: Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> Iterator for Merge<'_, T> {
    type Item = Result<(Key, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let tree_key = match self.tree.peek() {
                Some(Ok((k, _))) => Some(k.to_vec()),
                Some(Err(_)) => {
                    let Some(Err(e)) = self.tree.next() else {
                        unreachable!()
                    };
                    return Some(Err(e.into()));
                }
                None => None,
            };
            let pending_key = self.pending.peek().map(|(k, _)| (*k).clone());
            match (tree_key, pending_key) {
                (None, None) => return None,
                (Some(t), Some(p)) if p <= t => {
                    if p == t {
                        self.tree.next();
                    }
                    let (k, v) = self.pending.next()?;
                    if let Some(v) = v {
                        return Some(Ok((k.clone(), v.clone())));
                    }
                }
                (None, Some(_)) => {
                    let (k, v) = self.pending.next()?;
                    if let Some(v) = v {
                        return Some(Ok((k.clone(), v.clone())));
                    }
                }
                (Some(_), _) => {
                    let (k, v) = self.tree.next()?.ok()?;
                    return Some(Ok((k.to_vec(), v.to_vec())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_reads_scans_and_rollback() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.insert("a:1", "t1").unwrap();
        db.insert("a:3", "t3").unwrap();
        db.insert("b:1", "tb").unwrap();
        let mut v = View::new(&db);
        v.insert("a:2".as_bytes(), "p2");
        v.remove("a:3".as_bytes());
        v.insert("a:4".as_bytes(), "p4");
        let got: Vec<(String, String)> = v
            .scan_prefix(b"a:")
            .map(|r| r.unwrap())
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                ("a:1".into(), "t1".into()),
                ("a:2".into(), "p2".into()),
                ("a:4".into(), "p4".into())
            ]
        );
        assert!(!v.contains(b"a:3").unwrap());
        assert_eq!(v.get(b"a:1").unwrap().unwrap(), b"t1");

        v.mark();
        v.insert("a:1".as_bytes(), "changed");
        v.remove("a:2".as_bytes());
        v.rollback();
        assert_eq!(v.get(b"a:1").unwrap().unwrap(), b"t1");
        assert_eq!(v.get(b"a:2").unwrap().unwrap(), b"p2");

        db.apply_batch(v.into_batch().0.unwrap()).unwrap();
        assert_eq!(db.get("a:2").unwrap().unwrap(), "p2");
        assert!(db.get("a:3").unwrap().is_none());
        assert_eq!(prefix_end(b"a:"), b"a;");
    }
}
