package topology

// The MCC table is generated from committed public data, never edited by
// hand; see internal/mccgen/source/README.md for the sources and versions.
//go:generate go run ./internal/mccgen internal/mccgen/source mcc.tsv internal/mccgen/report.txt
