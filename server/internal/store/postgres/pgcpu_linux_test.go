package postgres_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// postgresCPU is the user+system CPU time used so far by the processes
// named postgres on this machine (the server's backends, WAL writer and
// checkpointer: everyone's, not only the benchmark's), or 0 if there are
// none to see.
func postgresCPU() time.Duration {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks int64
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... utime(14) stime(15); comm may hold spaces.
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open || string(b[open+1:end]) != "postgres" {
			continue
		}
		ticks += statTicks(b[end+1:])
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// statTicks returns utime+stime from the fields of /proc/PID/stat after
// the command's closing parenthesis.
func statTicks(rest []byte) int64 {
	fields := bytes.Fields(rest)
	if len(fields) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(string(fields[11]), 10, 64)
	s, _ := strconv.ParseInt(string(fields[12]), 10, 64)
	return u + s
}

// processesCPU is the user+system CPU time used so far by the processes
// pids (those gone count nothing).
func processesCPU(pids []int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if end := bytes.LastIndexByte(b, ')'); err == nil && end > 0 {
			ticks += statTicks(b[end+1:])
		}
	}
	return time.Duration(ticks) * (time.Second / 100)
}
