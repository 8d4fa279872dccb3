package registry

import (
	"errors"
	"net/netip"
	"time"

	"github.com/rendezvous-core/rendezvous/topology"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrNotFound is returned when the subscriber (or row) does not exist.
	ErrNotFound = errors.New("registry: not found")
	// ErrUnavailable is returned when the database cannot be reached and the
	// cache holds no answer (HSS: 3002/3004; PGW: system failure).
	ErrUnavailable = errors.New("registry: database unavailable")
	// ErrConflict is returned by compare-and-set operations that lost.
	ErrConflict = errors.New("registry: conflict")
	// ErrInvalid is returned for a subscriber or request that fails validation.
	ErrInvalid = errors.New("registry: invalid")
)

// Status is a subscriber's administrative state.
type Status string

// Subscriber states.
const (
	StatusActive    Status = "active"
	StatusSuspended Status = "suspended"
)

// RAT is a radio access technology a subscriber may be restricted from.
type RAT string

// Radio access technologies (TS 29.272 §7.3.13 RAT-Type, abridged).
const (
	RATEUTRAN RAT = "EUTRAN"
	RATUTRAN  RAT = "UTRAN"
	RATGERAN  RAT = "GERAN"
	RATNBIoT  RAT = "NB-IoT"
	RATLTEM   RAT = "LTE-M"
)

// PDNType is the PDN/PDP type of an APN (TS 29.272 §7.3.62).
type PDNType string

// PDN types.
const (
	PDNIPv4   PDNType = "ipv4"
	PDNIPv6   PDNType = "ipv6"
	PDNIPv4v6 PDNType = "ipv4v6"
)

// APN is one entry of a subscriber's APN profile.
type APN struct {
	Name    string  `json:"name"`
	PDNType PDNType `json:"pdn_type"`
	// QCI and ARP priority level of the default bearer (TS 23.203 §6.1.7).
	QCI         uint8 `json:"qci"`
	ARPPriority uint8 `json:"arp_priority"`
	// APN-AMBR in bits per second.
	AMBRUplink   uint32 `json:"ambr_ul"`
	AMBRDownlink uint32 `json:"ambr_dl"`
}

// Policy is a subscriber's roaming policy.
type Policy struct {
	// AllowedCountries, when not empty, is the only set of ISO 3166-1
	// alpha-2 countries the subscriber may roam in.
	AllowedCountries []string `json:"allowed_countries,omitempty"`
	// BarredCountries are countries the subscriber may not roam in.
	BarredCountries []string `json:"barred_countries,omitempty"`
	// AllowedPLMNs, when not empty, is the only set of visited PLMNs allowed.
	AllowedPLMNs []string `json:"allowed_plmns,omitempty"`
	// BarredPLMNs are visited PLMNs ("MCCMNC") the subscriber may not use.
	BarredPLMNs []string `json:"barred_plmns,omitempty"`
	// BarredRATs are the radio access technologies not allowed.
	BarredRATs []RAT `json:"barred_rats,omitempty"`
	// Pin, when set, steers the subscriber to this region while it is healthy.
	Pin topology.RegionID `json:"pin,omitempty"`
	// HomeRouted steers the subscriber to its home region while it is healthy.
	HomeRouted bool `json:"home_routed,omitempty"`
}

// Subscriber is a subscriber's profile as the HSS, PGW and GGSN read it.
// It never carries key material: see AuthData.
type Subscriber struct {
	IMSI       topology.IMSI     `json:"imsi"`
	MSISDN     string            `json:"msisdn"`
	Status     Status            `json:"status"`
	HomeRegion topology.RegionID `json:"home_region"`
	APNs       []APN             `json:"apns"`
	Policy     Policy            `json:"policy"`
	// AMBR of the subscriber (UE-AMBR) in bits per second.
	AMBRUplink   uint32 `json:"ambr_ul"`
	AMBRDownlink uint32 `json:"ambr_dl"`
	// Revision increases on every change; caches invalidate by it.
	Revision int64 `json:"revision"`
}

// AuthData is the key material of a subscriber, decrypted. It is returned
// only by Store.AuthData, and its String and GoString methods never print
// the keys.
type AuthData struct {
	Ki  [16]byte
	OPc [16]byte
	AMF [2]byte
}

// Serving is where a subscriber is currently registered (its serving row).
type Serving struct {
	IMSI        topology.IMSI
	MMEHost     string // Origin-Host of the MME/SGSN that sent the ULR
	MMERealm    string
	VisitedPLMN topology.PLMN
	Region      topology.RegionID // region whose PGW the ULA named
	Generation  int64             // incremented on every successful update
	Updated     time.Time
}

// SessionAnchor records a PDN session/PDP context in the registry.
type SessionAnchor struct {
	ID                              string // unique: node id + local control TEID, hex
	IMSI                            topology.IMSI
	Region                          topology.RegionID
	Node                            string
	APN                             string
	UE                              netip.Addr
	LocalTEIDControl, LocalTEIDUser uint32
	PeerTEIDControl, PeerTEIDUser   uint32
	Started                         time.Time
	Ended                           time.Time // zero while open
}

// Usage is one usage record of a session, idempotent on (Session, Sequence).
type Usage struct {
	Session   string
	Sequence  int64
	BytesUp   uint64
	BytesDown uint64
	From, To  time.Time
}
