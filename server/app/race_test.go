//go:build race

package app_test

// raceEnabled tells tests whose figures the race detector distorts (it
// multiplies the CPU each request costs) that it is on.
const raceEnabled = true
