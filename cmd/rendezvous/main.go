// Command rendezvous runs a Rendezvous node (serve), the whole federation on
// one machine (lab), and answers questions about the topology.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitUsage is the exit code for bad flags, arguments or configuration.
const exitUsage = 2

// usageError marks an error as the caller's (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	root := &cobra.Command{
		Use:           "rendezvous",
		Short:         "Rendezvous: a multi-region rendezvous / local-breakout core for roaming IoT SIMs",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newLabCmd(), newLabChildCmd(), newTopologyCmd(), newVersionCmd())
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "rendezvous:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(exitUsage)
		}
		os.Exit(1)
	}
}
