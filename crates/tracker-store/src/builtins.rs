//! The built-in backends: the registrations this build's features enable, and the names of
//! every built-in type with the feature that enables it.

use tracker_core::Registration;
use tracker_core::broker::BrokerRegistration;

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

/// The registrations of the event brokers this crate's features enable (the RabbitMQ, Kafka
/// and SQL brokers each under their feature; the file broker with any broker feature), in a
/// fixed order. A broker compiled into `tracker-broker` for another crate of the build is not
/// included unless its feature of this crate is on.
pub(crate) fn broker_registrations() -> Vec<BrokerRegistration> {
    #[cfg(any(
        feature = "broker-rabbitmq",
        feature = "broker-kafka",
        feature = "broker-sql",
        feature = "broker-file"
    ))]
    {
        // Each broker under its own feature; the file broker with any of them.
        const FEATURES: &[(&str, bool)] = &[
            ("pika", cfg!(feature = "broker-rabbitmq")),
            ("kafka", cfg!(feature = "broker-kafka")),
            ("sql", cfg!(feature = "broker-sql")),
        ];
        let enabled = |name: &str| {
            FEATURES
                .iter()
                .find(|(broker, _)| *broker == name)
                .is_none_or(|(_, on)| *on)
        };
        tracker_broker::REGISTRATIONS
            .iter()
            .filter(|registration| enabled(registration.name))
            .copied()
            .collect()
    }
    #[cfg(not(any(
        feature = "broker-rabbitmq",
        feature = "broker-kafka",
        feature = "broker-sql",
        feature = "broker-file"
    )))]
    {
        Vec::new()
    }
}

/// Every built-in event broker type, enabled or not.
pub(crate) const BROKER_BUILTINS: &[Builtin] = &[
    Builtin {
        name: "pika",
        aliases: &["pika"],
        features: &["broker-rabbitmq"],
    },
    Builtin {
        name: "kafka",
        aliases: &["kafka"],
        features: &["broker-kafka"],
    },
    Builtin {
        name: "sql",
        aliases: &["sql"],
        features: &["broker-sql"],
    },
    Builtin {
        name: "file",
        aliases: &["file"],
        features: &["broker-file"],
    },
];

/// The built-in event broker type `name` selects (`None`: RabbitMQ), enabled or not.
pub(crate) fn broker_builtin(name: Option<&str>) -> Option<&'static Builtin> {
    let name = name.unwrap_or("pika");
    BROKER_BUILTINS.iter().find(|builtin| {
        builtin
            .aliases
            .iter()
            .any(|alias| alias.eq_ignore_ascii_case(name))
    })
}

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

    /// The broker table says what each enabled broker's registration says.
    #[test]
    fn the_broker_table_matches_every_enabled_registration() {
        let registrations = broker_registrations();
        for registration in &registrations {
            let builtin = broker_builtin(Some(registration.name))
                .unwrap_or_else(|| panic!("{} is missing from BROKER_BUILTINS", registration.name));
            assert_eq!(builtin.name, registration.name);
            assert_eq!(builtin.aliases, registration.aliases);
            assert_eq!(registration.default, registration.name == "pika");
        }
        let enabled = [
            cfg!(feature = "broker-rabbitmq"),
            cfg!(feature = "broker-kafka"),
            cfg!(feature = "broker-sql"),
            cfg!(any(
                feature = "broker-rabbitmq",
                feature = "broker-kafka",
                feature = "broker-sql",
                feature = "broker-file"
            )),
        ];
        let expected = enabled.iter().filter(|on| **on).count();
        assert_eq!(registrations.len(), expected);
        assert_eq!(broker_builtin(None).map(|b| b.name), Some("pika"));
        assert_eq!(broker_builtin(Some("KAFKA")).map(|b| b.name), Some("kafka"));
    }

    #[test]
    fn aliases_select_their_type_case_insensitively() {
        assert_eq!(builtin("PostgreSQL").map(|b| b.name), Some("sql"));
        assert_eq!(builtin("In_Memory").map(|b| b.name), Some("memory"));
        assert_eq!(builtin("MongoDB").map(|b| b.name), Some("mongod"));
        assert!(builtin("acme.Store").is_none());
    }
}
