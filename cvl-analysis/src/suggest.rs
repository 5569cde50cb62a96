//! "Did you mean": the closest known name to a misspelt one.

/// The candidate closest to `name`, when it is close enough to be a likely
/// typo (edit distance at most a third of the name's length, and at least 1).
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn close_names_only() {
        assert_eq!(
            super::did_you_mean("domian", ["domain", "dns"]),
            Some("domain")
        );
        assert_eq!(super::did_you_mean("xyz", ["domain", "dns"]), None);
        assert_eq!(
            super::did_you_mean("ethernet2", ["ethernet0", "ethernet1"]),
            Some("ethernet0")
        );
    }
}
