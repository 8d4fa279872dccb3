// Package hss is the S6a/S6d HSS every region runs (TS 29.272): a Diameter
// node (RFC 6733) built on go-diameter's codec, Milenage authentication
// vectors, Update Location with the steered region's PGW, and the
// HSS-initiated Cancel Location and Insert Subscriber Data the federation uses
// to re-home devices.
//
// New(Config) binds, serves and owns every goroutine; Close stops and waits.
// The transport is ours, not go-diameter's diam.Server: we read the Diameter
// header before the library sees a byte (a length under 20 would make it
// allocate 4 GiB; an unknown command would make it close the connection
// instead of answering 3001), then decode each complete frame with
// go-diameter (dict.Default, read-only) under recover. Base protocol
// messages (CER/CEA, DWR/DWA, DPR/DPA) are handled on the connection's
// reader, so the watchdog never waits behind application requests; AIR,
// ULR, PUR and NOR run on at most Config.MaxInFlight goroutines, beyond
// which requests get 3004 DIAMETER_TOO_BUSY. Notes: notes/diameter.md.
//
// Not here: SCTP (TCP only), TLS, Diameter relaying/realm routing (an MME
// behind a DEA is reached over the DEA's connection), S6a NIDD/CIoT AVPs.
// The subscriber registry (Subscribers) and the steering decision
// (Steerer) are interfaces this package consumes.
//
// Only region/ (and tests) import it.
package hss
