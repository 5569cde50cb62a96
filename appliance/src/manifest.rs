//! An image's manifest (`manifest.txt` beside its program disk): the
//! packages with their versions, then every file with its mode, size and
//! SHA-256 (a link with its target), and what one manifest changes of
//! another: the measure of whether a rebuild made the same image.

use std::collections::BTreeMap;

use serde::Serialize;

/// A manifest read into its sections (`# packages`, `# files: ...`, a
/// variant's `# changed by ...`), each entry keyed by what it is of: a
/// package by its name, a file by its path (the line's last field).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Manifest {
    sections: Vec<Section>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Section {
    title: String,
    entries: BTreeMap<String, String>,
}

/// An entry one manifest has and the other has not, or has otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The section's title, as the manifest writes it (`packages`, ...).
    pub section: String,
    /// The package's name or the file's path.
    pub key: String,
    /// The line in the first manifest, if it has one.
    pub before: Option<String>,
    /// The line in the second manifest, if it has one.
    pub after: Option<String>,
}

impl Manifest {
    /// Reads a manifest. Every line is kept: one it cannot key (a blank
    /// line, text before the first section) is keyed by itself.
    pub fn parse(text: &str) -> Manifest {
        let mut sections: Vec<Section> = Vec::new();
        for line in text.lines() {
            if let Some(title) = line.strip_prefix("# ") {
                sections.push(Section {
                    title: title.to_string(),
                    entries: BTreeMap::new(),
                });
                continue;
            }
            if sections.is_empty() {
                sections.push(Section {
                    title: String::new(),
                    entries: BTreeMap::new(),
                });
            }
            let section = sections.last_mut().expect("a section was pushed");
            let key = if section.title.starts_with("packages") {
                line.split_whitespace().next()
            } else {
                line.split_whitespace().last()
            };
            section
                .entries
                .insert(key.unwrap_or(line).to_string(), line.to_string());
        }
        Manifest { sections }
    }

    /// How many packages the image holds.
    pub fn packages(&self) -> usize {
        self.count(|title| title.starts_with("packages"))
    }

    /// How many files and links the image holds (a variant's changed files
    /// are counted once, in its base's list).
    pub fn files(&self) -> usize {
        self.count(|title| title.starts_with("files"))
    }

    fn count(&self, which: impl Fn(&str) -> bool) -> usize {
        self.sections
            .iter()
            .filter(|s| which(&s.title))
            .map(|s| s.entries.len())
            .sum()
    }

    /// What `other` changes of `self`, section by section in the order
    /// `self` has them (then sections only `other` has), entries in order.
    pub fn diff<'a>(&'a self, other: &'a Manifest) -> Vec<Difference> {
        let empty = BTreeMap::new();
        let mut titles: Vec<&str> = self.sections.iter().map(|s| s.title.as_str()).collect();
        for s in &other.sections {
            if !titles.contains(&s.title.as_str()) {
                titles.push(&s.title);
            }
        }
        let mut out = Vec::new();
        for title in titles {
            let entries = |m: &'a Manifest| {
                m.sections
                    .iter()
                    .find(|s| s.title == title)
                    .map_or(&empty, |s| &s.entries)
            };
            let (before, after) = (entries(self), entries(other));
            let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let (b, a) = (before.get(key), after.get(key));
                if b != a {
                    out.push(Difference {
                        section: title.to_string(),
                        key: key.clone(),
                        before: b.cloned(),
                        after: a.cloned(),
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = "# packages\nbase-files 12.4\nbash 5.2.15\n\
        # files: mode size sha256 path\nl - usr/bin ./bin\n644 3 aaaa ./etc/hostname\n755 9 bbbb ./usr/bin/x\n";

    #[test]
    fn counts_packages_and_files() {
        let m = Manifest::parse(FIRST);
        assert_eq!((m.packages(), m.files()), (2, 3));
        assert!(m.diff(&m).is_empty());
    }

    #[test]
    fn a_rebuild_that_differs_names_each_package_and_path() {
        let second = FIRST
            .replace("bash 5.2.15", "bash 5.2.16")
            .replace("644 3 aaaa ./etc/hostname", "644 3 cccc ./etc/hostname")
            .replace("755 9 bbbb ./usr/bin/x\n", "600 1 dddd ./etc/stamp\n");
        let diff = Manifest::parse(FIRST).diff(&Manifest::parse(&second));
        insta::assert_debug_snapshot!(diff);
    }

    #[test]
    fn a_variants_changed_files_are_their_own_section() {
        let variant = format!("{FIRST}# changed by v2\n./etc/cvl/extra.conf\n");
        let (base, variant) = (Manifest::parse(FIRST), Manifest::parse(&variant));
        assert_eq!(variant.files(), 3);
        let diff = base.diff(&variant);
        assert_eq!(diff.len(), 1);
        assert_eq!(diff[0].section, "changed by v2");
        assert_eq!(diff[0].key, "./etc/cvl/extra.conf");
        assert_eq!(diff[0].before, None);
    }
}
