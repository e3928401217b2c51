package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
)

// Ports are drawn from below Linux's default ephemeral range (32768-60999),
// so the run's own outgoing connections cannot take one between the check
// here and the server binding it.
const (
	portLow  = 20000
	portHigh = 32767
)

// freePorts returns n distinct loopback TCP ports that could be bound a
// moment ago, for scripts/loadtest.sh to give its servers.
func freePorts(n int) ([]int, error) {
	out := make([]int, 0, n)
	for tries := 0; len(out) < n; tries++ {
		if tries >= 100*n {
			return nil, fmt.Errorf("no %d free loopback ports in %d-%d after %d tries", n, portLow, portHigh, tries)
		}
		p := portLow + rand.IntN(portHigh-portLow+1)
		if slices.Contains(out, p) {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		out = append(out, p)
	}
	return out, nil
}
