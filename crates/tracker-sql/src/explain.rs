//! `EXPLAIN ANALYZE` of a diesel query on PostgreSQL, with the query's own binds.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::Text;

/// Wraps a query in `EXPLAIN (ANALYZE, FORMAT TEXT)`; loads one `String` per plan line.
pub(crate) struct Explain<Q>(pub(crate) Q);

impl<Q> QueryId for Explain<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> Query for Explain<Q> {
    type SqlType = Text;
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Explain<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        out.push_sql("EXPLAIN (ANALYZE, FORMAT TEXT) ");
        self.0.walk_ast(out.reborrow())
    }
}
