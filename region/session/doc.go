// Package session is a node's session table, shared by the PGW and the GGSN:
// sessions by TEID, by IMSI and bearer (EBI or NSAPI), and by UE address;
// TEID allocation with the node id in the top 8 bits (one TEID per session,
// used on both the control and the user plane); IPv4 UE address pools per
// region and APN, with exhaustion reported as ErrPoolExhausted. It installs
// and removes sessions in the breakout through breakout.Tunnels, and sends
// session anchors (AnchorSink, non-blocking) and usage records (interim
// every Config.UsageInterval, and final; its own bounded queue and
// goroutine) to the registry, never on the attach path.
//
// A session costs about 400 octets of heap with the indexes and pools
// (TestMemoryPerSession, at 100,000 sessions).
//
// region/pgw, region/ggsn and region/ import it; sessiontest holds
// in-memory stand-ins of its dependencies for tests only.
package session
