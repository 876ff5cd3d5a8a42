//go:build !race

package hub

// raceEnabled tells tests whose figures the race detector distorts that it is on.
const raceEnabled = false
