//! How a digest groups similar events: one section per group key, with the
//! count, the text they share written once, and what differs between them
//! (a host, an instance, an id) listed after it, each in full.
//!
//! The default key of an event is its headline with the variable words
//! masked: a word with a digit (`db-17`, `97%`, `09:14:17`, an id) or a
//! dotted host name (`api.prod.example.com`). Within a group, the words in
//! the same place in every headline are the shared text; the words that
//! differ are each event's part, and an ellipsis marks where they go.

/// The ellipsis that marks, in a section's shared text, where each event's
/// part goes.
pub const PLACE: &str = "…";

/// `headline` with its variable words masked: the default group key.
pub fn mask(headline: &str) -> String {
    let mut key = String::with_capacity(headline.len());
    for word in headline.split_whitespace() {
        if !key.is_empty() {
            key.push(' ');
        }
        let (lead, core, trail) = split(word);
        if is_variable(core) {
            key.push_str(lead);
            key.push('#');
            key.push_str(trail);
        } else {
            key.push_str(word);
        }
    }
    key
}

/// A word's leading punctuation, its core, its trailing punctuation.
fn split(word: &str) -> (&str, &str, &str) {
    let start = word
        .find(|c: char| c.is_alphanumeric())
        .unwrap_or(word.len());
    let end = word
        .rfind(|c: char| c.is_alphanumeric())
        .map_or(start, |at| {
            at + word[at..].chars().next().map_or(1, char::len_utf8)
        });
    let end = end.max(start);
    // `97%`: the percent sign belongs to the number.
    let end = if word[end..].starts_with('%') {
        end + 1
    } else {
        end
    };
    (&word[..start], &word[start..end], &word[end..])
}

/// A word that varies from one event to the next of its kind.
fn is_variable(core: &str) -> bool {
    if core.chars().any(|c| c.is_ascii_digit()) {
        return true;
    }
    // A dotted host name: `api.prod.example.com`, not `e.g` or `/var/lib`.
    let labels: Vec<&str> = core.split('.').collect();
    labels.len() >= 3
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        })
}

/// The text `texts` share, with [`PLACE`] where they differ, and each one's
/// differing words; `None` when they do not line up word for word (or are
/// all the same).
pub fn differ(texts: &[&str]) -> Option<(String, Vec<String>)> {
    let words: Vec<Vec<&str>> = texts
        .iter()
        .map(|t| t.split_whitespace().collect())
        .collect();
    let first = words.first()?;
    let n = first.len();
    if words.iter().any(|w| w.len() != n) {
        return None;
    }
    let differs: Vec<bool> = (0..n)
        .map(|p| words.iter().any(|w| w[p] != first[p]))
        .collect();
    if !differs.iter().any(|d| *d) {
        return None;
    }
    let mut shared: Vec<String> = Vec::new();
    let mut parts: Vec<Vec<String>> = vec![Vec::new(); words.len()];
    let mut p = 0;
    while p < n {
        if !differs[p] {
            shared.push(first[p].to_owned());
            p += 1;
            continue;
        }
        // A run of differing words, p..q: one place.
        let mut q = p;
        while q + 1 < n && differs[q + 1] {
            q += 1;
        }
        let lead = common(words.iter().map(|w| split(w[p]).0));
        let trail = common(words.iter().map(|w| split(w[q]).2));
        shared.push(format!("{lead}{PLACE}{trail}"));
        for (i, w) in words.iter().enumerate() {
            let run = w[p..=q].join(" ");
            let run = run.strip_prefix(lead).unwrap_or(&run);
            let run = run.strip_suffix(trail).unwrap_or(run);
            parts[i].push(run.to_owned());
        }
        p = q + 1;
    }
    Some((
        shared.join(" "),
        parts.into_iter().map(|p| p.join(" ")).collect(),
    ))
}

/// The value every item has, or empty.
fn common<'a>(mut values: impl Iterator<Item = &'a str>) -> &'a str {
    let Some(first) = values.next() else {
        return "";
    };
    if values.all(|v| v == first) {
        first
    } else {
        ""
    }
}

/// How bad a severity is, for ordering a digest's sections: higher first;
/// 1 for a severity without a known rank, 0 for none.
pub fn rank(severity: Option<&str>) -> u8 {
    match severity {
        None => 0,
        Some(
            "critical" | "crit" | "fatal" | "emergency" | "emerg" | "alert" | "page" | "disaster"
            | "p1" | "sev1",
        ) => 5,
        Some("error" | "err" | "high" | "major" | "p2" | "sev2") => 4,
        Some("warning" | "warn" | "medium" | "average" | "p3" | "sev3") => 3,
        Some("info" | "notice" | "low" | "minor" | "information" | "p4" | "sev4") => 2,
        Some(_) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_words_are_masked() {
        assert_eq!(
            mask("[FIRING] DiskFull on db-17: /var/lib is 97% full"),
            "[FIRING] DiskFull on #: /var/lib is # full"
        );
        assert_eq!(
            mask("api.prod.example.com down since 09:14:17 (id 3f2a9c)"),
            "# down since # (id #)"
        );
        assert_eq!(mask("e.g. /var/lib is full"), "e.g. /var/lib is full");
    }

    #[test]
    fn the_shared_text_is_written_once_and_each_part_in_full() {
        let (shared, parts) = differ(&[
            "[FIRING] DiskFull on db-17: /var/lib is 97% full",
            "[FIRING] DiskFull on db-18: /var/lib is 97% full",
            "[FIRING] DiskFull on db-100: /var/lib is 97% full",
        ])
        .expect("they line up");
        assert_eq!(shared, "[FIRING] DiskFull on …: /var/lib is 97% full");
        assert_eq!(parts, ["db-17", "db-18", "db-100"]);
        let (shared, parts) = differ(&[
            "alert-0001 disk full on host-1",
            "alert-0002 disk full on host-2",
        ])
        .expect("they line up");
        assert_eq!(shared, "… disk full on …");
        assert_eq!(parts, ["alert-0001 host-1", "alert-0002 host-2"]);
        assert_eq!(differ(&["a b", "a b"]), None, "all the same");
        assert_eq!(differ(&["a b", "a b c"]), None, "not in line");
    }

    #[test]
    fn severities_rank_worst_first() {
        assert!(rank(Some("critical")) > rank(Some("warning")));
        assert!(rank(Some("warning")) > rank(Some("info")));
        assert!(rank(Some("whatever")) > rank(None));
    }
}
