package api

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// userLimits holds each user's send and room-creation rate limiters and
// open Join streams. One mutex guards the map; the limiters are safe on
// their own.
type userLimits struct {
	rate    rate.Limit
	burst   int
	streams int // most Join streams per user; 0 means no limit

	createRate  rate.Limit // rooms a user may create per second; rate.Inf: no limit
	createBurst int

	mu     sync.Mutex
	users  map[string]*userLimit
	sweep  int // map size at which the next new user sweeps idle ones
	sweeps int // sweeps so far (tests read it)
}

type userLimit struct {
	send    *rate.Limiter // made by the user's first send: most streams only receive
	create  *rate.Limiter // made by the user's first CreateRoom
	streams int
}

// sweepAt is the smallest map size at which idle users are forgotten.
// After a sweep the next one waits until the map has doubled what the
// sweep left, so a crowd of users who all keep a stream open (a join
// storm of 100,000) costs O(1) per new user, amortized, instead of a scan
// of everyone per join.
const sweepAt = 10000

func newUserLimits(perSecond float64, burst, streams int) *userLimits {
	return &userLimits{rate: limitOf(perSecond), burst: max(burst, 1), streams: streams, users: make(map[string]*userLimit), sweep: sweepAt,
		createRate: rate.Inf, createBurst: 1}
}

// limitCreates bounds the rooms one user may create: perSecond with
// bursts of burst; perSecond <= 0 means no limit.
func (l *userLimits) limitCreates(perSecond float64, burst int) {
	l.createRate, l.createBurst = limitOf(perSecond), max(burst, 1)
}

// limitOf is the rate of a per-second flag: rate.Inf (no limit) for 0 or
// less.
func limitOf(perSecond float64) rate.Limit {
	if perSecond <= 0 {
		return rate.Inf
	}
	return rate.Limit(perSecond)
}

// allowCreate takes one room creation from user's bucket, or returns a
// retryError saying when to retry. A CreateRoom is a unary call that
// writes to the store and, for a public room, sends an event to every
// Join connection of the cluster: a flood is refused, not held.
func (l *userLimits) allowCreate(user string) error {
	if l.createRate == rate.Inf {
		return nil
	}
	d := take(l.bucket(user, func(u *userLimit) **rate.Limiter { return &u.create }, l.createRate, l.createBurst))
	if d == 0 {
		return nil
	}
	return retryable(d, fmt.Sprintf("creating rooms too fast: at most %g rooms/s per user (burst %d); retry in %v",
		float64(l.createRate), l.createBurst, d.Round(time.Millisecond)))
}

func (l *userLimits) getLocked(user string) *userLimit {
	u := l.users[user]
	if u == nil {
		if len(l.users) >= l.sweep {
			l.sweepLocked()
			l.sweep = max(sweepAt, 2*len(l.users))
		}
		u = &userLimit{}
		l.users[user] = u
	}
	return u
}

// bucket returns the limiter pick chooses in user's record, made with r
// and burst on first use.
func (l *userLimits) bucket(user string, pick func(*userLimit) **rate.Limiter, r rate.Limit, burst int) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := pick(l.getLocked(user))
	if *p == nil {
		*p = rate.NewLimiter(r, burst)
	}
	return *p
}

// take takes a token from lim if one is there now, and returns 0; else it
// takes none and returns how long until one is.
func take(lim *rate.Limiter) time.Duration {
	r := lim.Reserve()
	d := r.Delay()
	if d > 0 {
		r.Cancel()
	}
	return d
}

// full reports whether lim, if made, holds its whole burst at now: a
// fresh limiter would be the same.
func full(lim *rate.Limiter, burst int, now time.Time) bool {
	return lim == nil || lim.TokensAt(now) >= float64(burst)
}

// sweepLocked forgets users with no stream and full buckets: they would
// get the same fresh limiters back.
func (l *userLimits) sweepLocked() {
	l.sweeps++
	now := time.Now()
	for name, u := range l.users {
		if u.streams == 0 && full(u.send, l.burst, now) && full(u.create, l.createBurst, now) {
			delete(l.users, name)
		}
	}
}

// maxTarpit bounds how long a refused send is held before its answer.
const maxTarpit = time.Second

// allowSend takes one send from user's bucket, or returns a retryError
// saying when to retry. With hold, a refused send is answered only after
// the wait a well-behaved client would have kept (at most maxTarpit): a
// client that ignores RetryInfo and floods then gets about one answer per
// token, so its flood cannot take the CPU that other users' messages need.
// Held requests cost a parked goroutine each, bounded by the streams a
// connection may open.
func (l *userLimits) allowSend(ctx context.Context, user string, hold bool) error {
	if l.rate == rate.Inf {
		return nil
	}
	d := take(l.bucket(user, func(u *userLimit) **rate.Limiter { return &u.send }, l.rate, l.burst))
	if d == 0 {
		return nil
	}
	if !hold {
		return retryable(d, fmt.Sprintf("sending too fast: at most %g messages/s per user (burst %d); retry in %v", float64(l.rate), l.burst, d.Round(time.Millisecond)))
	}
	wait := min(d, maxTarpit)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	after := max(d-wait, time.Millisecond)
	return retryable(after, fmt.Sprintf("sending too fast: at most %g messages/s per user (burst %d); retry in %v", float64(l.rate), l.burst, after.Round(time.Millisecond)))
}

// openStream counts a Join or Subscribe stream for user, refusing one
// past the limit.
// The returned func closes it.
func (l *userLimits) openStream(user string) (func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	u := l.getLocked(user)
	if l.streams > 0 && u.streams >= l.streams {
		return nil, retryable(time.Second, fmt.Sprintf("user %s already has %d Join and Subscribe streams open, the limit; close one first", user, l.streams))
	}
	u.streams++
	return func() {
		l.mu.Lock()
		u.streams--
		if u.streams == 0 && u.send == nil && u.create == nil && l.users[user] == u {
			delete(l.users, user) // a receiving-only user: nothing to keep
		}
		l.mu.Unlock()
	}, nil
}
