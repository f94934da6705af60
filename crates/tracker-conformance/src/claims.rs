//! Checks that a store's documentation states what the store declares.
//!
//! Every backend README has a `## Capabilities` section with this table (values in bytes or
//! counts, `none` for no limit, `yes`/`no` for flags; text after the first number is a
//! comment):
//!
//! ```text
//! | capability | value |
//! |---|---|
//! | max events per append | 99 |
//! | max event size | 400,000 bytes |
//! | max append size | none |
//! | latest-session reads without earlier events | yes |
//! | expiry | no |
//! ```

use tracker_core::Capabilities;

/// The rows of the capability table, in order.
pub const ROWS: [&str; 5] = [
    "max events per append",
    "max event size",
    "max append size",
    "latest-session reads without earlier events",
    "expiry",
];

/// Panics unless `readme` has a capability table stating exactly `capabilities`.
pub fn assert_readme_states_capabilities(readme: &str, capabilities: &Capabilities) {
    let table = capability_table(readme);
    let limits = [
        capabilities.max_events_per_append,
        capabilities.max_event_bytes,
        capabilities.max_append_bytes,
    ];
    for (row, declared) in ROWS.iter().zip(limits) {
        let stated = table_value(&table, row);
        assert_eq!(
            limit(stated),
            declared,
            "the README states {row:?} as {stated:?}; the store declares {declared:?}"
        );
    }
    let flags = [capabilities.native_latest_session, capabilities.expiry];
    for (row, declared) in ROWS[3..].iter().zip(flags) {
        let stated = table_value(&table, row);
        let expected = if declared { "yes" } else { "no" };
        let first_word = stated.split(|c: char| !c.is_ascii_alphanumeric()).next();
        assert!(
            first_word == Some(expected),
            "the README states {row:?} as {stated:?}; the store declares {expected}"
        );
    }
}

/// The `(capability, value)` rows of the table under `## Capabilities`.
fn capability_table(readme: &str) -> Vec<(String, String)> {
    let section = readme
        .split("\n## ")
        .find(|section| section.starts_with("Capabilities"))
        .unwrap_or_else(|| panic!("the README has no `## Capabilities` section"));
    let rows: Vec<(String, String)> = section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().strip_prefix('|')?.split('|').collect();
            let name = cells.first()?.trim().to_ascii_lowercase();
            let value = cells.get(1)?.trim().to_owned();
            ROWS.contains(&name.as_str()).then_some((name, value))
        })
        .collect();
    assert!(
        !rows.is_empty(),
        "the README's `## Capabilities` section has no capability table"
    );
    rows
}

fn table_value<'a>(table: &'a [(String, String)], row: &str) -> &'a str {
    table
        .iter()
        .find(|(name, _)| name == row)
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("the README's capability table has no row {row:?}"))
}

/// `none` → `None`; otherwise the first number (commas allowed) → `Some`.
fn limit(value: &str) -> Option<usize> {
    if value.starts_with("none") {
        return None;
    }
    let digits: String = value
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    Some(
        digits
            .parse()
            .unwrap_or_else(|_| panic!("{value:?} is neither `none` nor a number")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = "# x\n\n## Capabilities\n\n| capability | value |\n|---|---|\n\
        | max events per append | 99 |\n| max event size | 400,000 bytes of JSON |\n\
        | max append size | none |\n| latest-session reads without earlier events | yes |\n\
        | expiry | no |\n\n## Next\n";

    #[test]
    fn a_matching_table_passes() {
        let mut capabilities = Capabilities::new();
        capabilities.max_events_per_append = Some(99);
        capabilities.max_event_bytes = Some(400_000);
        capabilities.native_latest_session = true;
        assert_readme_states_capabilities(README, &capabilities);
    }

    #[test]
    #[should_panic(expected = "max event size")]
    fn a_wrong_limit_fails() {
        let mut capabilities = Capabilities::new();
        capabilities.max_events_per_append = Some(99);
        capabilities.max_event_bytes = Some(1);
        capabilities.native_latest_session = true;
        assert_readme_states_capabilities(README, &capabilities);
    }

    #[test]
    #[should_panic(expected = "expiry")]
    fn a_wrong_flag_fails() {
        let mut capabilities = Capabilities::new();
        capabilities.max_events_per_append = Some(99);
        capabilities.max_event_bytes = Some(400_000);
        capabilities.native_latest_session = true;
        capabilities.expiry = true;
        assert_readme_states_capabilities(README, &capabilities);
    }
}
