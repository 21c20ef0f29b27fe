//! The queries on the hot path and of the prune read a primary key or an index, on both
//! databases. (Run with `--nocapture` to see the plans.) On PostgreSQL the tables of a test are
//! tiny, so sequential scans are switched off to ask whether an index *can* answer.

use crate::helpers::*;

/// (what, query): the statements of `store.rs`, parameters filled in.
const HOT: &[(&str, &str)] = &[
    ("user by sub", "SELECT * FROM users WHERE sub = 'u'"),
    ("utk binding", "SELECT sub FROM utk_bindings WHERE utk = 't'"),
    ("lease renew/release", "UPDATE leases SET expires_at = 5 WHERE id = 'l' AND sub = 'u' AND released = 0 AND expires_at > 1"),
    ("live leases of a user", "SELECT MAX(expires_at) FROM leases WHERE sub = 'u' AND email <> 'e' AND released = 0 AND expires_at > 1"),
    ("job of a user", "SELECT * FROM outbox WHERE sub = 'u'"),
    ("due jobs (claim)", "SELECT sub FROM outbox WHERE state = 'pending' AND next_at <= 5 AND claimed_until <= 5 ORDER BY next_at LIMIT 50"),
    ("live lease count (/metrics)", "SELECT COUNT(*) FROM leases WHERE expires_at > 5 AND released = 0"),
    ("prune: expired leases", "SELECT id FROM leases WHERE released = 0 AND expires_at < 5 LIMIT 5000"),
    ("prune: old utk bindings", "SELECT utk FROM utk_bindings WHERE at < 5 LIMIT 5000"),
    ("prune: old applied jobs", "SELECT sub FROM outbox WHERE state = 'done' AND updated_at < 5 LIMIT 5000"),
];

fn uses_index(plan: &str) -> bool {
    let p = plan.to_ascii_lowercase();
    p.contains("index") && !p.contains("seq scan")
}

#[tokio::test]
async fn the_hot_path_and_prune_queries_read_an_index_on_sqlite() {
    let db = temp_sqlite();
    let store = hsq_relay::store::open(&db, 2).await.unwrap();
    let c = rusqlite::Connection::open(&db).unwrap();
    for (what, sql) in HOT {
        let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let plan = st.query_map([], |r| r.get::<_, String>(3)).unwrap().map(|r| r.unwrap()).collect::<Vec<_>>().join("; ");
        println!("sqlite   {what:30} {plan}");
        assert!(plan.contains("USING") && (plan.contains("INDEX") || plan.contains("PRIMARY KEY")), "{what}: {plan}");
        // No step scans a table without an index.
        assert!(!plan.split("; ").any(|step| step.starts_with("SCAN") && !step.contains("USING")), "{what}: {plan}");
        if *what == "live leases of a user" {
            assert!(plan.contains("leases_of_user"), "a user's leases, not all live leases: {plan}");
        }
    }
    // The warm path's statement itself (its `$n` parameters unbound): a join where every table
    // is searched by a key, none scanned.
    let sql = hsq_relay::store::WARM_VIEW_SQL.replace('$', "?");
    let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let plan = st.query_map(["u", "l", "t"], |r| r.get::<_, String>(3)).unwrap().map(|r| r.unwrap()).collect::<Vec<_>>();
    println!("sqlite   warm view (identity)           {}", plan.join("; "));
    assert!(plan.iter().all(|step| !step.starts_with("SCAN")), "{plan:?}");
    for table in ["u", "o", "l", "b", "e"] {
        assert!(plan.iter().any(|step| step.starts_with(&format!("SEARCH {table} USING"))), "{table} searched by a key: {plan:?}");
    }
    drop(st);
    drop(store);
    remove_db(&db);
}

#[tokio::test]
async fn the_hot_path_and_prune_queries_read_an_index_on_postgres() {
    let db = crate::pg::fresh_database();
    let _store = hsq_relay::store::open(&db, 2).await.unwrap();
    let (client, conn) = tokio_postgres::connect(&db, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute("SET enable_seqscan = off").await.unwrap();
    for (what, sql) in HOT {
        let rows = client.query(&format!("EXPLAIN {sql}"), &[]).await.unwrap();
        let plan = rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n");
        println!("postgres {what:30} {}", plan.replace('\n', " | "));
        assert!(uses_index(&plan), "{what}: {plan}");
    }
    let rows = client.query(&format!("EXPLAIN {}", hsq_relay::store::WARM_VIEW_SQL), &[&"u", &"l", &"t"]).await.unwrap();
    let plan = rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n");
    println!("postgres warm view (identity)           {}", plan.replace('\n', " | "));
    assert!(uses_index(&plan), "warm view: {plan}");
    for table in ["users_pkey", "outbox_pkey", "leases_pkey", "utk_bindings_pkey", "erased_users_pkey"] {
        assert!(plan.contains(table), "{table} in the plan: {plan}");
    }
}
