// Package load is parley's load generator: parley bench, which measures a
// running server's fan-out, latency and loss, and parley soak, which churns
// one and checks its guarantees and leaks exactly. Bench and Soak are the
// two commands; cmd/parley dispatches to them.
//
// Bench's receivers read their streams with the package's own HTTP/2 and
// gRPC framing (bench_h2.go, bench_wire.go), so that receiving costs a
// fraction of what the server spends sending; its latencies go into a
// lock-free histogram (histogram.go).
package load
