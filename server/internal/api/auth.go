package api

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/internal/auth"
)

type identityKey struct{}

// identity returns the verified caller of a ChatService call.
func identity(ctx context.Context) auth.Identity {
	id, _ := ctx.Value(identityKey{}).(auth.Identity)
	return id
}

// needsAuth reports whether a method requires a bearer token: every
// ChatService method but DevLogin. Health and reflection stay open.
func needsAuth(fullMethod string) bool {
	return isChatService(fullMethod) && fullMethod != parleyv1.ChatService_DevLogin_FullMethodName
}

func isChatService(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/"+parleyv1.ChatService_ServiceDesc.ServiceName+"/")
}

func (s *Service) authenticate(ctx context.Context) (context.Context, error) {
	tok, err := bearerToken(ctx)
	if err != nil {
		return nil, err
	}
	id, err := s.cfg.Keys.Verify(tok)
	if err != nil {
		return nil, errorf(errUnauthenticated, "%s", authMessage(err))
	}
	return context.WithValue(ctx, identityKey{}, id), nil
}

func bearerToken(ctx context.Context) (string, error) {
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(vals) == 0 {
		return "", errorf(errUnauthenticated, "missing authorization: send the header 'authorization: Bearer <token>'")
	}
	if len(vals) > 1 {
		// Proxies and libraries disagree on which of several wins; refuse
		// rather than pick one.
		return "", errorf(errUnauthenticated, "%d authorization headers: send exactly one 'authorization: Bearer <token>'", len(vals))
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || tok == "" {
		return "", errorf(errUnauthenticated, "malformed authorization: want 'Bearer <token>'")
	}
	if len(tok) > maxTokenBytes {
		return "", errorf(errUnauthenticated, "token is %d bytes; the limit is %d", len(tok), maxTokenBytes)
	}
	return strings.TrimSpace(tok), nil
}

func authMessage(err error) string {
	switch {
	case errors.Is(err, auth.ErrExpired):
		return "token expired: get a new token and reconnect"
	case errors.Is(err, auth.ErrOtherKey):
		// The server's own kid stays out of the answer: it is logged at
		// start, where the operator looking for the mismatch reads it.
		return err.Error() + ", not with this server's (its kid is in the server's start-up log): " +
			"mint tokens with the server's --data-dir or --token-secret-file"
	default:
		return err.Error() // auth errors start with "invalid token"
	}
}

// UnaryInterceptor rejects requests that did not decode, authenticates
// unary ChatService calls, and turns a ChatService call's error into its
// status (see answer).
func (s *Service) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := malformed(req); err != nil {
		return nil, statusOf(err).Err() // any service's request
	}
	if needsAuth(info.FullMethod) {
		var err error
		if ctx, err = s.authenticate(ctx); err != nil {
			return nil, s.edge(info.FullMethod, err)
		}
	}
	resp, err := handler(ctx, req)
	return resp, s.edge(info.FullMethod, err)
}

// StreamInterceptor authenticates streaming ChatService calls and turns
// their errors into statuses, and ends other streams (reflection, health
// watches) when the server drains.
func (s *Service) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !needsAuth(info.FullMethod) {
		return s.untilDrain(srv, ss, handler)
	}
	ctx, err := s.authenticateAside(ss.Context())
	if err == nil {
		err = handler(srv, &authedStream{ServerStream: ss, ctx: ctx})
	}
	return s.edge(info.FullMethod, err)
}

// authenticateAside is authenticate on a short-lived goroutine. A stream's
// handler goroutine lives as long as the stream and keeps the largest
// stack it grew to unless, parked, it uses less than a quarter of it:
// verifying a token grew it from 8 to 16 KiB, and parked in Recv under
// grpc-go's handler path and Join's it uses ~4 KiB, so it never shrank
// back. That was 8 KiB per idle stream (docs/performance.md, "Big rooms").
func (s *Service) authenticateAside(ctx context.Context) (context.Context, error) {
	type result struct {
		ctx context.Context
		err error
	}
	done := make(chan result, 1)
	go func() {
		actx, err := s.authenticate(ctx)
		done <- result{actx, err}
	}()
	r := <-done
	return r.ctx, r.err
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authedStream) Context() context.Context { return a.ctx }

// clientName returns the caller's self-reported client name, bounded.
func clientName(ctx context.Context) string {
	vals := metadata.ValueFromIncomingContext(ctx, "parley-client")
	if len(vals) == 0 {
		return ""
	}
	return cut(vals[0], maxClientNameBytes)
}

// untilDrain runs a stream handler that knows nothing of draining (such as
// reflection's, which blocks in Recv) and ends the stream with UNAVAILABLE
// when the server drains, so graceful shutdown need not wait for the client.
// The handler's goroutine ends when the finished stream fails its Recv.
func (s *Service) untilDrain(srv any, ss grpc.ServerStream, handler grpc.StreamHandler) error {
	done := make(chan error, 1)
	s.streams.Add(1)
	go func() {
		defer s.streams.Done()
		done <- handler(srv, ss)
	}()
	select {
	case err := <-done:
		return err
	case <-s.draining:
		return statusOf(errShuttingDown).Err()
	}
}
