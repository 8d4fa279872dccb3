package breakout

// Egress is where decapsulated uplink packets leave the user plane and
// where downlink packets for UEs come from. The tun driver (the default) is
// a Linux TUN device with routes for the UE pools and source NAT; other
// drivers (a userspace stack) may be plugged in through Config.NewEgress.
type Egress interface {
	// Queue returns queue i, 0 <= i < the number of queues the egress was
	// opened with. Worker i uses queue i from two goroutines: WritePacket
	// from its uplink goroutine, ReadPackets from its downlink goroutine.
	Queue(i int) EgressQueue
	// Close tears the egress down and makes blocked ReadPackets return.
	// It is idempotent and returns the first teardown error.
	Close() error
}

// EgressQueue is one queue of an Egress.
type EgressQueue interface {
	// WritePacket sends one IPv4 or IPv6 packet towards the internet.
	// p is not retained after it returns.
	WritePacket(p []byte) error
	// ReadPackets blocks until at least one packet for the UEs is
	// available, then reads up to len(bufs) of them: packet i into
	// bufs[i], its length into sizes[i]. A packet that fills bufs[i]
	// completely may have been truncated. It returns an error once the
	// egress is closed.
	ReadPackets(bufs [][]byte, sizes []int) (int, error)
}
