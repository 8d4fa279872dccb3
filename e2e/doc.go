// Package e2e holds the end-to-end tests and drill scenarios of the whole
// federation: the lab in one process, and the multi-process lab in network
// namespaces. Nothing imports it.
package e2e
