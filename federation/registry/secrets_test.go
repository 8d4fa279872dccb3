package registry

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rendezvous-core/rendezvous/topology"
)

// Key rotation through the KEK file: put a new key first, keep the old one
// until Rekey has resealed every row, then drop it.
func TestKEKFileRotation(t *testing.T) {
	eachBackend(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		dir := t.TempDir()
		kekFile := filepath.Join(dir, "kek")
		old := "old1 " + strings.Repeat("1f", 32) + "\n"
		neu := "new2 " + strings.Repeat("2e", 32) + "\n"
		write := func(content string, mode os.FileMode) {
			t.Helper()
			if err := os.WriteFile(kekFile, []byte(content), mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(kekFile, mode); err != nil {
				t.Fatal(err)
			}
		}
		open := func() (*Store, error) {
			return Open(ctx, Config{DSN: dsn, KEKFile: kekFile, Region: topology.US, Registerer: prometheus.NewRegistry()})
		}
		write("# rendezvous KEKs\n"+old, 0o600)
		s, err := open()
		if err != nil {
			t.Fatal(err)
		}
		sub, auth := testSubscriber(900, topology.US)
		if err := s.Provision(ctx, sub, auth); err != nil {
			t.Fatal(err)
		}
		s.Close()

		write(neu+old, 0o600)
		s, err = open()
		if err != nil {
			t.Fatal(err)
		}
		if a, err := s.AuthData(ctx, sub.IMSI); err != nil || a.Ki != auth.Ki {
			t.Fatalf("read under the old KEK after rotation: %v", err)
		}
		if n, err := s.Rekey(ctx, 100); err != nil || n != 1 {
			t.Fatalf("Rekey = %d, %v; want 1", n, err)
		}
		if n, err := s.Rekey(ctx, 100); err != nil || n != 0 {
			t.Fatalf("second Rekey = %d, %v; want 0", n, err)
		}
		s.Close()

		write(neu, 0o600)
		s, err = open()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if a, err := s.AuthData(ctx, sub.IMSI); err != nil || a.Ki != auth.Ki || a.OPc != auth.OPc {
			t.Fatalf("read under the new KEK only: %v", err)
		}
		// A database row copied to another subscriber does not open.
		other, oauth := testSubscriber(901, topology.US)
		if err := s.Provision(ctx, other, oauth); err != nil {
			t.Fatal(err)
		}
		if _, err := s.w.Exec(`UPDATE subscribers SET ki = (SELECT ki FROM subscribers WHERE imsi = $1) WHERE imsi = $2`, string(sub.IMSI), string(other.IMSI)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AuthData(ctx, other.IMSI); !errors.Is(err, errKeyMaterial) {
			t.Fatalf("Ki copied from another row opened: %v", err)
		}

		write(neu, 0o644)
		if _, err := open(); !errors.Is(err, ErrInvalid) {
			t.Fatalf("world-readable KEK file: %v, want ErrInvalid", err)
		}
	})
}
