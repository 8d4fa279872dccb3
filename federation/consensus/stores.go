package consensus

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
)

// openStores opens the raft-wal log and stable store in dir/wal and the
// file snapshot store in dir (raft-boltdb/v2 v2.3.1 does not compile with
// raft v1.8.0, notes/federation.md §3.4).
func openStores(dir string, retain int, hcl hclog.Logger) (raft.LogStore, raft.StableStore, raft.SnapshotStore, *wal.WAL, error) {
	walDir := filepath.Join(dir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("consensus: create %s: %w", walDir, err)
	}
	w, err := wal.Open(walDir, wal.WithLogger(hcl.Named("wal")), wal.WithSegmentSize(8<<20))
	if err != nil {
		return nil, nil, nil, nil, fmt.Errorf("consensus: open raft-wal in %s: %w", walDir, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, retain, hcl.Named("snapshot"))
	if err != nil {
		w.Close()
		return nil, nil, nil, nil, fmt.Errorf("consensus: open snapshot store in %s: %w", dir, err)
	}
	return w, w, snaps, w, nil
}
