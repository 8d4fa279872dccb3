package consensus

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sort"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger routes raft's (and raft-wal's) hclog output into logger: hclog
// writes JSON lines, slogWriter turns each into one slog record with the
// same level, message and fields.
func newHCLogger(logger *slog.Logger, name string) hclog.Logger {
	level := hclog.Info
	if logger.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:        name,
		Level:       level,
		Output:      &slogWriter{logger: logger},
		JSONFormat:  true,
		DisableTime: true,
	})
}

type slogWriter struct{ logger *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(p, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			w.logger.Info(string(line))
			continue
		}
		lvl := slog.LevelInfo
		switch rec["@level"] {
		case "trace", "debug":
			lvl = slog.LevelDebug
		case "warn":
			lvl = slog.LevelWarn
		case "error":
			lvl = slog.LevelError
		}
		msg, _ := rec["@message"].(string)
		attrs := make([]any, 0, 2*len(rec))
		if mod, ok := rec["@module"].(string); ok {
			attrs = append(attrs, "module", mod)
		}
		keys := make([]string, 0, len(rec))
		for k := range rec {
			if len(k) > 0 && k[0] != '@' {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			attrs = append(attrs, k, rec[k])
		}
		w.logger.Log(context.Background(), lvl, msg, attrs...)
	}
	return len(p), nil
}
