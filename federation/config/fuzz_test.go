package config

import (
	"errors"
	"os"
	"testing"
)

// FuzzParse: any input yields a federation or *Error values, never a panic,
// and an accepted federation is valid.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../../examples/federation.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(minimal))
	f.Add([]byte("regions: [{id: JP, pools: [{apn: x, prefix: 10.0.0.0/8}]}]\nnodes: [{name: a, role: witness, gossip: '1.2.3.4:1', raft: 2, address: '::1'}]\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fed, err := Parse("fuzz.yaml", data)
		if err != nil {
			if fed != nil {
				t.Fatal("federation returned with an error")
			}
			for _, e := range unjoin(err) {
				var ce *Error
				if !errors.As(e, &ce) {
					t.Fatalf("error %v (%T) is not a *config.Error", e, e)
				}
			}
			return
		}
		if err := fed.Deployment.Validate(); err != nil {
			t.Fatalf("accepted an invalid federation: %v", err)
		}
	})
}
