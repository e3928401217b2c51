//go:build race

package cache

// raceEnabled: the race detector changes what allocates (sync.Pool drops
// items at random) and what the heap holds.
const raceEnabled = true
