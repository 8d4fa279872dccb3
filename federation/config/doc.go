// Package config parses and validates the federation file: one YAML document
// that describes every region, its nodes (core or witness), each node's
// addresses and ports, the UE address pools and IND slice of each region, and
// the peers allowed to talk to it.
//
// Parsing is strict: unknown keys, missing fields, overlapping pools and
// duplicate addresses are errors that name the file, line and field.
// cmd/ and region/ import it; it imports only topology and the YAML library.
package config
