//! The built-in backends: the registrations this build's features enable, and the names of
//! every built-in type with the feature that enables it.

use tracker_core::Registration;

/// The registrations of the backends this build's features enable, in a fixed order.
pub(crate) const REGISTRATIONS: &[Registration] = &[
    #[cfg(feature = "memory")]
    tracker_memory::REGISTRATION,
    #[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
    tracker_sql::REGISTRATION,
    #[cfg(feature = "redis")]
    tracker_redis::REGISTRATION,
    #[cfg(feature = "mongo")]
    tracker_mongo::REGISTRATION,
    #[cfg(feature = "dynamo")]
    tracker_dynamo::REGISTRATION,
];

/// A built-in type as documentation and errors name it, whether or not its feature is on.
pub(crate) struct Builtin {
    /// The type name (the registration's `name`).
    pub name: &'static str,
    /// Every name that selects it (the registration's `aliases`).
    pub aliases: &'static [&'static str],
    /// The cargo features of tracker-store that enable it (any one of them).
    pub features: &'static [&'static str],
}

/// Every built-in type. For each enabled feature, a unit test checks these names against the
/// backend's registration.
pub(crate) const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "memory",
        aliases: &["memory", "in_memory", "inmemory", "in-memory"],
        features: &["memory"],
    },
    Builtin {
        name: "sql",
        aliases: &[
            "sql",
            "sqlite",
            "postgres",
            "postgresql",
            "mysql",
            "mariadb",
        ],
        features: &["sqlite", "postgres", "mysql"],
    },
    Builtin {
        name: "redis",
        aliases: &["redis"],
        features: &["redis"],
    },
    Builtin {
        name: "mongod",
        aliases: &["mongod", "mongo", "mongodb"],
        features: &["mongo"],
    },
    Builtin {
        name: "dynamo",
        aliases: &["dynamo", "dynamodb"],
        features: &["dynamo"],
    },
];

/// The built-in type `name` selects (compared case-insensitively), enabled or not.
pub(crate) fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|builtin| {
        builtin
            .aliases
            .iter()
            .any(|alias| alias.eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The static table says what each enabled backend's registration says.
    #[test]
    fn the_table_matches_every_enabled_registration() {
        for registration in REGISTRATIONS {
            let builtin = BUILTINS
                .iter()
                .find(|builtin| builtin.name == registration.name)
                .unwrap_or_else(|| panic!("{} is missing from BUILTINS", registration.name));
            assert_eq!(
                builtin.aliases, registration.aliases,
                "{}",
                registration.name
            );
            assert!(registration.aliases.contains(&registration.name));
        }
        let enabled = [
            cfg!(feature = "memory"),
            cfg!(any(
                feature = "sqlite",
                feature = "postgres",
                feature = "mysql"
            )),
            cfg!(feature = "redis"),
            cfg!(feature = "mongo"),
            cfg!(feature = "dynamo"),
        ];
        let expected = enabled.iter().filter(|on| **on).count();
        assert_eq!(REGISTRATIONS.len(), expected);
    }

    #[test]
    fn aliases_select_their_type_case_insensitively() {
        assert_eq!(builtin("PostgreSQL").map(|b| b.name), Some("sql"));
        assert_eq!(builtin("In_Memory").map(|b| b.name), Some("memory"));
        assert_eq!(builtin("MongoDB").map(|b| b.name), Some("mongod"));
        assert!(builtin("acme.Store").is_none());
    }
}
