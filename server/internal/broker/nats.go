// Package broker connects parleyd nodes through NATS: the hub publishes
// room events on subjects and subscribes to the rooms it has local
// subscribers in.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// NATS is a hub.Broker on a NATS connection. It never hears its own
// messages (NoEcho), and reconnects on its own for as long as it runs.
type NATS struct {
	nc *nats.Conn
	// unanswered is set while the last Ping failed: a connection that
	// looks up but whose server does not answer (a blackholed link) is
	// taken for down long before the client's own pings would notice.
	unanswered atomic.Bool
}

// Connect dials the NATS servers in url (comma-separated) as node.
func Connect(url, node string, log *slog.Logger) (*NATS, error) {
	nc, err := nats.Connect(url,
		nats.Name("parleyd "+node),
		nats.NoEcho(),
		nats.DontRandomize(), // try the servers in the order given: nearest first
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.Timeout(2*time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("broker disconnected", "err", err)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("broker error", "subject", subject, "err", err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return &NATS{nc: nc}, nil
}

// OnReconnect calls fn each time the connection comes back after a loss:
// events published meanwhile were missed.
func (n *NATS) OnReconnect(fn func()) {
	n.nc.SetReconnectHandler(func(c *nats.Conn) {
		fn()
	})
}

// Publish implements hub.Broker.
func (n *NATS) Publish(subject string, data []byte) error {
	if err := n.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("nats publish %s: %w", subject, err)
	}
	return nil
}

// Subscribe implements hub.Broker. NATS calls fn from one goroutine per
// subscription, so a room's events are applied in the order they arrived.
func (n *NATS) Subscribe(subject string, fn func([]byte)) (func(), error) {
	sub, err := n.nc.Subscribe(subject, func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return nil, fmt.Errorf("nats subscribe %s: %w", subject, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// Gather publishes data on subject as a request and calls fn with each
// reply, from any number of responders, until fn returns false or ctx
// ends. The inbox is subscribed before the request goes out, on the same
// connection, so no early reply is missed.
func (n *NATS) Gather(ctx context.Context, subject string, data []byte, fn func([]byte) bool) error {
	inbox := n.nc.NewInbox()
	replies := make(chan *nats.Msg, 256)
	sub, err := n.nc.ChanSubscribe(inbox, replies)
	if err != nil {
		return fmt.Errorf("nats subscribe %s: %w", inbox, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := n.nc.PublishRequest(subject, inbox, data); err != nil {
		return fmt.Errorf("nats request %s: %w", subject, err)
	}
	for {
		select {
		case m := <-replies:
			if !fn(m.Data) {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Serve answers the requests published on subject with the replies fn
// returns (none, one or several), until the returned func is called.
func (n *NATS) Serve(subject string, fn func([]byte) [][]byte) (func(), error) {
	sub, err := n.nc.Subscribe(subject, func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		for _, r := range fn(m.Data) {
			if err := n.nc.Publish(m.Reply, r); err != nil {
				return
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("nats subscribe %s: %w", subject, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// MaxPayload is the largest message the server accepts.
func (n *NATS) MaxPayload() int64 { return n.nc.MaxPayload() }

// Connected reports whether the connection is up now (not reconnecting)
// and the last Ping was answered.
func (n *NATS) Connected() bool { return n.nc.IsConnected() && !n.unanswered.Load() }

// Flush waits until the server has processed everything sent so far,
// subscriptions included. It fails at once while disconnected or while
// the last Ping went unanswered (a room going live does not wait then).
func (n *NATS) Flush(ctx context.Context) error {
	if !n.nc.IsConnected() {
		return errors.New("nats: not connected")
	}
	if n.unanswered.Load() {
		return errors.New("nats: the server did not answer the last ping")
	}
	if err := n.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("nats flush: %w", err)
	}
	return nil
}

// Ping reports whether the broker is reachable now, and is what Connected
// goes by until the next Ping.
func (n *NATS) Ping(ctx context.Context) error {
	err := errors.New("nats: not connected")
	if n.nc.IsConnected() {
		err = n.nc.FlushWithContext(ctx)
	}
	n.unanswered.Store(err != nil)
	if err != nil {
		return fmt.Errorf("nats ping: %w", err)
	}
	return nil
}

// Close flushes what is pending and closes the connection.
func (n *NATS) Close() {
	_ = n.nc.FlushTimeout(time.Second)
	n.nc.Close()
}
