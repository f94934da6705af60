//! A PostgreSQL schema (`schema`, which defaults to `POSTGRESQL_SCHEMA` as in Rasa): the
//! store's table lives in that schema (the connection's `search_path`), whether the database
//! is given as a full URL or by its parts, a mixed-case name is kept, and a schema that does
//! not exist is a `Config` error at connect.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tracker_core::{ErrorKind, Event, ReadScope, SenderId, Store, TrackerStore};
use tracker_sql::{SqlConfig, SqlStore, diesel, diesel_async};
use tracker_testkit::{Service, service_url};

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// The parts of a `postgres://user@host:port/db` URL as Rasa's separate keys.
fn parts(url: &str) -> serde_json::Value {
    let rest = url.split_once("://").expect("a URL").1;
    let rest = rest.split('?').next().unwrap_or_default();
    let (user, rest) = rest.split_once('@').expect("a user in the test URL");
    let (host, db) = rest.split_once('/').expect("a database in the test URL");
    let (user, password) = match user.split_once(':') {
        Some((user, password)) => (user, Some(password)),
        None => (user, None),
    };
    serde_json::json!({
        "dialect": "postgresql", "url": host, "db": db, "username": user, "password": password,
    })
}

async fn rows_in(admin: &mut AsyncPgConnection, schema: &str, sender: &str) -> i64 {
    let found: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM \"{schema}\".events WHERE sender_id = $1"
    ))
    .bind::<diesel::sql_types::Text, _>(sender)
    .get_result(admin)
    .await
    .expect("count the rows in the schema");
    found.n
}

#[tokio::test]
async fn postgresql_schema_holds_the_table() {
    let Some(url) = service_url(Service::Postgres).await else {
        return;
    };
    let url = url.url;
    let mut admin = AsyncPgConnection::establish(&url)
        .await
        .expect("connect to the test server");
    let schema = format!(
        "Tracker Schema {}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    admin
        .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
        .await
        .expect("create the schema");
    let mut by_parts: SqlConfig = serde_json::from_value(parts(&url)).expect("config");
    by_parts.schema = Some(schema.clone());
    let full = SqlConfig {
        schema: Some(schema.clone()),
        ..SqlConfig::from_url(&url)
    };
    for (form, config) in [("full URL", full), ("parts", by_parts)] {
        let sql = SqlStore::connect(&config)
            .await
            .unwrap_or_else(|e| panic!("{form}: connect: {e}"));
        let store = TrackerStore::new(sql.clone());
        let sender = format!("schema-{}", uuid::Uuid::new_v4().simple());
        store
            .append(
                &sender,
                0,
                &[Event::bot(form).at(1.0), Event::bot("two").at(2.0)],
            )
            .await
            .unwrap_or_else(|e| panic!("{form}: append: {e}"));
        assert_eq!(rows_in(&mut admin, &schema, &sender).await, 2, "{form}");
        let read = sql
            .read(&SenderId::new(&sender).expect("id"), ReadScope::All)
            .await
            .expect("read")
            .expect("the conversation");
        assert_eq!(read.version, 2, "{form}");
    }

    // Not the same schema: names are taken literally, not folded to lower case.
    let missing = SqlConfig {
        schema: Some(schema.to_lowercase()),
        ..SqlConfig::from_url(&url)
    };
    let error = SqlStore::connect(&missing)
        .await
        .expect_err("a schema that does not exist");
    assert_eq!(error.kind(), ErrorKind::Config, "{error}");
    assert!(
        error.to_string().contains(&schema.to_lowercase()),
        "{error}"
    );

    admin
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .expect("drop the schema");
}
