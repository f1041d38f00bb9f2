//! The EventStore port and its adapters: SQLite (embedded default), PostgreSQL, KurrentDB.
