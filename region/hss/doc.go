// Package hss is the S6a/S6d HSS every region runs (TS 29.272): a Diameter
// node (RFC 6733) built on go-diameter's codec, Milenage authentication
// vectors, Update Location with the steered region's PGW, and the
// HSS-initiated Cancel Location and Insert Subscriber Data the federation uses
// to re-home devices.
//
// Only region/ (and tests) import it.
package hss
