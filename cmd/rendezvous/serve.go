package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/rendezvous-core/rendezvous/federation/config"
	"github.com/rendezvous-core/rendezvous/region"
)

type serveFlags struct {
	config, node, stateDir, registry, kekFile string
	apiTokenFile, gossipKeyFile               string
	natInterface                              string
	dns                                       []string
	rehomeRate                                float64
	logLevel                                  string
}

func newServeCmd() *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve --config FILE --node NAME",
		Short: "Run one node of the federation",
		Long: `Run one node of the federation described by the federation file.

The operator API token is read from --api-token-file or $RDV_API_TOKEN, the
gossip key (hex, 16/24/32 bytes) from --gossip-key-file or $RDV_GOSSIP_KEY.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServe(cmd.Context(), f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "federation file (YAML) (required)")
	fl.StringVar(&f.node, "node", "", "this node's name in the federation file (required)")
	fl.StringVar(&f.stateDir, "state-dir", "", "durable state: raft log, GTP restart counter (default /var/lib/rendezvous/NODE)")
	fl.StringVar(&f.registry, "registry", "", `registry DSN: "postgres://…" or "sqlite:PATH" (default sqlite in the state dir)`)
	fl.StringVar(&f.kekFile, "kek-file", "", "key-encryption keys of Ki/OPc at rest, lines of \"KEYID HEX64\" (required on core nodes)")
	fl.StringVar(&f.apiTokenFile, "api-token-file", "", "file holding the operator API bearer token")
	fl.StringVar(&f.gossipKeyFile, "gossip-key-file", "", "file holding the gossip encryption key in hex")
	fl.StringVar(&f.natInterface, "nat-interface", "", "internet-facing interface for source NAT of UE traffic")
	fl.StringSliceVar(&f.dns, "dns", nil, "DNS servers handed to devices (PCO)")
	fl.Float64Var(&f.rehomeRate, "rehome-rate", 20, "devices per second moved off a failed or draining region")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	_ = cmd.MarkFlagRequired("config")
	_ = cmd.MarkFlagRequired("node")
	return cmd
}

func runServe(ctx context.Context, f *serveFlags) error {
	log, err := newLogger(f.logLevel)
	if err != nil {
		return usageError{err}
	}
	fed, err := config.Load(f.config)
	if err != nil {
		return usageError{err}
	}
	self, err := fed.Node(f.node)
	if err != nil {
		return usageError{err}
	}
	stateDir := f.stateDir
	if stateDir == "" {
		stateDir = "/var/lib/rendezvous/" + self.Name
	}
	dsn := f.registry
	if dsn == "" {
		dsn = "sqlite:" + stateDir + "/registry.db"
	}
	token, err := secretFrom(f.apiTokenFile, "RDV_API_TOKEN")
	if err != nil {
		return usageError{fmt.Errorf("operator API token: %w", err)}
	}
	if token == "" {
		return usageError{errors.New("operator API token: give --api-token-file or RDV_API_TOKEN")}
	}
	var gossipKey []byte
	if k, err := secretFrom(f.gossipKeyFile, "RDV_GOSSIP_KEY"); err != nil {
		return usageError{fmt.Errorf("gossip key: %w", err)}
	} else if k != "" {
		if gossipKey, err = hex.DecodeString(k); err != nil {
			return usageError{fmt.Errorf("gossip key: not hex: %w", err)}
		}
	} else {
		log.Warn("gossip is not encrypted: give --gossip-key-file or RDV_GOSSIP_KEY")
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	node, err := region.New(ctx, region.Config{
		Federation:   fed,
		Node:         self.Name,
		StateDir:     stateDir,
		RegistryDSN:  dsn,
		KEKFile:      f.kekFile,
		GossipKey:    gossipKey,
		APIToken:     token,
		LeaveOnClose: true,
		Breakout:     region.BreakoutConfig{NATInterface: f.natInterface},
		RehomeRate:   f.rehomeRate,
		DNS:          f.dns,
		Version:      version,
		Logger:       log,
	})
	if err != nil {
		return err
	}
	log.Info("serving; stop with SIGINT or SIGTERM", "node", self.Name, "api", node.APIAddr())
	<-ctx.Done()
	log.Info("stopping")
	return node.Close()
}

// secretFrom reads a secret from a file (trimmed) or, without a file, from
// an environment variable.
func secretFrom(file, env string) (string, error) {
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(data)), nil
	}
	return os.Getenv(env), nil
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
