//! The SQLite every store and read model runs on is built with the query planner stability
//! guarantee (`.cargo/config.toml`). Without it, SQLite treats a statement whose plan read a
//! bound `LIMIT ?` as stale after every rebind and parses its SQL again on each run — most
//! of our reads page with `LIMIT ?`.

#[test]
fn a_statement_with_a_bound_limit_is_prepared_once_however_often_it_is_rebound() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE t (a INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);").unwrap();
    let mut page = conn.prepare("SELECT a FROM t WHERE a > ?1 ORDER BY a LIMIT ?2").unwrap();
    for (after, limit) in [(0, 1), (1, 2), (0, 3), (2, 5)] {
        let rows: Vec<i64> = page.query_map((after, limit), |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(rows, (after + 1..=3).take(limit as usize).collect::<Vec<_>>());
    }
    assert_eq!(page.get_status(rusqlite::StatementStatus::RePrepare), 0, "re-prepared on rebinding");
    let options: Vec<String> = conn
        .prepare("PRAGMA compile_options")
        .unwrap()
        .query_map((), |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(options.iter().any(|o| o == "ENABLE_QPSG"), "{options:?}");
}
