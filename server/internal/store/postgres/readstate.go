package postgres

import (
	"context"
	"errors"

	"github.com/parleychat/parley/server/internal/store"
)

// TODO(readstore): scaffolding for the read-state branch; the store helper
// replaces this file with the real implementation before it merges.

// SetReadMarkers implements store.Store.
func (s *Store) SetReadMarkers(context.Context, []store.ReadMarker) ([]store.ReadMarker, error) {
	return nil, errors.ErrUnsupported
}

// ReadState implements store.Store.
func (s *Store) ReadState(context.Context, string, string) (store.ReadState, error) {
	return store.ReadState{}, errors.ErrUnsupported
}

// ReadMarkers implements store.Store.
func (s *Store) ReadMarkers(context.Context, string, int) ([]store.ReadMarker, error) {
	return nil, errors.ErrUnsupported
}
