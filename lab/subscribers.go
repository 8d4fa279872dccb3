package lab

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/rendezvous-core/rendezvous/topology"
)

// LabPLMN is the home PLMN of generated subscribers: MCC 901 (international,
// ITU-T E.212 shared code) with MNC 70, so no real operator's IMSIs are used.
const LabPLMN = "90170"

// GenerateSubscribers writes n subscribers with random keys to path, in the
// lab's CSV format (imsi,msisdn,ki,opc,amf,apn,home_region), their home
// regions spread evenly over the four regions.
func GenerateSubscribers(path string, n int) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("lab: subscribers: %w", err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "imsi,msisdn,ki,opc,amf,apn,home_region")
	regions := topology.Regions()
	key := make([]byte, 32)
	for i := 0; i < n; i++ {
		if _, err := rand.Read(key); err != nil {
			f.Close()
			return err
		}
		// IMSI: MCC 901 MNC 70 + a 10-digit MSIN.
		fmt.Fprintf(w, "%s%010d,8823%08d,%s,%s,8000,internet,%s\n", LabPLMN, i+1, i+1,
			hex.EncodeToString(key[:16]), hex.EncodeToString(key[16:]), regions[i%len(regions)].ID)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
