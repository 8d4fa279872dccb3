// Package registry is the global subscriber registry: the one source of truth
// for subscribers, their authentication data, SQN counters, where they are
// served, their session anchors and usage records. It speaks SQL to
// CockroachDB or PostgreSQL (pgx) and to an embedded SQLite database, with
// SERIALIZABLE transactions retried as a whole, and keeps a per-node
// read-through cache.
//
// region/, federation/consensus and cmd/ import it.
//
// # Tour
//
//   - config.go: Config, its defaults and validation (once, in Open).
//   - store.go: Open/Close, metrics, degraded mode (Degraded, the probe).
//   - db.go: the backends (pgx stdlib; modernc SQLite with one writer
//     connection, BEGIN IMMEDIATE, WAL, busy_timeout) and the
//     whole-transaction retry loop (40001, 40P01, CR000, SQLITE_BUSY; jittered
//     exponential backoff; never crdb.ExecuteTx, notes/registry.md §1).
//   - migrate.go, migrations/*.sql: versioned embedded migrations in portable
//     SQL ($N placeholders, INSERT … ON CONFLICT … RETURNING), one
//     transaction each; crdb.go: the CockroachDB multi-region overlay,
//     generated and applied only when SELECT version() says CockroachDB.
//   - subscribers.go: provisioning (Provision, Update as CAS on Revision,
//     Suspend, Resume, Delete, SetAuthData, Rekey) and the cached reads
//     (Subscriber, AuthData, Invalidate); cache.go: the bounded TTL cache.
//   - secrets.go: Ki/OPc sealed with AES-256-GCM under a KEK (key id per row,
//     row-bound additional data); AuthData redacts itself in fmt and slog.
//   - sqn.go: SQN = SEQ<<5 | IND from the region's IND slice (TS 33.102
//     Annex C), reserved in blocks per (subscriber, region); Resync (AUTS).
//   - serving.go: the Update-Location compare-and-set and the re-homing scan.
//   - anchors.go: batched, bounded session-anchor writes; usage.go: usage
//     records idempotent on (session, sequence).
//   - import.go: streaming CSV / JSON-lines import with per-line errors.
//
// # Consistency
//
// Strong (never cached): SQN issuance, the serving CAS, provisioning writes,
// resync. Bounded staleness: profile and key reads through the cache
// (CacheTTL, revision invalidation via Invalidate and Config.OnChange). When
// the database is unreachable, reads are answered from the cache (any age),
// SQNs from the reserved blocks, and everything else fails with
// ErrUnavailable; Degraded reports the state until the database answers.
package registry
