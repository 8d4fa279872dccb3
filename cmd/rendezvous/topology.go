package main

import "github.com/spf13/cobra"

// newTopologyCmd is replaced by the topology owner.
func newTopologyCmd() *cobra.Command {
	return &cobra.Command{Use: "topology", Short: "Inspect the federation's topology"}
}
