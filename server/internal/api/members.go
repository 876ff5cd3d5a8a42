package api

import (
	"context"
	"errors"

	parleyv1 "github.com/parleychat/parley/gen/parley/v1"
	"github.com/parleychat/parley/server/internal/auth"
	"github.com/parleychat/parley/server/internal/store"
)

// directRoom returns the direct room between the caller and req.ToUser,
// creating it on first use. A new direct room takes one from the caller's
// room-creation budget, as CreateRoom does: otherwise messages to made-up
// users would fill the store with rooms at the send rate.
func (s *Service) directRoom(ctx context.Context, user string, req *parleyv1.SendMessageRequest) (string, error) {
	to := req.GetToUser()
	switch {
	case req.GetRoom() != "":
		return "", invalidf("set either room or to_user, not both")
	case !auth.ValidUser(to):
		return "", invalidf("to_user: %s", auth.ErrBadUser)
	case to == user:
		return "", invalidf("to_user must be another user, not yourself")
	}
	name := directRoomName(user, to)
	if _, err := s.cfg.Hub.Room(ctx, name); err == nil {
		return name, nil
	}
	if err := s.limits.allowCreate(user); err != nil {
		return "", err
	}
	_, err := s.cfg.Store.CreateRoom(ctx, store.Room{Name: name, Visibility: store.Direct, CreatedBy: user, Members: []string{to}})
	switch {
	case errors.Is(err, store.ErrRoomExists):
	case err != nil:
		return "", err
	default:
		// Both room lists learn of it: the other user's, and the sender's
		// other devices. One that joins it before this message is stored
		// still gets it (it joins from seq 0).
		s.cfg.Hub.RoomVisible(name, to)
		s.cfg.Hub.RoomVisible(name, user)
	}
	return name, nil
}

// managedRoom returns a private room the caller created, for membership changes.
func (s *Service) managedRoom(ctx context.Context, room, member string) (store.Room, error) {
	r, err := s.access(ctx, identity(ctx).User, room)
	if err != nil {
		return store.Room{}, err
	}
	switch {
	case r.Visibility != store.Private:
		return store.Room{}, errorf(errPrecondition, "room %q is %s: only private rooms have members to manage", room, r.Visibility)
	case r.CreatedBy != identity(ctx).User:
		return store.Room{}, errorf(errDenied, "only the creator of room %q (%s) may change its members", room, r.CreatedBy)
	case !auth.ValidUser(member):
		return store.Room{}, invalidf("user: %s", auth.ErrBadUser)
	}
	return r, nil
}

// AddMember implements parleyv1.ChatServiceServer. Membership changes
// count as sends (--send-rate): each is a store write and an event to the
// member's connections, so a creator cannot flood a user with them.
func (s *Service) AddMember(ctx context.Context, req *parleyv1.AddMemberRequest) (*parleyv1.AddMemberResponse, error) {
	if _, err := s.managedRoom(ctx, req.GetRoom(), req.GetUser()); err != nil {
		return nil, err
	}
	if err := s.limits.allowSend(ctx, identity(ctx).User, true); err != nil {
		return nil, err
	}
	if err := s.cfg.Store.AddMember(ctx, req.GetRoom(), req.GetUser()); err != nil {
		return nil, err
	}
	s.cfg.Hub.ReadersChanged(req.GetRoom())
	s.cfg.Hub.RoomVisible(req.GetRoom(), req.GetUser())
	return &parleyv1.AddMemberResponse{}, nil
}

// RemoveMember implements parleyv1.ChatServiceServer. The removed user's
// connections leave the room at once, on every node, and are told why.
func (s *Service) RemoveMember(ctx context.Context, req *parleyv1.RemoveMemberRequest) (*parleyv1.RemoveMemberResponse, error) {
	r, err := s.managedRoom(ctx, req.GetRoom(), req.GetUser())
	if err != nil {
		return nil, err
	}
	if req.GetUser() == r.CreatedBy {
		return nil, errorf(errPrecondition, "the creator of room %q cannot be removed", req.GetRoom())
	}
	if err := s.limits.allowSend(ctx, identity(ctx).User, true); err != nil {
		return nil, err
	}
	if err := s.cfg.Store.RemoveMember(ctx, req.GetRoom(), req.GetUser()); err != nil {
		return nil, err
	}
	s.cfg.Hub.ReadersChanged(req.GetRoom())
	s.cfg.Hub.Kick(req.GetRoom(), req.GetUser())
	return &parleyv1.RemoveMemberResponse{}, nil
}

// ListMembers implements parleyv1.ChatServiceServer.
func (s *Service) ListMembers(ctx context.Context, req *parleyv1.ListMembersRequest) (*parleyv1.ListMembersResponse, error) {
	r, err := s.access(ctx, identity(ctx).User, req.GetRoom())
	if err != nil {
		return nil, err
	}
	if r.Visibility == store.Public {
		return nil, errorf(errPrecondition, "room %q is public: it has no member list; ListPresence tells who is online", req.GetRoom())
	}
	members, err := s.cfg.Store.Members(ctx, req.GetRoom())
	if err != nil {
		return nil, err
	}
	return &parleyv1.ListMembersResponse{Members: members}, nil
}
