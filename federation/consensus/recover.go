package consensus

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/hashicorp/raft"

	"github.com/rendezvous-core/rendezvous/topology"
)

// RecoverConfig configures Recover.
type RecoverConfig struct {
	// ID is this node's ID (it must be in the peers file).
	ID string
	// DataDir is the node's Config.DataDir.
	DataDir string
	// PeersFile is raft's peers.json (ReadConfigJSON format):
	// [{"id":"jp1","address":"127.0.1.1:7947","non_voter":false}, …].
	PeersFile string
	// Regions as in Config (the throw-away FSM needs them).
	Regions []topology.RegionID
	Logger  *slog.Logger
}

// Recover rewrites this node's raft state so that it restarts as a member
// of the configuration in PeersFile: raft.RecoverCluster with a throw-away
// FSM, as Consul, Nomad and Vault do (notes/federation.md §3.6). On success
// PeersFile is renamed to PeersFile+".applied" so that it is not applied
// twice.
//
// It is a human decision that deliberately breaks "a minority cannot
// decide": it implicitly commits every entry in the local log, including
// uncommitted ones. Run it with the node stopped, on every survivor, with
// an identical file; then start them normally (Bootstrap makes no
// difference: they have state). Servers left out of the file must be wiped
// and never restarted with their old data, or two clusters exist
// (RECOVERY.md).
func Recover(cfg RecoverConfig) error {
	if cfg.ID == "" || cfg.DataDir == "" || cfg.PeersFile == "" {
		return errors.New("consensus: recover: ID, DataDir and PeersFile are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	conf, err := raft.ReadConfigJSON(cfg.PeersFile)
	if err != nil {
		return fmt.Errorf("consensus: recover: read %s: %w", cfg.PeersFile, err)
	}
	found := false
	for _, s := range conf.Servers {
		found = found || string(s.ID) == cfg.ID
	}
	if !found {
		return fmt.Errorf("consensus: recover: %s is not in %s; a server left out must be wiped, not recovered", cfg.ID, cfg.PeersFile)
	}
	hcl := newHCLogger(cfg.Logger.With("component", "consensus", "node", cfg.ID), "raft")
	logs, stable, snaps, w, err := openStores(cfg.DataDir, 3, hcl)
	if err != nil {
		return err
	}
	defer w.Close()
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = hcl
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	if err := raft.RecoverCluster(rc, newFSM(cfg.Regions, nil), logs, stable, snaps, trans, conf); err != nil {
		return fmt.Errorf("consensus: recover %s: %w", cfg.ID, err)
	}
	if err := os.Rename(cfg.PeersFile, cfg.PeersFile+".applied"); err != nil {
		return fmt.Errorf("consensus: recovered, but could not retire %s: %w", cfg.PeersFile, err)
	}
	cfg.Logger.Warn("raft configuration recovered from peers file", "node", cfg.ID, "peers", len(conf.Servers))
	return nil
}

// WritePeersFile writes servers in ReadConfigJSON format (for tools and
// tests; operators may write it by hand).
func WritePeersFile(path string, servers []Server) error {
	type peer struct {
		ID       string `json:"id"`
		Address  string `json:"address"`
		NonVoter bool   `json:"non_voter"`
	}
	ps := make([]peer, 0, len(servers))
	for _, s := range servers {
		ps = append(ps, peer{s.ID, s.Address, !s.Voter})
	}
	b, err := jsonMarshalIndent(ps)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("consensus: write peers file: %w", err)
	}
	return nil
}
