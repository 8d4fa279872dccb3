package consensus

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// walStore is the raft-wal store plus its meta database, which
// (*wal.WAL).Close does not close in v0.4.0: its bolt file lock would
// outlive the node and a reopen in the same process (restart, Recover)
// would block forever in flock.
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

// Close closes the WAL, then its meta database.
func (s *walStore) Close() error {
	err := s.WAL.Close()
	if merr := s.meta.Close(); err == nil {
		err = merr
	}
	return err
}

// openStores opens the raft-wal log and stable store in dir/wal and the
// file snapshot store in dir (raft-boltdb/v2 v2.3.1 does not compile with
// raft v1.8.0, notes/federation.md §3.4).
func openStores(dir string, retain int, hcl hclog.Logger) (raft.LogStore, raft.StableStore, raft.SnapshotStore, *walStore, error) {
	walDir := filepath.Join(dir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, nil, nil, nil, fmt.Errorf("consensus: create %s: %w", walDir, err)
	}
	meta := &metadb.BoltMetaDB{}
	ww, err := wal.Open(walDir, wal.WithLogger(hcl.Named("wal")), wal.WithSegmentSize(8<<20), wal.WithMetaStore(meta))
	if err != nil {
		meta.Close()
		return nil, nil, nil, nil, fmt.Errorf("consensus: open raft-wal in %s: %w", walDir, err)
	}
	w := &walStore{WAL: ww, meta: meta}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, retain, hcl.Named("snapshot"))
	if err != nil {
		w.Close()
		return nil, nil, nil, nil, fmt.Errorf("consensus: open snapshot store in %s: %w", dir, err)
	}
	return w, w, snaps, w, nil
}
