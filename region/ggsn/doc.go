// Package ggsn implements the GGSN procedures of Gn/Gp (TS 29.060): Create,
// Update and Delete PDP Context from the SGSN, and the GGSN-initiated Delete
// PDP Context.
//
// Only region/ imports it.
package ggsn
