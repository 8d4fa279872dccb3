package gtpc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// restartFile is the name of the restart counter file in Config.StateDir.
const restartFile = "gtpc-restart-counter"

// bumpRestartCounter reads the restart counter persisted in dir, increments
// it (modulo 256: the Recovery IE is one octet, TS 29.274 §8.5, TS 29.060
// §7.7.11), writes it back durably and returns the new value. A missing file
// starts at 0.
func bumpRestartCounter(dir string) (uint8, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0, fmt.Errorf("gtpc: state dir: %w", err)
	}
	path := filepath.Join(dir, restartFile)
	next := uint8(0)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		n, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 8)
		if perr != nil {
			return 0, fmt.Errorf("gtpc: restart counter %q in %s: %w", strings.TrimSpace(string(b)), path, perr)
		}
		next = uint8(n) + 1
	case errors.Is(err, fs.ErrNotExist):
	default:
		return 0, fmt.Errorf("gtpc: read restart counter: %w", err)
	}
	tmp, err := os.CreateTemp(dir, restartFile+".*")
	if err != nil {
		return 0, fmt.Errorf("gtpc: write restart counter: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := fmt.Fprintf(tmp, "%d\n", next); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("gtpc: write restart counter: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return 0, fmt.Errorf("gtpc: sync restart counter: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return 0, fmt.Errorf("gtpc: write restart counter: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return 0, fmt.Errorf("gtpc: write restart counter: %w", err)
	}
	return next, nil
}
