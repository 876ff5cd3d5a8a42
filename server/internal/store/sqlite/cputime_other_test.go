//go:build !unix

package sqlite_test

import "time"

// cpuTime is not measured here; benchmarks then leave out cpu-µs/msg.
func cpuTime() time.Duration { return 0 }
