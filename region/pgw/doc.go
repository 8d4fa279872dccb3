// Package pgw implements the PGW-C procedures of S5/S8 (TS 29.274): Create,
// Delete and Modify Bearer/Session from the SGW and the PGW-initiated Delete
// Bearer used by drain and failover.
//
// Only region/ imports it.
package pgw
