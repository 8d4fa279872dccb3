// Package registry is the global subscriber registry: the one source of truth
// for subscribers, their authentication data, SQN counters, where they are
// served, their session anchors and usage records. It speaks SQL to
// CockroachDB or PostgreSQL (pgx) and to an embedded SQLite database, with
// SERIALIZABLE transactions retried as a whole, and keeps a per-node
// read-through cache.
//
// region/, federation/consensus and cmd/ import it.
package registry
