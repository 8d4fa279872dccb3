// Package session is a node's session table, shared by the PGW and the GGSN:
// sessions by TEID, by IMSI and bearer, and by UE address; TEID allocation
// with the node id in the high bits; UE address pools per region and APN.
// It installs and removes sessions in the breakout through breakout.Tunnels.
//
// region/pgw, region/ggsn and region/ import it.
package session
