// Package interop holds the breakout's interoperability tests with
// independent peers that need the real control plane: osmo-ggsn's sgsnemu
// attaching through region/ggsn and pinging through the breakout. It has no
// production code and nothing may import it; it is a separate package so
// that breakout's own tests do not depend on region/ compiling, and it may
// move to e2e/ as is.
package interop
