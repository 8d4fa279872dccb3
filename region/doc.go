// Package region is one rendezvous node: the composition root that builds a
// region's HSS, GTP-C endpoint, PGW, GGSN, session table, breakout and
// federation members from the federation file, runs them, and owns every
// goroutine they start.
//
// Only cmd/ and e2e/ import it.
package region
