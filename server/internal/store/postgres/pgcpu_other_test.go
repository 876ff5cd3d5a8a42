//go:build !linux

package postgres_test

import "time"

// postgresCPU is not measured here; benchmarks then leave out pg-cpu-µs/msg.
func postgresCPU() time.Duration { return 0 }

// processesCPU is not measured here.
func processesCPU([]int) time.Duration { return 0 }
