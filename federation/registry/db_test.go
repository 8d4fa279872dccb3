package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	_ "modernc.org/sqlite" // "sqlite" driver for the raw connections below
)

// The retry loop's classification, on real errors where the database can
// produce them (SQLITE_BUSY from a second writer), constructed otherwise.
func TestErrorClassification(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy.db")
	a, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := a.Exec(`CREATE TABLE t (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	tx, err := a.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	_, busy := b.Exec(`INSERT INTO t VALUES (1)`)
	if busy == nil || !retryable(busy) || unreachable(busy) {
		t.Fatalf("second writer: %v (code %d): want a retryable SQLITE_BUSY", busy, sqliteCode(busy))
	}
	if !retryable(fmt.Errorf("registry: x: %w", busy)) {
		t.Fatal("wrapping hides SQLITE_BUSY")
	}
	for code, want := range map[string]bool{"40001": true, "40P01": true, "CR000": true, "23505": false, "40003": false, "42601": false} {
		err := fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: code})
		if retryable(err) != want {
			t.Errorf("retryable(%s) = %v", code, !want)
		}
		if unreachable(err) {
			t.Errorf("unreachable(%s) = true", code)
		}
	}
	for _, err := range []error{errInjectedDown, &pgconn.PgError{Code: "08006"}, &pgconn.PgError{Code: "57P01"}, context.DeadlineExceeded} {
		if !unreachable(err) {
			t.Errorf("unreachable(%v) = false", err)
		}
	}
	for _, err := range []error{context.Canceled, ErrNotFound, errors.New("x")} {
		if unreachable(err) {
			t.Errorf("unreachable(%v) = true", err)
		}
	}
	if !isUniqueViolation(&pgconn.PgError{Code: "23505"}) || !isForeignKeyViolation(&pgconn.PgError{Code: "23503"}) {
		t.Fatal("constraint classification")
	}
}
