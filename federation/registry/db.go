package registry

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"
)

// dialect is what differs between the backends. Everything else — tables,
// statements with $N placeholders, INSERT … ON CONFLICT … RETURNING — is
// one portable SQL layer (notes/registry.md §2.3–2.4).
type dialect int

const (
	dialectSQLite dialect = iota + 1
	dialectPostgres
	dialectCockroach
)

func (d dialect) String() string {
	switch d {
	case dialectSQLite:
		return "sqlite"
	case dialectPostgres:
		return "postgres"
	case dialectCockroach:
		return "cockroachdb"
	}
	return "unknown"
}

// dsnConnector turns a driver and a DSN into a driver.Connector, so that
// tests can wrap it (failure injection).
type dsnConnector struct {
	dsn string
	drv driver.Driver
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.drv }

// openDBs opens the writer and reader handles. SQLite gets one writer
// connection (BEGIN IMMEDIATE: writers queue on the lock instead of failing
// at commit) and a small read pool, both in WAL mode with busy_timeout;
// PostgreSQL/CockroachDB share one pool whose sessions default to
// SERIALIZABLE.
func openDBs(cfg Config) (w, r *sql.DB, d dialect, err error) {
	wrap := func(c driver.Connector) driver.Connector {
		if cfg.wrapConnector != nil {
			return cfg.wrapConnector(c)
		}
		return c
	}
	if path, ok := strings.CutPrefix(cfg.DSN, "sqlite:"); ok {
		q := url.Values{}
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Add("_pragma", "busy_timeout(5000)")
		q.Add("_pragma", "foreign_keys(1)")
		// 32 MiB page cache per connection and memory-mapped reads: a
		// million-subscriber file is ~0.5 GB and point reads are random.
		q.Add("_pragma", "cache_size(-32768)")
		q.Add("_pragma", "mmap_size(1073741824)")
		base := "file:" + path + "?" + q.Encode()
		w = sql.OpenDB(wrap(dsnConnector{dsn: base + "&_txlock=immediate", drv: &sqlite.Driver{}}))
		w.SetMaxOpenConns(1)
		w.SetMaxIdleConns(1)
		w.SetConnMaxLifetime(0)
		w.SetConnMaxIdleTime(0)
		r = sql.OpenDB(wrap(dsnConnector{dsn: base + "&_pragma=query_only(1)", drv: &sqlite.Driver{}}))
		r.SetMaxOpenConns(cfg.MaxConns)
		r.SetMaxIdleConns(cfg.MaxConns)
		return w, r, dialectSQLite, nil
	}
	pc, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx quotes the DSN (with its password) in parse errors: don't.
		return nil, nil, 0, fmt.Errorf("registry: parse postgres DSN: %w", ErrInvalid)
	}
	if pc.RuntimeParams == nil {
		pc.RuntimeParams = map[string]string{}
	}
	// Every transaction SERIALIZABLE, also implicit single-statement ones
	// (PostgreSQL defaults to READ COMMITTED; notes/registry.md §1.2).
	pc.RuntimeParams["default_transaction_isolation"] = "serializable"
	w = sql.OpenDB(wrap(stdlib.GetConnector(*pc)))
	w.SetMaxOpenConns(cfg.MaxConns)
	w.SetMaxIdleConns(cfg.MaxConns)
	w.SetConnMaxIdleTime(5 * time.Minute)
	return w, w, dialectPostgres, nil
}

// Error classes of the retry loop.
const (
	pgSerializationFailure = "40001"
	pgDeadlockDetected     = "40P01"
	crdbRetryLegacy        = "CR000"
	pgUniqueViolation      = "23505"
	pgForeignKeyViolation  = "23503"
	pgCheckViolation       = "23514"
	pgNotNullViolation     = "23502"

	sqliteBusy                 = 5
	sqliteLocked               = 6
	sqliteConstraint           = 19
	sqliteConstraintForeignKey = 787
	sqliteConstraintUnique     = 2067
	sqliteConstraintPrimaryKey = 1555
)

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

// retryable: the transaction lost a serialization race and may simply be
// run again from the start (40001, CRDB's legacy CR000, PG deadlock 40P01,
// SQLITE_BUSY/LOCKED with any extended code).
func retryable(err error) bool {
	switch sqlState(err) {
	case pgSerializationFailure, pgDeadlockDetected, crdbRetryLegacy:
		return true
	}
	c := sqliteCode(err) & 0xff
	return c == sqliteBusy || c == sqliteLocked
}

func isUniqueViolation(err error) bool {
	if sqlState(err) == pgUniqueViolation {
		return true
	}
	c := sqliteCode(err)
	return c == sqliteConstraintUnique || c == sqliteConstraintPrimaryKey
}

func isForeignKeyViolation(err error) bool {
	return sqlState(err) == pgForeignKeyViolation || sqliteCode(err) == sqliteConstraintForeignKey
}

func isConstraintViolation(err error) bool {
	return strings.HasPrefix(sqlState(err), "23") || sqliteCode(err)&0xff == sqliteConstraint
}

// unreachable reports whether err means the database could not be reached
// (as opposed to a statement the database refused): network and connect
// errors, broken connections, SQLSTATE class 08 and 57P (shutdown), SQLite
// IOERR/CANTOPEN/NOTADB, and a deadline spent waiting for the database.
func unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	if s := sqlState(err); s != "" {
		return strings.HasPrefix(s, "08") || strings.HasPrefix(s, "57P")
	}
	if c := sqliteCode(err); c != 0 {
		switch c & 0xff {
		case 10, 14, 26: // SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_NOTADB
			return true
		}
		return false
	}
	var ne net.Error
	var ce *pgconn.ConnectError
	return errors.As(err, &ne) || errors.As(err, &ce) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) ||
		// A connection the server or a network cut closed under us ("conn
		// closed"): pgx marks it safe to retry because nothing was sent.
		pgconn.SafeToRetry(err)
}

// retry runs fn until it succeeds, fails with a non-retryable error, or
// MaxRetries is spent, with jittered exponential backoff (1 ms doubling to
// 100 ms, full jitter). fn must be the whole transaction.
func (s *Store) retry(ctx context.Context, op string, fn func() error) error {
	backoff := time.Millisecond
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil {
			s.markUp()
			return nil
		}
		if !retryable(err) || attempt >= s.cfg.MaxRetries {
			if unreachable(err) {
				s.markDown(err)
				return fmt.Errorf("registry: %s: %w (%w)", op, ErrUnavailable, err)
			}
			s.markUp() // the database answered
			if retryable(err) {
				return fmt.Errorf("registry: %s: gave up after %d attempts: %w", op, attempt+1, err)
			}
			return err
		}
		s.m.txRetries.WithLabelValues(op).Inc()
		t := time.NewTimer(time.Duration(rand.Int64N(int64(backoff)) + 1))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("registry: %s: %w", op, ctx.Err())
		case <-t.C:
		}
		backoff = min(backoff*2, 100*time.Millisecond)
	}
}

// inTx runs fn in a SERIALIZABLE transaction on the writer, retried as a
// whole (never crdb.ExecuteTx: on PostgreSQL it swallows commit-time
// serialization failures, notes/registry.md §1). fn may run several times:
// it must have no side effects outside the transaction.
func (s *Store) inTx(ctx context.Context, op string, fn func(*sql.Tx) error) error {
	return s.retry(ctx, op, func() error {
		tx, err := s.w.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
		if err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			_ = tx.Rollback()
			return err
		}
		return tx.Commit() // commit errors (40001 at COMMIT) are retried, never ignored
	})
}
