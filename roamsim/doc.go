// Package roamsim is a visited-network emulator and load generator: for N
// roaming devices spread over many countries it plays the visited side of the
// roaming interfaces against a Rendezvous core (or any HSS/PGW/GGSN):
//
//   - an MME (S6a Diameter client: AIR, ULR, answers CLR/IDR, re-attaches on
//     Reattach-Required) that verifies every authentication vector as a USIM
//     would (Milenage MAC-A, SQN freshness per IND, KASME bound to the visited
//     PLMN, AUTS resynchronisation);
//   - an SGW (S8 GTPv2-C client: Create/Delete Session, Modify Bearer, Echo,
//     T3/N3 retransmission) following the PGW named in the ULA;
//   - an SGSN (Gp GTPv1-C client: Create/Delete PDP Context) for 3G devices;
//   - device traffic (GTP-U carrying ICMP echo or UDP to an internet target)
//     with data round-trip measurement;
//   - a per-device and per-region/country report (JSON or a table).
//
// It is an independent implementation of the peer side, so it cross-checks the
// core: it imports only topology and the protocol libraries (go-diameter,
// go-gtp codecs, milenage) — never region/, federation/ or breakout/.
//
// It is not a conformance tester, not an eNodeB/NAS emulator (no S1-AP, no
// NAS), and it holds no SIM secrets of its own: the caller gives it the keys.
//
// Who may import it: cmd/roamsim, cmd/rendezvous (the lab) and e2e/. Only
// those commands read flags and environment; roamsim takes a Config.
package roamsim
