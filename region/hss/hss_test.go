package hss

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fiorix/go-diameter/v4/diam"
	"github.com/fiorix/go-diameter/v4/diam/avp"
	"github.com/fiorix/go-diameter/v4/diam/datatype"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rendezvous-core/rendezvous/federation/registry"
	"github.com/rendezvous-core/rendezvous/topology"
)

func expectResult(t *testing.T, a *diam.Message, code uint32, exp bool) {
	t.Helper()
	got, gotExp := answerResult(a)
	if got != code || gotExp != exp {
		t.Fatalf("answer %d: result %d (experimental %v), want %d (experimental %v)\n%s",
			a.Header.CommandCode, got, gotExp, code, exp, a)
	}
}

// TestAIRVectorsAsUSIM: every vector of every AIA passes a USIM's checks
// (MAC-A, SQN fresh per IND, RES = XRES) and KASME recomputed with the
// visited PLMN; the AMF separation bit is set; IND is JP's slice (0–7).
func TestAIRVectorsAsUSIM(t *testing.T) {
	st := openStore(t)
	sub, u := provision(t, st, nil)
	reg := prometheus.NewRegistry()
	s := startHSS(t, st, func(c *Config) { c.Registerer = reg })
	mme := dialMME(t, s.Addrs()[0], "mme1.visited.example")
	visited := plmnOf("26201")
	bcd := visited.BCD()
	total := 0
	for _, n := range []int{1, 3, 5, 9} {
		a := mme.roundTrip(mme.air(sub.IMSI, visited, n, nil))
		expectResult(t, a, codeSuccess, false)
		if sid, _ := text(find(a.AVP, avp.SessionID)); sid == "" {
			t.Fatal("AIA without Session-Id")
		}
		vs := eutranVectors(a)
		want := min(n, 5)
		if len(vs) != want {
			t.Fatalf("asked %d vectors, got %d", n, len(vs))
		}
		for i, v := range vs {
			if v.autn[6]&0x80 == 0 {
				t.Fatalf("vector %d: AMF %x without the separation bit", i, v.autn[6:8])
			}
			res, ck, ik, _, err := u.authenticate(v.rand, v.autn)
			if err != nil {
				t.Fatalf("vector %d: %v", i, err)
			}
			if !bytes.Equal(res, v.xres) {
				t.Fatalf("vector %d: RES %x != XRES %x", i, res, v.xres)
			}
			if k := kasmeRef(ck, ik, bcd, v.autn); !bytes.Equal(k, v.kasme) {
				t.Fatalf("vector %d: KASME mismatch", i)
			}
			total++
		}
	}
	for ind := range u.inds {
		if ind > 7 {
			t.Fatalf("IND %d outside JP's slice 0-7", ind)
		}
	}
	if total != 1+3+5+5 {
		t.Fatalf("%d vectors", total)
	}
	// Metrics land on the given registry, per command and result.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var airs float64
	for _, mf := range mfs {
		if mf.GetName() != "rdv_hss_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["command"] == "AIR" && labels["result"] == "2001" {
				airs = m.GetCounter().GetValue()
			}
		}
	}
	if airs != 4 {
		t.Fatalf("rdv_hss_requests_total{command=AIR,result=2001} = %v, want 4", airs)
	}
}

// TestAIRResync: a USIM that has seen higher SQNs rejects the vector with
// AUTS; the AIR with Re-Synchronization-Info yields vectors it accepts.
func TestAIRResync(t *testing.T) {
	st := openStore(t)
	sub, u := provision(t, st, nil)
	// The USIM has accepted SEQ 5000 in every IND (e.g. from another HSS).
	for i := range u.seqMS {
		u.seqMS[i] = 5000
	}
	u.highest = 5000<<5 | 3
	s := startHSS(t, st, nil)
	mme := dialMME(t, s.Addrs()[0], "mme1.visited.example")
	visited := plmnOf("44010")
	a := mme.roundTrip(mme.air(sub.IMSI, visited, 1, nil))
	expectResult(t, a, codeSuccess, false)
	v := eutranVectors(a)[0]
	_, _, _, auts, err := u.authenticate(v.rand, v.autn)
	if !errors.Is(err, errSyncFailure) {
		t.Fatalf("stale vector accepted: %v", err)
	}
	// A forged AUTS is refused (TS 33.102 §6.3.5: SQN_HE not reset).
	bad := append(append([]byte{}, v.rand...), auts...)
	bad[29] ^= 1
	a = mme.roundTrip(mme.air(sub.IMSI, visited, 1, bad))
	expectResult(t, a, expAuthDataUnavailable, true)

	rs := append(append([]byte{}, v.rand...), auts...)
	a = mme.roundTrip(mme.air(sub.IMSI, visited, 2, rs))
	expectResult(t, a, codeSuccess, false)
	vs := eutranVectors(a)
	if len(vs) != 2 {
		t.Fatalf("%d vectors after resync", len(vs))
	}
	bcd := visited.BCD()
	for i, v := range vs {
		res, ck, ik, _, err := u.authenticate(v.rand, v.autn)
		if err != nil {
			t.Fatalf("vector %d after resync: %v", i, err)
		}
		if !bytes.Equal(res, v.xres) || !bytes.Equal(kasmeRef(ck, ik, bcd, v.autn), v.kasme) {
			t.Fatalf("vector %d after resync: XRES or KASME wrong", i)
		}
	}
}

// TestAIRS6dQuintuplets: a Requested-UTRAN-GERAN-Authentication-Info gets
// UTRAN vectors (CK, IK) without the AMF separation bit, valid for a USIM.
func TestAIRS6dQuintuplets(t *testing.T) {
	st := openStore(t)
	sub, u := provision(t, st, nil)
	s := startHSS(t, st, nil)
	mme := dialMME(t, s.Addrs()[0], "sgsn1.visited.example")
	m := mme.newReq(cmdAIR, sub.IMSI)
	bcd := plmnOf("72405").BCD()
	m.NewAVP(avp.VisitedPLMNID, fV, vendor3GPP, datatype.OctetString(bcd[:]))
	m.NewAVP(avp.RequestedUTRANGERANAuthenticationInfo, fV, vendor3GPP, &diam.GroupedAVP{AVP: []*diam.AVP{
		diam.NewAVP(avp.NumberOfRequestedVectors, fV, vendor3GPP, datatype.Unsigned32(2)),
		diam.NewAVP(avp.ImmediateResponsePreferred, fV, vendor3GPP, datatype.Unsigned32(0)),
	}})
	a := mme.roundTrip(m)
	expectResult(t, a, codeSuccess, false)
	vs := eutranVectors(a)
	if len(vs) != 2 {
		t.Fatalf("%d quintuplets", len(vs))
	}
	for i, v := range vs {
		if v.autn[6]&0x80 != 0 {
			t.Fatalf("quintuplet %d has the EPS separation bit", i)
		}
		res, ck, ik, _, err := u.authenticate(v.rand, v.autn)
		if err != nil {
			t.Fatalf("quintuplet %d: %v", i, err)
		}
		if !bytes.Equal(res, v.xres) || !bytes.Equal(ck, v.ck) || !bytes.Equal(ik, v.ik) {
			t.Fatalf("quintuplet %d: XRES/CK/IK wrong", i)
		}
	}
}

// TestULRSteersToNearestPGW: for visited PLMNs on every continent the ULA's
// MIP6-Agent-Info names the PGW of topology.Rank's first region, with
// STATIC allocation and NOTALLOWED, and the serving row records it.
func TestULRSteersToNearestPGW(t *testing.T) {
	st := openStore(t)
	s := startHSS(t, st, nil)
	mme := dialMME(t, s.Addrs()[0], "mme1.visited.example")
	for _, plmn := range []string{
		"310260", "302720", "334020", // North America
		"72405", "722070", // South America
		"26201", "20801", "23415", "25001", // Europe
		"65501", "62130", "60201", // Africa
		"40410", "46000", "44010", "45005", "51010", "42402", // Asia
		"50501", "53001", // Oceania
	} {
		visited := plmnOf(plmn)
		ranked, err := topology.Rank(visited.MCC)
		if err != nil {
			t.Fatalf("Rank(%s): %v", visited.MCC, err)
		}
		want := ranked[0].Region
		sub, _ := provision(t, st, nil)
		a := mme.roundTrip(mme.ulr(sub.IMSI, visited, ulrS6aIndicator|ulrInitialAttach, 1004))
		expectResult(t, a, codeSuccess, false)
		apns := apnPGWs(a)
		if len(apns) != len(sub.APNs) {
			t.Fatalf("%s: %d APN configurations, want %d", plmn, len(apns), len(sub.APNs))
		}
		for i, ap := range apns {
			if ap.apn != sub.APNs[i].Name || ap.host != testPGWs[want].Host || ap.addr != testPGWs[want].Addr ||
				!ap.allocStatic || !ap.vplmnNotAllowed || ap.realm == "" {
				t.Fatalf("%s: APN %d = %+v, want %s at %s/%v", plmn, i, ap, sub.APNs[i].Name, testPGWs[want].Host, testPGWs[want].Addr)
			}
		}
		sd := children(find(a.AVP, avp.SubscriptionData), appS6a)
		if msisdn, _ := octets(find(sd, avp.MSISDN)); decodeTBCD(msisdn) != sub.MSISDN {
			t.Fatalf("MSISDN TBCD % x, want %s", msisdn, sub.MSISDN)
		}
		sv, err := st.Serving(context.Background(), sub.IMSI)
		if err != nil || sv.Region != want || sv.MMEHost != "mme1.visited.example" || sv.VisitedPLMN != visited {
			t.Fatalf("%s: serving row %+v, %v; want region %s", plmn, sv, err, want)
		}
		t.Logf("%s (MCC %s) → %s", plmn, visited.MCC, want)
	}
}

// TestULRSkipSubscriberDataAndHealth: ULR-Flags Skip-Subscriber-Data gives a
// ULA without Subscription-Data; an unhealthy nearest region is skipped.
func TestULRSkipSubscriberDataAndHealth(t *testing.T) {
	st := openStore(t)
	s := startHSS(t, st, func(c *Config) {
		c.Steering = NearestSteerer{Healthy: func(r topology.RegionID) bool { return r != topology.DE }}
	})
	mme := dialMME(t, s.Addrs()[0], "mme1.visited.example")
	sub, _ := provision(t, st, nil)
	a := mme.roundTrip(mme.ulr(sub.IMSI, plmnOf("26201"), ulrS6aIndicator|ulrSkipSubscriberData, 1004))
	expectResult(t, a, codeSuccess, false)
	if find(a.AVP, avp.SubscriptionData) != nil {
		t.Fatal("Subscription-Data despite Skip-Subscriber-Data")
	}
	a = mme.roundTrip(mme.ulr(sub.IMSI, plmnOf("26201"), ulrS6aIndicator, 1004))
	ranked, _ := topology.Rank("262")
	want := ranked[1].Region
	if got := apnPGWs(a)[0].host; got != testPGWs[want].Host {
		t.Fatalf("DE unhealthy: got %s, want %s", got, testPGWs[want].Host)
	}
}

// TestULRNewMMECancelsOld: the previous MME gets a CLR with
// MME_UPDATE_PROCEDURE, or INITIAL_ATTACH_PROCEDURE when the new ULR had
// the Initial-Attach-Indicator (TS 29.272 §5.2.1.1.3).
func TestULRNewMMECancelsOld(t *testing.T) {
	st := openStore(t)
	s := startHSS(t, st, nil)
	a1 := dialMME(t, s.Addrs()[0], "mme-a.visited.example")
	b1 := dialMME(t, s.Addrs()[0], "mme-b.visited.example")
	sub, _ := provision(t, st, nil)
	visited := plmnOf("20801")
	expectResult(t, a1.roundTrip(a1.ulr(sub.IMSI, visited, ulrS6aIndicator|ulrInitialAttach, 1004)), codeSuccess, false)
	expectResult(t, b1.roundTrip(b1.ulr(sub.IMSI, visited, ulrS6aIndicator, 1004)), codeSuccess, false)
	clr := a1.waitRequest(cmdCLR)
	checkCLR(t, clr, sub.IMSI, "mme-a.visited.example", MMEUpdateProcedure, false)
	expectResult(t, a1.roundTrip(a1.ulr(sub.IMSI, visited, ulrS6aIndicator|ulrInitialAttach, 1004)), codeSuccess, false)
	clr = b1.waitRequest(cmdCLR)
	checkCLR(t, clr, sub.IMSI, "mme-b.visited.example", InitialAttachProcedure, false)
	if got := s.ConnectedPeers(); len(got) != 2 || got[0] != "mme-a.visited.example" || got[1] != "mme-b.visited.example" {
		t.Fatalf("ConnectedPeers = %v", got)
	}
}

func checkCLR(t *testing.T, m *diam.Message, imsi topology.IMSI, dest string, ct CancellationType, reattach bool) {
	t.Helper()
	if u, _ := text(find(m.AVP, avp.UserName)); u != string(imsi) {
		t.Fatalf("CLR User-Name %q", u)
	}
	if d, _ := text(find(m.AVP, avp.DestinationHost)); d != dest {
		t.Fatalf("CLR Destination-Host %q, want %q", d, dest)
	}
	if v, _ := u32(find(m.AVP, avp.CancellationType)); v != uint32(ct) {
		t.Fatalf("Cancellation-Type %d, want %d", v, ct)
	}
	f, _ := u32(find(m.AVP, avpCLRFlags))
	if (f&clrReattachRequire != 0) != reattach || f&clrS6aIndicator == 0 {
		t.Fatalf("CLR-Flags %b", f)
	}
}

// TestCancelLocation: the federation's re-homing call reaches the serving
// MME (CLR SUBSCRIPTION_WITHDRAWAL + Reattach-Required); retransmits with
// the T flag when unanswered; ErrNoPeer / ErrNotRegistered otherwise.
func TestCancelLocation(t *testing.T) {
	st := openStore(t)
	s := startHSS(t, st, func(c *Config) {
		c.RequestTimeout = 300 * time.Millisecond
		c.RequestRetries = 1
	})
	mme := dialMME(t, s.Addrs()[0], "mme1.visited.example")
	sub, _ := provision(t, st, nil)
	ctx := context.Background()
	if err := s.CancelLocation(ctx, sub.IMSI, SubscriptionWithdrawal, true); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("unregistered: %v", err)
	}
	expectResult(t, mme.roundTrip(mme.ulr(sub.IMSI, plmnOf("50501"), ulrS6aIndicator, 1004)), codeSuccess, false)
	if !s.Reaches("mme1.visited.example", "visited.example") || !s.Reaches("other-mme.visited.example", "visited.example") ||
		s.Reaches("mme9.elsewhere.example", "elsewhere.example") {
		t.Fatal("Reaches: wrong routes")
	}
	if err := s.CancelLocation(ctx, sub.IMSI, SubscriptionWithdrawal, true); err != nil {
		t.Fatalf("CancelLocation: %v", err)
	}
	checkCLR(t, mme.waitRequest(cmdCLR), sub.IMSI, "mme1.visited.example", SubscriptionWithdrawal, true)

	mme.dropCLR.Store(true)
	err := s.CancelLocation(ctx, sub.IMSI, SubscriptionWithdrawal, true)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("unanswered CLR: %v", err)
	}
	first := mme.waitRequest(cmdCLR)
	retx := mme.waitRequest(cmdCLR)
	if first.Header.CommandFlags&diam.RetransmittedFlag != 0 || retx.Header.CommandFlags&diam.RetransmittedFlag == 0 ||
		first.Header.EndToEndID != retx.Header.EndToEndID {
		t.Fatalf("retransmission flags %x/%x e2e %x/%x", first.Header.CommandFlags, retx.Header.CommandFlags,
			first.Header.EndToEndID, retx.Header.EndToEndID)
	}
	mme.Close()
	deadline := time.Now().Add(hang)
	for len(s.ConnectedPeers()) != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.CancelLocation(ctx, sub.IMSI, SubscriptionWithdrawal, true); !errors.Is(err, ErrNoPeer) {
		t.Fatalf("no connection: %v", err)
	}
}

// TestInsertSubscriberDataPurgeNotify: IDR carries the subscription with the
// serving region's PGW; PUR gets PUA-Flags Freeze-M-TMSI from the serving
// MME; NOR is acknowledged.
func TestInsertSubscriberDataPurgeNotify(t *testing.T) {
	st := openStore(t)
	s := startHSS(t, st, nil)
	mme := dialMME(t, s.Addrs()[0], "mme1.visited.example")
	sub, _ := provision(t, st, nil)
	expectResult(t, mme.roundTrip(mme.ulr(sub.IMSI, plmnOf("310260"), ulrS6aIndicator, 1004)), codeSuccess, false)
	if err := s.InsertSubscriberData(context.Background(), sub.IMSI); err != nil {
		t.Fatalf("IDR: %v", err)
	}
	idr := mme.waitRequest(cmdIDR)
	if got := apnPGWs(idr); len(got) != 2 || got[0].host != testPGWs[topology.US].Host {
		t.Fatalf("IDR APNs %+v", got)
	}
	pur := mme.newReq(cmdPUR, sub.IMSI)
	pur.NewAVP(avpPURFlags, fV, vendor3GPP, datatype.Unsigned32(1))
	a := mme.roundTrip(pur)
	expectResult(t, a, codeSuccess, false)
	if f, _ := u32(find(a.AVP, avpPUAFlags)); f != 1 {
		t.Fatalf("PUA-Flags %d", f)
	}
	expectResult(t, mme.roundTrip(mme.newReq(cmdNOR, sub.IMSI)), codeSuccess, false)
	expectResult(t, mme.roundTrip(mme.newReq(cmdNOR, "001019999999999")), expUserUnknown, true)
}

// TestPolicyResults: unknown IMSI 5001, suspended and barred country 5004,
// barred RAT 5421, registry down 3004 (Experimental-Result vendor 10415 for
// the S6a codes).
func TestPolicyResults(t *testing.T) {
	st := openStore(t)
	flaky := &failingSubscribers{Subscribers: st}
	s := startHSS(t, flaky, nil)
	mme := dialMME(t, s.Addrs()[0], "mme1.visited.example")
	ok, _ := provision(t, st, nil)
	susp, _ := provision(t, st, func(s *registry.Subscriber) { s.Status = registry.StatusSuspended })
	barred, _ := provision(t, st, func(s *registry.Subscriber) { s.Policy.BarredCountries = []string{"BR"} })
	onlyDE, _ := provision(t, st, func(s *registry.Subscriber) { s.Policy.AllowedCountries = []string{"de"} })
	noUTRAN, _ := provision(t, st, func(s *registry.Subscriber) { s.Policy.BarredRATs = []registry.RAT{registry.RATUTRAN} })
	br := plmnOf("72405")
	for _, c := range []struct {
		name string
		m    *diam.Message
		code uint32
		exp  bool
	}{
		{"unknown IMSI AIR", mme.air("001019999999999", br, 1, nil), expUserUnknown, true},
		{"unknown IMSI ULR", mme.ulr("001019999999999", br, 2, 1004), expUserUnknown, true},
		{"suspended AIR", mme.air(susp.IMSI, br, 1, nil), expRoamingNotAllowed, true},
		{"suspended ULR", mme.ulr(susp.IMSI, br, 2, 1004), expRoamingNotAllowed, true},
		{"barred country AIR", mme.air(barred.IMSI, br, 1, nil), expRoamingNotAllowed, true},
		{"barred country ULR", mme.ulr(barred.IMSI, br, 2, 1004), expRoamingNotAllowed, true},
		{"barred country elsewhere", mme.ulr(barred.IMSI, plmnOf("26201"), 2, 1004), codeSuccess, false},
		{"allowed countries", mme.ulr(onlyDE.IMSI, br, 2, 1004), expRoamingNotAllowed, true},
		{"allowed countries DE", mme.ulr(onlyDE.IMSI, plmnOf("26201"), 2, 1004), codeSuccess, false},
		{"RAT UTRAN barred ULR", mme.ulr(noUTRAN.IMSI, br, 2, 1000), expRATNotAllowed, true},
		{"RAT EUTRAN ok ULR", mme.ulr(noUTRAN.IMSI, br, 2, 1004), codeSuccess, false},
		{"ok", mme.air(ok.IMSI, br, 1, nil), codeSuccess, false},
	} {
		t.Run(c.name, func(t *testing.T) { expectResult(t, mme.roundTrip(c.m), c.code, c.exp) })
	}
	// S6d AIR for a subscriber without UTRAN: 5421.
	m := mme.newReq(cmdAIR, noUTRAN.IMSI)
	bcd := br.BCD()
	m.NewAVP(avp.VisitedPLMNID, fV, vendor3GPP, datatype.OctetString(bcd[:]))
	m.NewAVP(avp.RequestedUTRANGERANAuthenticationInfo, fV, vendor3GPP, &diam.GroupedAVP{AVP: []*diam.AVP{
		diam.NewAVP(avp.NumberOfRequestedVectors, fV, vendor3GPP, datatype.Unsigned32(1))}})
	expectResult(t, mme.roundTrip(m), expRATNotAllowed, true)

	flaky.down.Store(true)
	a := mme.roundTrip(mme.air(ok.IMSI, br, 1, nil))
	expectResult(t, a, codeTooBusy, false)
	if a.Header.CommandFlags&diam.ErrorFlag == 0 {
		t.Fatal("3004 without the E bit")
	}
	expectResult(t, mme.roundTrip(mme.ulr(ok.IMSI, br, 2, 1004)), codeTooBusy, false)
	flaky.down.Store(false)
	expectResult(t, mme.roundTrip(mme.air(ok.IMSI, br, 1, nil)), codeSuccess, false)
}

// decodeTBCD is TS 29.002 §17.7.8 TBCD, low nibble first, 0xF filler.
func decodeTBCD(b []byte) string {
	var out []byte
	for _, x := range b {
		for _, d := range []byte{x & 0x0F, x >> 4} {
			if d == 0x0F {
				continue
			}
			out = append(out, '0'+d)
		}
	}
	return string(out)
}

// TestULRServingRowRace: another node wrote the serving row after this
// node's last ULR; the compare-and-set notices (stale generation), re-reads
// and wins, and the MME the other node had registered is the one cancelled.
func TestULRServingRowRace(t *testing.T) {
	st := openStore(t)
	s := startHSS(t, st, nil)
	a := dialMME(t, s.Addrs()[0], "mme-a.visited.example")
	sub, _ := provision(t, st, nil)
	visited := plmnOf("26201")
	expectResult(t, a.roundTrip(a.ulr(sub.IMSI, visited, ulrS6aIndicator, 1004)), codeSuccess, false)
	ctx := context.Background()
	cur, err := st.Serving(ctx, sub.IMSI)
	if err != nil {
		t.Fatal(err)
	}
	// "Another node": mme-a moved to our own connection under a new name.
	if _, err := st.UpdateServing(ctx, registry.Serving{IMSI: sub.IMSI, MMEHost: "mme-a.visited.example", MMERealm: "visited.example",
		VisitedPLMN: visited, Region: topology.US, Generation: cur.Generation}); err != nil {
		t.Fatal(err)
	}
	b := dialMME(t, s.Addrs()[0], "mme-b.visited.example")
	expectResult(t, b.roundTrip(b.ulr(sub.IMSI, visited, ulrS6aIndicator, 1004)), codeSuccess, false)
	checkCLR(t, a.waitRequest(cmdCLR), sub.IMSI, "mme-a.visited.example", MMEUpdateProcedure, false)
	sv, err := st.Serving(ctx, sub.IMSI)
	if err != nil || sv.MMEHost != "mme-b.visited.example" || sv.Generation != cur.Generation+2 || sv.Region != topology.DE {
		t.Fatalf("serving row %+v, %v (generation before %d)", sv, err, cur.Generation)
	}
}
